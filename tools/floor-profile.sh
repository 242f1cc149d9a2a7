#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# floor-profile.sh - where a benchmark row's time goes beyond its floor.
#
# Usage: tools/floor-profile.sh WORKLOAD [THREADS] [SECONDS]
# Environment: STASHFS_BUILD (build/), BENCH_TMP (/var/tmp), BENCH_ARGS (more
#   bench arguments, e.g. "--size 1G"), STASHFS_OPTS
#   (sync=never,max_size=2G), TOP (25 rows).
#
# Mounts one stashfs, runs tools/bench WORKLOAD on it under
# `perf record -a -g -e cpu-clock` (a software clock: it works where the
# machine has no hardware counters), and prints, as shares of the samples
# of the daemon and bench together, where each spends its time (user or
# kernel side, top symbols), then the daemon's syscalls per op (counted by
# `strace -c -f` over a second run: strace slows it, the counts stay exact).
# Samples cover the whole machine; other people's processes are left out
# of the shares, and the idle share says how much the two waited.  Only the daemon started here is
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
"$BUILD/tools/bench" --dir "$WORK/mnt" --workload "$WL" --threads "$T" ${BENCH_ARGS:-} --seconds 0.5 >/dev/null
perf record -q -a -g -e cpu-clock -o "$WORK/perf.data" -- \
	"$BUILD/tools/bench" --dir "$WORK/mnt" --workload "$WL" --threads "$T" ${BENCH_ARGS:-} --seconds "$SECS" \
	>"$WORK/bench.out" 2>/dev/null
cat "$WORK/bench.out"
OPS=$(sed -n 's/.* ops=\([0-9]*\) .*/\1/p' "$WORK/bench.out")

echo
echo "Samples of all processes: idle (swapper) vs daemon vs bench vs the rest (others' work):"
# Other daemons on the machine are called stashfs too: the daemon is picked by its PID.
share() {       # share PERF-REPORT-FILTER...: its % of all samples
	perf report -i "$WORK/perf.data" --no-children "$@" --sort comm -g none --stdio 2>/dev/null |
		awk '/^ +[0-9]/ { s += $1 + 0 } END { printf "%.1f", s }'
}
D=$(share --pid "$PID")
BN=$(share --comm bench)
IDLE=$(share --comm swapper)
echo "  idle $IDLE%  this daemon $D%  bench $BN%  others $(echo "100 - $D - $BN - $IDLE" | bc)%"
for who in "--pid $PID" "--comm bench"; do
	echo
	echo "${who#--}: top symbols, [k] kernel, [.] user (% of its own samples):"
	# shellcheck disable=SC2086
	perf report -i "$WORK/perf.data" --no-children $who --percentage relative \
		--sort sym -g none --percent-limit 1 --stdio 2>/dev/null | grep -E '^ +[0-9]' | head -n "$TOP"
done

# The daemon's syscalls per op, counted over a second run of the same length.
if command -v strace >/dev/null; then
	strace -c -f -p "$PID" -o "$WORK/strace.txt" &
	SPID=$!
	sleep 0.5
	"$BUILD/tools/bench" --dir "$WORK/mnt" --workload "$WL" --threads "$T" ${BENCH_ARGS:-} \
		--seconds "$SECS" >"$WORK/bench2.out" 2>/dev/null || true
	kill -INT "$SPID" 2>/dev/null || true
	wait "$SPID" 2>/dev/null || true
	OPS2=$(sed -n 's/.* ops=\([0-9]*\) .*/\1/p' "$WORK/bench2.out")
	echo
	echo "Daemon syscalls per op (strace -c, $OPS2 ops, all daemon threads):"
	awk -v ops="${OPS2:-0}" 'NF >= 5 && $4 ~ /^[0-9]+$/ && ops > 0 && $NF != "total" {
		printf "  %-18s %6.2f\n", $NF, $4 / ops }' "$WORK/strace.txt" | sort -k2 -rn | head -n 20
fi
echo "(profiled run: $OPS ops)"
