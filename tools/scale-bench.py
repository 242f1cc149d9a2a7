#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Scale: a store of many stashes, a big stash, a big stream, an expiry scan.

    tools/scale-bench.py [--stashes 100000] [--spread 1] [--dirs 10000]
                         [--expired 0.1] [--build build] [--sync never|always]
                         [--no-big] [--no-reread]

Fills the backing directory directly, with the daemon down (a million
stashes written through the mount would take the better part of an hour):
--stashes small JSON stashes in one directory (--spread 1) or spread evenly
over --spread directories, plus --dirs directories of one stash each.  Then
prints mount time, daemon RSS (idle, after reading every stash once, and
after the kernel forgot them: drop_caches), `ls` of the biggest directory,
first and cached stat, every stash read once, a 100 MiB stash and appends
to a 1 GiB stream, each next to the plain backing directory in the same run
where one exists.  Last, with the daemon down, --expired of the stashes get
a ttl that has passed; it mounts again and times the start-up expiry scan
while a writer merges into one stash (p50 of those merges).
"""
import argparse
import os
import random
import shutil
import subprocess
import tempfile
import time

from merger import Merger

ap = argparse.ArgumentParser()
ap.add_argument("--stashes", type=int, default=100000)
ap.add_argument("--spread", type=int, default=1, help="directories the stashes are spread over")
ap.add_argument("--dirs", type=int, default=10000)
ap.add_argument("--expired", type=float, default=0.1)
ap.add_argument("--build", default=os.path.join(os.path.dirname(__file__), "..", "build"))
ap.add_argument("--sync", choices=("never", "always"), default="never",
                help="the daemon's -o sync= (always: the 100 MiB replace waits for the disk)")
ap.add_argument("--no-big", action="store_true", help="skip the 100 MiB stash and the streams")
ap.add_argument("--no-reread", action="store_true", help="skip reading every stash a second time")
a = ap.parse_args()

top = tempfile.mkdtemp(prefix="stashfs-scale.", dir="/var/tmp")
backing, mnt = os.path.join(top, "b"), os.path.join(top, "m")
os.makedirs(os.path.join(backing, "streams"))
os.makedirs(mnt)


def stash_dir(i):
    return "flat" if a.spread <= 1 else "spread/d%04d" % (i % a.spread)


names = ["%s/s%07d" % (stash_dir(i), i) for i in range(a.stashes)]
t = time.perf_counter()
for d in sorted(set(stash_dir(i) for i in range(min(a.stashes, max(a.spread, 1))))):
    os.makedirs(os.path.join(backing, d))
for i, n in enumerate(names):
    with open(os.path.join(backing, n), "w") as f:
        f.write('{"i": %d}\n' % i)
for i in range(a.dirs):
    d = os.path.join(backing, "tree", "d%05d" % i)
    os.makedirs(d)
    with open(os.path.join(d, "p"), "w") as f:
        f.write("x\n")
print("store: %d stashes in %s, %d more directories of one stash, sync=%s "
      "(written into the backing directory directly: %.0f s)"
      % (a.stashes, "one directory" if a.spread <= 1 else "%d directories" % a.spread,
         a.dirs, a.sync, time.perf_counter() - t))


def rss(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS"):
                return int(line.split()[1]) / 1024.0


def drop_caches(what="3"):
    subprocess.run(["sync"])
    try:
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write(what + "\n")
        return True
    except OSError:
        return False


def timed(fn):
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def mount():
    t = time.perf_counter()
    d = subprocess.Popen([os.path.join(a.build, "fs", "stashfs"), "-f", "-o",
                          "sync=%s,max_size=2G" % a.sync, backing, mnt], stderr=subprocess.DEVNULL)
    while not os.path.ismount(mnt):
        time.sleep(0.002)
    return d, time.perf_counter() - t


def unmount(d):
    subprocess.run(["fusermount3", "-u", mnt])
    d.wait()


drop_caches()
daemon, dt = mount()
print("mount: %.3f s" % dt)
time.sleep(2)       # the start-up scan runs in the background
print("daemon RSS idle: %.1f MiB" % rss(daemon.pid))

big = stash_dir(0)
for where, root in (("stashfs", mnt), ("backing", backing)):
    ls = lambda: subprocess.run(["ls", os.path.join(root, big)], stdout=subprocess.DEVNULL, check=True)
    drop_caches()   # both start from the disk
    first = timed(ls)
    again = timed(ls)
    print("ls of %s, %d entries (%s): %.3f s first, %.3f s again"
          % (big, len(os.listdir(os.path.join(root, big))), where, first, again))

order = list(names)
random.Random(1).shuffle(order)
sample = order[:10000]
for where, root in (("stashfs", mnt), ("backing", backing)):
    drop_caches()   # both start from the disk
    cold = timed(lambda: [os.stat(os.path.join(root, s)) for s in sample])
    warm = timed(lambda: [os.stat(os.path.join(root, s)) for s in sample])
    print("lookup (%s): first stat %.1f us, cached %.1f us" %
          (where, cold / len(sample) * 1e6, warm / len(sample) * 1e6))


def read_all():
    for s in order:
        with open(os.path.join(mnt, s), "rb") as f:
            f.read()


dt = timed(read_all)
print("read every stash once (random order): %.1f s (%.0f/s)" % (dt, len(order) / dt))
if a.dirs:
    dt = timed(lambda: [open(os.path.join(mnt, "tree", "d%05d" % i, "p"), "rb").read()
                        for i in range(a.dirs)])
    print("read one stash in each of %d directories: %.1f s" % (a.dirs, dt))
print("daemon RSS after reading every stash once: %.1f MiB" % rss(daemon.pid))
if drop_caches("2"):
    time.sleep(3)   # FORGETs arrive in batches
    print("daemon RSS after the kernel forgot them (drop_caches): %.1f MiB" % rss(daemon.pid))
dt = 0 if a.no_reread else timed(read_all)
dt and print("read every stash again: %.1f s (%.0f/s)" % (dt, len(order) / dt))

if not a.no_big:
    blob = os.urandom(1 << 20) * 100
    for where, root in (("stashfs", mnt), ("backing", backing)):
        p = os.path.join(root, "big")
        w = timed(lambda: open(p, "wb").write(blob))
        drop_caches()
        r = timed(lambda: open(p, "rb").read())
        print("100 MiB stash (%s): replace %.2f s (%.0f MiB/s), read %.2f s (%.0f MiB/s)"
              % (where, w, 100 / w, r, 100 / r))
        os.unlink(p)
    print("daemon RSS after the 100 MiB stash: %.1f MiB" % rss(daemon.pid))

    with open(os.path.join(backing, "streams", "huge"), "wb") as f:
        f.truncate(1 << 30)
    rec = b"r" * 99 + b"\n"
    for name in ("empty", "huge"):
        fd = os.open(os.path.join(mnt, "streams", name), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        dt = timed(lambda: [os.write(fd, rec) for _ in range(20000)])
        os.close(fd)
        print("appends of 100 B to a %s stream: %.0f/s" % ("1 GiB" if name == "huge" else "new", 20000 / dt))
    os.unlink(os.path.join(mnt, "streams", "huge"))
    os.unlink(os.path.join(mnt, "streams", "empty"))

with open(os.path.join(mnt, "merged"), "w") as f:
    f.write("{}\n")
unmount(daemon)

# The expiry scan: every 1/expired-th stash's ttl has passed when the daemon starts.
step = max(1, round(1 / a.expired)) if a.expired > 0 else 0
expired = [n for i, n in enumerate(names) if step and i % step == 0]
for n in expired:
    os.setxattr(os.path.join(backing, n), "user.stash.ttl", b"1")
time.sleep(1.5)
drop_caches()
daemon, dt = mount()
t0 = time.perf_counter()
merger = Merger(mnt)
while any(os.path.exists(os.path.join(backing, n)) for n in (expired[0], expired[len(expired) // 2], expired[-1])):
    time.sleep(0.05)
while sum(1 for n in expired if os.path.exists(os.path.join(backing, n))):
    time.sleep(0.2)
swept = time.perf_counter() - t0
lat = merger.stop()
print("mount with %d of %d stashes expired: %.3f s; the scan removed them all %.1f s after the mount"
      % (len(expired), a.stashes, dt, swept))
if lat:
    print("merges into one stash during the scan: %d, p50 %.0f us, p99 %.0f us"
          % (len(lat), lat[len(lat) // 2] * 1e6, lat[int(len(lat) * 0.99)] * 1e6))
print("daemon RSS after the scan: %.1f MiB" % rss(daemon.pid))
unmount(daemon)
t = time.perf_counter()
shutil.rmtree(top)
print("removed the store: %.0f s" % (time.perf_counter() - t))
