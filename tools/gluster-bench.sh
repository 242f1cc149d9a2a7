#!/bin/sh
# SPDX-License-Identifier: MIT
# Merges/s and appends/s of stashfs over GlusterFS, side by side with a local
# backing directory:
#
#   local, 1 daemon      one stashfs on a local directory (ext4 here)
#   local, 2 daemons     two stashfs -o shared on that one local directory
#   gluster, 1 daemon    one stashfs -o shared on a replica-2 volume (2 local bricks)
#   gluster, 2 daemons   one stashfs -o shared on each of two client mounts
#
# The same W worker processes do the same work in every setup (split evenly
# over the daemons): merges of one new key each into ONE stash (NAME.json,
# the contended case), and 1 KiB appends to ONE stream (one write() each).
# Every run is checked (all keys present, all appends whole) before its rate
# counts; each figure is the median of R runs, on a fresh directory each.
#
# The volume is set up and torn down by tests/integration/gluster.py (the
# fixture of the gluster tests): glusterd is started if none runs, and only
# what it started is stopped.  It installs nothing: tools/deps.sh --test
# installs glusterfs-server and glusterfs-client.
#
# usage: tools/gluster-bench.sh [-w WORKERS] [-m MERGES] [-a APPENDS] [-r RUNS]
#   STASHFS_BIN   the daemon (default: build/fs/stashfs)
#   LOCAL_DIR     where the local backing directories go (default: /var/tmp)
# Needs root (mount -t glusterfs).  Default: -w 8 -m 400 -a 2400 -r 3.
set -eu
cd "$(dirname "$0")/.."
WORKERS=8 MERGES=400 APPENDS=2400 RUNS=3
while getopts w:m:a:r:h opt; do
	case $opt in
	w) WORKERS=$OPTARG ;;
	m) MERGES=$OPTARG ;;
	a) APPENDS=$OPTARG ;;
	r) RUNS=$OPTARG ;;
	*) sed -n '2,26s/^# \{0,1\}//p' "$0"; exit 2 ;;
	esac
done
STASHFS_BIN=${STASHFS_BIN:-$PWD/build/fs/stashfs}
[ -x "$STASHFS_BIN" ] || { echo "gluster-bench: no daemon at $STASHFS_BIN (build first or set STASHFS_BIN)" >&2; exit 1; }
export STASHFS_BIN WORKERS MERGES APPENDS RUNS
export LOCAL_DIR=${LOCAL_DIR:-/var/tmp}
exec /usr/bin/python3 - <<'EOF'
import json, os, shutil, signal, statistics, subprocess, sys, tempfile, time

sys.path.insert(0, "tests/integration")
from conftest import Daemon          # noqa: E402  (the test harness's daemon runner)
import gluster                       # noqa: E402

W, MERGES, APPENDS, RUNS = (int(os.environ[k]) for k in ("WORKERS", "MERGES", "APPENDS", "RUNS"))
W = max(2, W - W % 2)                # an even split over two daemons
MERGES -= MERGES % W
APPENDS -= APPENDS % W
SIZE = 1024

WORKER = r'''
import os, sys
kind, path, tag, n, size = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
sys.stdin.read(1)                          # the common start
if kind == "merge":
    for i in range(n):
        with open(path, "w") as f:
            f.write('{"%s_%d": %d}' % (tag, i, i))
else:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    for i in range(n):
        head = ("%s-%05d-" % (tag, i)).encode()
        os.write(fd, head + b"x" * (size - 1 - len(head)) + b"\n")
    os.close(fd)
'''


def signal_exit(sig, frame):
    raise KeyboardInterrupt


signal.signal(signal.SIGTERM, signal_exit)


