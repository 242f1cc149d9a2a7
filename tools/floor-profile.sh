#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# floor-profile.sh - where a benchmark row's time goes beyond its floor.
#
# Usage: tools/floor-profile.sh WORKLOAD [THREADS] [SECONDS]
# Environment: STASHFS_BUILD (build/), BENCH_TMP (/var/tmp), STASHFS_OPTS
#   (sync=never,max_size=2G), TOP (25 rows).
#
# Mounts one stashfs, runs tools/bench WORKLOAD on it under
# `perf record -a -g -e cpu-clock` (a software clock: it works where the
# machine has no hardware counters), and prints the share of all CPU
# samples by process and by user/kernel side, the daemon's syscalls per op
# (from `perf trace -s` when it works, else skipped), and the top symbols by
# process.  Samples cover the whole machine: on a shared machine other
# people's processes show up as such.  Only the daemon started here is
# stopped, by PID, and its mount unmounted.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${STASHFS_BUILD:-$ROOT/build}
WL=${1:?usage: floor-profile.sh WORKLOAD [THREADS] [SECONDS]}
T=${2:-1}
SECS=${3:-3}
TOP=${TOP:-25}
command -v perf >/dev/null || { echo "floor-profile.sh: perf is not installed" >&2; exit 2; }
[ -x "$BUILD/fs/stashfs" ] && [ -x "$BUILD/tools/bench" ] ||
	{ echo "floor-profile.sh: build $BUILD first" >&2; exit 2; }

WORK=$(mktemp -d "${BENCH_TMP:-/var/tmp}/stashfs-profile.XXXX")
mkdir -p "$WORK/backing" "$WORK/mnt"
PID=""
cleanup() {
	if [ -n "$PID" ]; then
		fusermount3 -u "$WORK/mnt" 2>/dev/null || true
		wait "$PID" 2>/dev/null || true
	fi
	rm -rf "$WORK"
}
trap cleanup EXIT

"$BUILD/fs/stashfs" -f -o "${STASHFS_OPTS:-sync=never,max_size=2G}" \
	"$WORK/backing" "$WORK/mnt" 2>"$WORK/daemon.log" &
PID=$!
for _ in $(seq 200); do
	mountpoint -q "$WORK/mnt" && break
	kill -0 "$PID" 2>/dev/null || { cat "$WORK/daemon.log" >&2; exit 1; }
	sleep 0.05
done
mountpoint -q "$WORK/mnt" || { echo "floor-profile.sh: no mount" >&2; exit 1; }

# One untimed run first, so files exist and caches are warm.
"$BUILD/tools/bench" --dir "$WORK/mnt" --workload "$WL" --threads "$T" --seconds 0.5 >/dev/null
perf record -q -a -g -e cpu-clock -o "$WORK/perf.data" -- \
	"$BUILD/tools/bench" --dir "$WORK/mnt" --workload "$WL" --threads "$T" --seconds "$SECS" \
	>"$WORK/bench.out" 2>/dev/null
cat "$WORK/bench.out"
OPS=$(sed -n 's/.* ops=\([0-9]*\) .*/\1/p' "$WORK/bench.out")

echo
echo "CPU samples by process and side (% of all samples, both CPUs; idle = swapper):"
perf report -i "$WORK/perf.data" --no-children --sort comm,dso -g none --percent-limit 0.5 \
	--stdio 2>/dev/null | grep -E '^ +[0-9]' | head -n "$TOP"
echo
echo "Top symbols of the daemon and of bench (% of all samples):"
perf report -i "$WORK/perf.data" --no-children --comm stashfs,bench --sort comm,sym -g none \
	--percent-limit 0.4 --stdio 2>/dev/null | grep -E '^ +[0-9]' | head -n "$TOP"

# The daemon's syscalls per op, counted over a second run of the same length.
if perf trace -s -p "$PID" -o "$WORK/trace.txt" -- sleep 0.1 >/dev/null 2>&1; then
	perf trace -s -p "$PID" -o "$WORK/trace.txt" -- \
		"$BUILD/tools/bench" --dir "$WORK/mnt" --workload "$WL" --threads "$T" \
		--seconds "$SECS" >"$WORK/bench2.out" 2>/dev/null || true
	OPS2=$(sed -n 's/.* ops=\([0-9]*\) .*/\1/p' "$WORK/bench2.out")
	echo
	echo "Daemon syscalls per op (perf trace, $OPS2 ops, all daemon threads):"
	awk -v ops="${OPS2:-0}" '$1 ~ /^[a-z_0-9]+$/ && $2 ~ /^[0-9]+$/ && ops > 0 {
		n[$1] += $2 } END { for (s in n) printf "  %-20s %6.2f\n", s, n[s] / ops }' \
		"$WORK/trace.txt" | sort -k2 -rn | head -n 15
fi
echo "(first run: $OPS ops)"
