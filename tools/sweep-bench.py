#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""How long the start-up sweep takes over N stashes of which a share expired,
and whether the daemon keeps serving meanwhile.

    tools/sweep-bench.py [--stashes 100000] [--expired 0.1] [--spread 1]
                         [--build build [--build other] ...] [--rounds 1]
                         [--attach 'strace -c -f -p {pid} -o FILE'] [--dir /var/tmp]

Fills a backing directory directly (the daemon down), spread over --spread
directories, and for each round and each build in turn: gives the expiring
share (every 1/expired-th stash, written again where a previous run removed
it) a ttl that has passed, drops the caches, mounts, and measures until
every expired stash is gone from the backing directory, while a writer
merges into one stash through the mount (p50 of those merges).  Several
builds run side by side over the same store, interleaved by round.
--attach runs a command on the daemon's pid ({pid}) during the scan and
stops it with SIGINT when the scan is done (perf record, strace -c).
--dir puts the store elsewhere (a tmpfs: only the daemon's work is left).
The daemon's own CPU time, the time its threads waited for a CPU (the
machine's load shows there), and what it read from the disk are printed;
the block device under --dir reports what it did during the scan (its own
counts, so other work on the machine counts too): requests read, written
and discarded, the bytes read, and the time a read and a discard took.
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
ap.add_argument("--dir", default="/var/tmp", help="where the store is made")
a = ap.parse_args()
builds = a.build or [os.path.join(os.path.dirname(__file__), "..", "build")]

top = tempfile.mkdtemp(prefix="stashfs-sweep.", dir=a.dir)
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


def device():
    """The /proc/diskstats name of the device under the store, or None."""
    dev = os.stat(top).st_dev
    for line in open("/proc/diskstats"):
        f = line.split()
        if os.makedev(int(f[0]), int(f[1])) == dev:
            return f[2]
    return None


def disk():
    """Requests read, sectors read, ms reading, requests written, requests
    discarded, ms discarding."""
    for line in open("/proc/diskstats"):
        f = line.split()
        if f[2] == dev:
            return [int(f[i]) if len(f) > i else 0 for i in (3, 5, 6, 7, 14, 17)]
    return [0] * 6


dev = device()


def daemon_counts(pid):
    """The daemon's CPU seconds, seconds its threads waited for a CPU, and
    bytes it had read from the disk."""
    f = open("/proc/%d/stat" % pid).read().rsplit(")", 1)[1].split()
    cpu = (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")
    waited = 0
    for t in os.listdir("/proc/%d/task" % pid):
        try:
            waited += int(open("/proc/%d/task/%s/schedstat" % (pid, t)).read().split()[1]) / 1e9
        except OSError:
            pass
    io = dict(line.split(": ") for line in open("/proc/%d/io" % pid).read().splitlines())
    return cpu, waited, int(io["read_bytes"])


def run(build):
    for n in expired:
        p = os.path.join(backing, n)
        if not os.path.exists(p):
            write(n)
        os.setxattr(p, "user.stash.ttl", b"1")
    time.sleep(1.5)
    drop_caches()
    io = disk()
    start = time.perf_counter()
    daemon = subprocess.Popen([os.path.join(build, "fs", "stashfs"), "-f", "-o", "sync=never",
                               backing, mnt], stderr=subprocess.DEVNULL)
    while not os.path.ismount(mnt):
        time.sleep(0.002)
    mounted = time.perf_counter() - start
    tool = subprocess.Popen(a.attach.format(pid=daemon.pid), shell=True,
                            start_new_session=True) if a.attach else None
    merger = Merger(mnt)
    # One cheap probe at a time while it runs (listing or stat'ing the rest
    # would compete with the scan), in no particular order: a removed stash
    # does not come back.
    for n in expired:
        while os.path.exists(os.path.join(backing, n)):
            time.sleep(0.05)
    swept = time.perf_counter() - start
    io = [b - a for a, b in zip(io, disk())]
    cpu, waited, read = daemon_counts(daemon.pid)
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
    print("  the daemon: %.2f s of CPU, %.2f s waiting for a CPU, %.1f MiB read from the disk"
          % (cpu, waited, read / 2**20), flush=True)
    if dev:
        print("  %s meanwhile (the whole machine's): %d reads (%.0f MiB, %.2f ms each), "
              "%d writes, %d discards (%.2f ms each)"
              % (dev, io[0], io[1] / 2048, io[2] / max(io[0], 1), io[3], io[4],
                 io[5] / max(io[4], 1)), flush=True)


try:
    for r in range(a.rounds):
        for b in builds:
            run(b)
finally:
    shutil.rmtree(top)