def measure(kind, mnts, total):
    """Run W workers split over @mnts; return ops/s after checking the result."""
    if kind == "merge":
        target = lambda m: os.path.join(m, "p.json")
    else:
        with open(os.path.join(mnts[0], "streams", "s"), "w"):
            pass
        target = lambda m: os.path.join(m, "streams", "s")
    per = total // W
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, kind, target(mnts[w % len(mnts)]),
                               "w%d" % w, str(per), str(SIZE)], stdin=subprocess.PIPE)
             for w in range(W)]
    time.sleep(0.3)                          # all started (python is up)
    t0 = time.time()
    for p in procs:
        p.stdin.write(b"g")
        p.stdin.close()
    rcs = [p.wait() for p in procs]
    took = time.time() - t0
    if any(rcs):
        raise RuntimeError("%s: a worker failed: %s" % (kind, rcs))
    if kind == "merge":
        with open(os.path.join(mnts[-1], "p")) as f:
            doc = json.load(f)
        want = {"w%d_%d" % (w, i): i for w in range(W) for i in range(per)}
        if doc != want:
            raise RuntimeError("merge: %d of %d keys" % (len(set(want) & set(doc)), len(want)))
    else:
        with open(os.path.join(mnts[-1], "streams", "s"), "rb") as f:
            lines = f.read().split(b"\n")[:-1]
        if len(lines) != total or any(len(l) != SIZE - 1 for l in lines):
            raise RuntimeError("append: %d lines, %d torn" % (len(lines), sum(len(l) != SIZE - 1 for l in lines)))
    return total / took


def run_setup(label, backings, workdir, opts):
    """backings: one path per daemon (the same directory, maybe seen twice)."""
    rates = {"merge": [], "append": []}
    for r in range(RUNS):
        for kind, total in (("merge", MERGES), ("append", APPENDS)):
            sub = "%s-%d" % (kind, r)
            os.mkdir(os.path.join(backings[0], sub))
            ds, mnts = [], []
            try:
                for i, b in enumerate(backings):
                    m = os.path.join(workdir, "m%d" % i)
                    os.makedirs(m, exist_ok=True)
                    ds.append(Daemon(os.path.join(b, sub), m, os.path.join(workdir, "d%d.log" % i),
                                     opts).start())
                    mnts.append(m)
                rates[kind].append(measure(kind, mnts, total))
            finally:
                for d in ds:
                    rc = d.stop()
                    if rc:
                        print("%s: daemon exited %d:\n%s" % (label, rc, d.read_log()), file=sys.stderr)
            shutil.rmtree(os.path.join(backings[0], sub), ignore_errors=True)
    return rates


def fstype(path):
    return subprocess.run(["findmnt", "-n", "-o", "FSTYPE", "-T", path], capture_output=True,
                          text=True).stdout.strip() or "?"


results = []
work = tempfile.mkdtemp(prefix="stashfs-gbench.", dir=os.environ["LOCAL_DIR"])
vol = None
try:
    local = os.path.join(work, "local")
    os.mkdir(local)
    lt = fstype(local)
    results.append(("local (%s), 1 daemon" % lt, run_setup("local1", [local], work, [])))
    results.append(("local (%s), 2 daemons -o shared" % lt,
                    run_setup("local2", [local, local], work, ["shared"])))
    vol = gluster.Volume(os.path.join(work, "gluster"))
    os.mkdir(vol.tmp)
    try:
        vol.setup()
    except gluster.Impossible as e:
        print("gluster-bench: GlusterFS impossible here: %s" % e, file=sys.stderr)
    else:
        g1, g2 = vol.mounts
        results.append(("gluster replica 2, 1 daemon -o shared",
                        run_setup("gluster1", [g1], work, ["shared"])))
        results.append(("gluster replica 2, 2 daemons -o shared",
                        run_setup("gluster2", [g1, g2], work, ["shared"])))
except KeyboardInterrupt:
    print("gluster-bench: interrupted", file=sys.stderr)
finally:
    if vol is not None:
        for p in vol.teardown():
            print("gluster-bench: teardown: %s" % p, file=sys.stderr)
    shutil.rmtree(work, ignore_errors=True)

print()
print("%s: %d workers, %d merges into one stash, %d x %d B appends to one stream,"
      % (os.environ["STASHFS_BIN"], W, MERGES, APPENDS, SIZE))
print("median of %d runs (all runs in brackets); sync=always; %d cores" % (RUNS, os.cpu_count()))
print()
print("| setup | merges/s | appends/s |")
print("|---|---:|---:|")
for label, rates in results:
    cell = lambda v: "%.0f (%s)" % (statistics.median(v), ", ".join("%.0f" % x for x in v)) if v else "-"
    print("| %s | %s | %s |" % (label, cell(rates["merge"]), cell(rates["append"])))
EOF
