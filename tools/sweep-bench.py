#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""How long the start-up sweep takes over N stashes of which a share expired,
and whether the daemon keeps serving meanwhile.

    tools/sweep-bench.py [--stashes 100000] [--expired 0.1] [--spread 1]
                         [--build build [--build other] ...] [--rounds 1]
                         [--attach 'strace -c -f -p {pid} -o FILE']

Fills a backing directory directly (the daemon down), spread over --spread
directories, and for each round and each build in turn: gives the expiring
share (every 1/expired-th stash, written again where a previous run removed
it) a ttl that has passed, drops the caches, mounts, and measures until
every expired stash is gone from the backing directory, while a writer
merges into one stash through the mount (p50 of those merges).  Several
builds run side by side over the same store, interleaved by round.
--attach runs a command on the daemon's pid ({pid}) during the scan and
stops it with SIGINT when the scan is done (perf record, strace -c).
"""
import argparse
import os
import shutil
import signal
import subprocess
import tempfile
import time

from merger import Merger

ap = argparse.ArgumentParser()
ap.add_argument("--stashes", type=int, default=100000)
ap.add_argument("--expired", type=float, default=0.1)
ap.add_argument("--spread", type=int, default=1, help="directories the stashes are spread over")
ap.add_argument("--build", action="append",
                help="a build directory; several are measured side by side")
ap.add_argument("--rounds", type=int, default=1)
ap.add_argument("--attach", help="command run on the daemon during the scan ({pid})")
a = ap.parse_args()
builds = a.build or [os.path.join(os.path.dirname(__file__), "..", "build")]

top = tempfile.mkdtemp(prefix="stashfs-sweep.", dir="/var/tmp")
backing, mnt = os.path.join(top, "b"), os.path.join(top, "m")
os.makedirs(mnt)
names = ["d%04d/s%07d" % (i % a.spread, i) for i in range(a.stashes)]
step = max(1, round(1 / a.expired))
expired = names[::step]
for d in set(n.split("/")[0] for n in names):
    os.makedirs(os.path.join(backing, d))


def write(n):
    with open(os.path.join(backing, n), "w") as f:
        f.write('{"i": %d}\n' % int(n[-7:]))


t = time.time()
for n in names:
    write(n)
with open(os.path.join(backing, "merged"), "w") as f:
    f.write("{}\n")
print("filled %d stashes in %d directories in %.1fs" % (a.stashes, a.spread, time.time() - t))


def drop_caches():
    subprocess.run(["sync"])
    try:
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
    except OSError:
        pass


def last_in_readdir_order():
    """The expired stash the scan reaches last (it walks in readdir order)."""
    want, last = set(expired), None
    for d in os.listdir(backing):
        if d == "merged":
            continue
        for e in os.listdir(os.path.join(backing, d)):
            if d + "/" + e in want:
                last = d + "/" + e
    return last


def run(build):
    for n in expired:
        p = os.path.join(backing, n)
        if not os.path.exists(p):
            write(n)
        os.setxattr(p, "user.stash.ttl", b"1")
    last = os.path.join(backing, last_in_readdir_order())
    time.sleep(1.5)
    drop_caches()
    start = time.perf_counter()
    daemon = subprocess.Popen([os.path.join(build, "fs", "stashfs"), "-f", "-o", "sync=never",
                               backing, mnt], stderr=subprocess.DEVNULL)
    while not os.path.ismount(mnt):
        time.sleep(0.002)
    mounted = time.perf_counter() - start
    tool = subprocess.Popen(a.attach.format(pid=daemon.pid), shell=True,
                            start_new_session=True) if a.attach else None
    merger = Merger(mnt)
    # One cheap probe while it runs (listing or stat'ing the rest would compete with the scan).
    while os.path.exists(last):
        time.sleep(0.05)
    while any(os.path.exists(os.path.join(backing, n)) for n in expired):
        time.sleep(0.2)
    swept = time.perf_counter() - start
    lat = merger.stop()
    if tool:
        os.killpg(tool.pid, signal.SIGINT)
        tool.wait()
    subprocess.run(["fusermount3", "-u", mnt])
    daemon.wait()
    print("%s: %d expired of %d: mount %.3f s, all removed %.1f s after start; "
          "merges meanwhile %d, p50 %.0f us, p99 %.0f us"
          % (build, len(expired), a.stashes, mounted, swept, len(lat),
             lat[len(lat) // 2] * 1e6, lat[int(len(lat) * 0.99)] * 1e6), flush=True)


try:
    for r in range(a.rounds):
        for b in builds:
            run(b)
finally:
    shutil.rmtree(top)
