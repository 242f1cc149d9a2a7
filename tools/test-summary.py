#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Add up the test cases of every meson test in the given build directories.

Each unit test prints "N passed, N failed"; pytest prints its own closing
line.  Prints every skip with its reason (a meson test that exited 77, and
pytest's "SKIPPED [N] file:line: reason" lines, which -rs makes it print),
one line per build, and the total as "N passed, N failed, N skipped".
"""
import json
import re
import sys


def skip_reasons(run):
    """The reasons a meson test run gives for what it skipped."""
    out = (run.get("stdout") or "").splitlines()
    if run.get("result") == "SKIP":
        # A whole test skipped: its output up to the counts is the reason.
        text = " ".join(l.strip() for l in out if l.strip() and not re.search(r"\d+ passed", l))
        text = re.sub(r"^skipped: ", "", text)
        return ["%s: %s" % (run.get("name", "?"), text or "no reason given")]
    return [re.sub(r"^SKIPPED \[\d+\] ", "", l) for l in out if l.startswith("SKIPPED [")]


total_p = total_f = total_s = 0
reasons = {}            # reason -> builds that printed it, in order
lines = []
for build in sys.argv[1:]:
    p = f = s = 0
    try:
        with open(build + "/meson-logs/testlog.json") as log:
            runs = [json.loads(line) for line in log if line.strip()]
    except OSError:
        lines.append("%s: no test log" % build)
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
        elif run.get("result") == "SKIP":
            s += 1
        if run.get("result") not in ("OK", "SKIP") and \
                not (counts and re.search(r"[1-9]\d* (failed|error)", counts)):
            f += 1     # a test that crashed or timed out before counting
        for r in skip_reasons(run):
            reasons.setdefault(r, []).append(build)
    lines.append("%s: %d passed, %d failed, %d skipped" % (build, p, f, s))
    total_p, total_f, total_s = total_p + p, total_f + f, total_s + s
if reasons:
    print("skipped, and why:")
    for r, builds in reasons.items():
        print("  [%s] %s" % (", ".join(builds), r))
print("\n".join(lines))
print("%d passed, %d failed, %d skipped" % (total_p, total_f, total_s))
sys.exit(1 if total_f else 0)
