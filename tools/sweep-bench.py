#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""How long the start-up sweep takes over N stashes of which a share expired,
and whether the daemon keeps serving meanwhile.

    tools/sweep-bench.py [--stashes 100000] [--expired 0.1] [--build build]

Fills a backing directory directly (the daemon down), lets the expiring
share pass its ttl, mounts, and measures until every expired stash is gone
from the backing directory, while a reader keeps timing cat-like reads of
live stashes through the mount.
"""
import argparse
import os
import shutil
import subprocess
import tempfile
import threading
import time

ap = argparse.ArgumentParser()
ap.add_argument("--stashes", type=int, default=100000)
ap.add_argument("--expired", type=float, default=0.1)
ap.add_argument("--build", default=os.path.join(os.path.dirname(__file__), "..", "build"))
a = ap.parse_args()

top = tempfile.mkdtemp(prefix="stashfs-sweep.", dir="/var/tmp")
backing, mnt = os.path.join(top, "b"), os.path.join(top, "m")
os.makedirs(os.path.join(backing, "many"))
os.makedirs(mnt)
n_exp = int(a.stashes * a.expired)
t = time.time()
for i in range(a.stashes):
    p = os.path.join(backing, "many", "s%06d" % i)
    with open(p, "w") as f:
        f.write('{"i": %d}\n' % i)
    if i < n_exp:
        os.setxattr(p, "user.stash.ttl", b"1")
print("filled %d stashes (%d with ttl=1) in %.1fs" % (a.stashes, n_exp, time.time() - t))
time.sleep(1.5)
daemon = subprocess.Popen([os.path.join(a.build, "fs", "stashfs"), "-f", "-o", "sync=never",
                           backing, mnt], stderr=subprocess.DEVNULL)
start = time.time()
while not os.path.ismount(mnt):
    time.sleep(0.01)
mounted = time.time() - start
lat, stop = [], False


def reader():
    i = n_exp
    while not stop:
        t0 = time.perf_counter()
        with open(os.path.join(mnt, "many", "s%06d" % (n_exp + i % (a.stashes - n_exp))), "rb") as f:
            f.read()
        lat.append(time.perf_counter() - t0)
        i += 7919


th = threading.Thread(target=reader)
th.start()
while len(os.listdir(os.path.join(backing, "many"))) > a.stashes - n_exp:
    time.sleep(0.05)
swept = time.time() - start
left = sum(1 for i in range(n_exp) if os.path.exists(os.path.join(backing, "many", "s%06d" % i)))
stop = True
th.join()
lat.sort()
print("mount took %.3fs; sweep of %d expired among %d stashes done %.1fs after start (%d left)"
      % (mounted, n_exp, a.stashes, swept, left))
print("reads while sweeping: %d, p50 %.0f us, p99 %.0f us, max %.0f us"
      % (len(lat), lat[len(lat) // 2] * 1e6, lat[int(len(lat) * 0.99)] * 1e6, lat[-1] * 1e6))
subprocess.run(["fusermount3", "-u", mnt])
daemon.wait()
shutil.rmtree(top)
