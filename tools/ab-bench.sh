#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# ab-bench.sh - two stashfs builds side by side: did a change help?
#
# Usage: tools/ab-bench.sh NAME=STASHFS_BINARY NAME=STASHFS_BINARY [...]
# Environment: WORKLOADS ("read-changed replace merge"), THREADS ("1 2"),
#   ROUNDS (4), BENCH_SECONDS (1.5), BENCH (build/tools/bench),
#   BENCH_TMP (/var/tmp: the disk everything runs on), STASHFS_OPTS
#   (sync=never), BENCH_ARGS (more bench arguments, e.g. "--size 1G").
#
# Each round mounts every binary in turn (-o $STASHFS_OPTS) over one backing
# directory and runs every workload and thread count with tools/bench, so
# drift on a shared machine hits all builds alike; prints medians of ops/s
# and p50 per cell.  Build the other revision with e.g.
#   git worktree add /tmp/old REV && meson setup /tmp/old-build /tmp/old &&
#   ninja -C /tmp/old-build
# Only the daemons started here are stopped, by PID.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WORKLOADS=${WORKLOADS:-"read-changed replace merge"}
THREADS=${THREADS:-"1 2"}
ROUNDS=${ROUNDS:-4}
BENCH_SECONDS=${BENCH_SECONDS:-1.5}
BENCH=${BENCH:-$ROOT/build/tools/bench}

if [ $# -lt 2 ] || [ "${1:-}" = -h ] || [ "${1:-}" = --help ]; then
	sed -n '3,17p' "$0" | sed 's/^# \{0,1\}//'
	exit 2
fi
[ -x "$BENCH" ] || { echo "ab-bench.sh: no bench at $BENCH (build first)" >&2; exit 2; }

TMP=$(mktemp -d "${BENCH_TMP:-/var/tmp}/stashfs-ab.XXXX")
MNT=$TMP/mnt
mkdir -p "$TMP/backing" "$MNT"
PID=""
stop() {
	if [ -n "$PID" ]; then
		fusermount3 -u "$MNT" 2>/dev/null || true
		wait "$PID" 2>/dev/null || true
		PID=""
	fi
}
trap 'stop; rm -rf "$TMP"' EXIT

for round in $(seq "$ROUNDS"); do
	for spec in "$@"; do
		name=${spec%%=*}
		bin=${spec#*=}
		"$bin" -f -o "${STASHFS_OPTS:-sync=never}" "$TMP/backing" "$MNT" 2>>"$TMP/daemon.log" &
		PID=$!
		for _ in $(seq 200); do
			mountpoint -q "$MNT" && break
			sleep 0.02
		done
		mountpoint -q "$MNT" || { echo "ab-bench.sh: $name did not mount" >&2; exit 1; }
		for wl in $WORKLOADS; do
			for t in $THREADS; do
				line=$("$BENCH" --dir "$MNT" --workload "$wl" --threads "$t" \
					--seconds "$BENCH_SECONDS" ${BENCH_ARGS:-} --json)
				echo "$name $round $line" >>"$TMP/runs"
			done
		done
		stop
	done
done

python3 - "$TMP/runs" "$@" <<'PY'
import collections, json, statistics, sys

names = [spec.split("=", 1)[0] for spec in sys.argv[2:]]
cells = collections.defaultdict(list)
order = []
for line in open(sys.argv[1]):
    name, _, text = line.split(" ", 2)
    r = json.loads(text)
    key = (r["workload"], r["threads"])
    if key not in order:
        order.append(key)
    cells[key + (name,)].append(r)

print("| workload | T | " + " | ".join(names) + " |")
print("|---|---:|" + "---:|" * len(names))
for wl, t in order:
    row = []
    for n in names:
        rs = cells[(wl, t, n)]
        ops = statistics.median(r["ops_per_s"] for r in rs)
        p50 = statistics.median(r["p50_us"] for r in rs)
        mib = [r["mib_per_s"] for r in rs if "mib_per_s" in r]
        row.append(f"{statistics.median(mib):,.0f} MiB/s" if mib else f"{ops:,.0f}, {p50:.0f} µs")
    print(f"| {wl} | {t} | " + " | ".join(row) + " |")
PY
