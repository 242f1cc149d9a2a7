#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Scale: a store of many stashes and directories, a big stash, a big stream.

    tools/scale-bench.py [--stashes 100000] [--dirs 10000] [--build build]
                         [--sync never|always]

Prints mount time, daemon RSS (idle, and after reading every stash once),
the time of a full readdir and of cold and warm lookups, a 100 MiB stash
read and replaced, and appends into a 1 GiB stream.  Each figure comes with
the same operation on the plain backing directory, measured in the same run.
"""
import argparse
import os
import random
import shutil
import subprocess
import tempfile
import time

ap = argparse.ArgumentParser()
ap.add_argument("--stashes", type=int, default=100000)
ap.add_argument("--dirs", type=int, default=10000)
ap.add_argument("--build", default=os.path.join(os.path.dirname(__file__), "..", "build"))
ap.add_argument("--sync", choices=("never", "always"), default="never",
                help="the daemon's -o sync= (always: the 100 MiB replace waits for the disk)")
a = ap.parse_args()

top = tempfile.mkdtemp(prefix="stashfs-scale.", dir="/var/tmp")
backing, mnt = os.path.join(top, "b"), os.path.join(top, "m")
os.makedirs(os.path.join(backing, "flat"))
os.makedirs(os.path.join(backing, "streams"))
os.makedirs(mnt)
for i in range(a.stashes):
    with open(os.path.join(backing, "flat", "s%06d" % i), "w") as f:
        f.write('{"i": %d}\n' % i)
for i in range(a.dirs):
    d = os.path.join(backing, "tree", "d%05d" % i)
    os.makedirs(d)
    with open(os.path.join(d, "p"), "w") as f:
        f.write("x\n")


def rss(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS"):
                return int(line.split()[1]) / 1024.0


def drop_caches():
    subprocess.run(["sync"])
    try:
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
    except OSError:
        pass


def timed(fn):
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


t = time.perf_counter()
daemon = subprocess.Popen([os.path.join(a.build, "fs", "stashfs"), "-f", "-o", "sync=%s,max_size=2G" % a.sync,
                           backing, mnt], stderr=subprocess.DEVNULL)
while not os.path.ismount(mnt):
    time.sleep(0.002)
print("store: %d stashes in one directory, %d directories, sync=%s" % (a.stashes, a.dirs, a.sync))
print("mount: %.3f s" % (time.perf_counter() - t))
time.sleep(2)       # the start-up scan runs in the background
print("daemon RSS idle: %.1f MiB" % rss(daemon.pid))

for where, root in (("stashfs", mnt), ("backing", backing)):
    n = [0]
    dt = timed(lambda: n.__setitem__(0, len(os.listdir(os.path.join(root, "flat")))))
    print("readdir of %d entries (%s): %.3f s" % (n[0], where, dt))

names = ["s%06d" % i for i in range(a.stashes)]
random.Random(1).shuffle(names)
sample = names[:10000]
for where, root in (("stashfs", mnt), ("backing", backing)):
    cold = timed(lambda: [os.stat(os.path.join(root, "flat", s)) for s in sample])
    warm = timed(lambda: [os.stat(os.path.join(root, "flat", s)) for s in sample])
    print("lookup (%s): first stat %.1f us, cached %.1f us" %
          (where, cold / len(sample) * 1e6, warm / len(sample) * 1e6))

dt = timed(lambda: [open(os.path.join(mnt, "flat", s), "rb").read() for s in names])
print("read every stash once: %.1f s (%.0f/s)" % (dt, len(names) / dt))
dt = timed(lambda: [open(os.path.join(mnt, "tree", "d%05d" % i, "p"), "rb").read()
                    for i in range(a.dirs)])
print("read one stash in each of %d directories: %.1f s" % (a.dirs, dt))
print("daemon RSS after reading every stash once: %.1f MiB" % rss(daemon.pid))

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

subprocess.run(["fusermount3", "-u", mnt])
daemon.wait()
shutil.rmtree(top)
