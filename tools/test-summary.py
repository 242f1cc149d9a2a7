#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Add up the test cases of every meson test in the given build directories.

Each unit test prints "N passed, N failed"; pytest prints its own closing
line.  Prints one line per build and the total as "N passed, N failed".
"""
import json
import re
import sys

total_p = total_f = total_s = 0
for build in sys.argv[1:]:
    p = f = s = 0
    try:
        with open(build + "/meson-logs/testlog.json") as log:
            runs = [json.loads(line) for line in log if line.strip()]
    except OSError:
        print("%s: no test log" % build)
        f += 1
        runs = []
    for run in runs:
        counts = None
        for line in (run.get("stdout") or "").splitlines()[::-1]:
            if re.search(r"\d+ passed", line):
                counts = line
                break
        if counts:
            num = lambda word: sum(int(n) for n in re.findall(r"(\d+) " + word, counts))
            p += num("passed")
            f += num("failed") + num("error")
            s += num("skipped")
        if run.get("result") != "OK" and not (counts and re.search(r"[1-9]\d* (failed|error)", counts)):
            f += 1     # a test that crashed or timed out before counting
    print("%s: %d passed, %d failed, %d skipped" % (build, p, f, s))
    total_p, total_f, total_s = total_p + p, total_f + f, total_s + s
print("%d passed, %d failed, %d skipped" % (total_p, total_f, total_s))
sys.exit(1 if total_f else 0)
