#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# compare.sh - stashfs next to a plain ext4 directory and next to libfuse's
# passthrough_ll, on the same disk, with tools/bench.
#
# Usage: tools/compare.sh [--quick] [--out DIR] [--report DIR] [--readme FILE]
#   --quick    1 round of 0.5 s per cell (a smoke run, numbers mean little)
#   --out DIR  where results go (default /var/tmp/stashfs-bench-results-DATE)
#   --report DIR  run nothing: the table, JSON and chart again from the runs
#              a previous run left in DIR (runs.jsonl, env.sh), into DIR
#   --readme FILE  also put the table and chart into FILE (the README), in
#              place of what stands between its "bench-table" markers
# Environment: ROUNDS (3), BENCH_SECONDS (2), MERGE_SHARED_OPS (3000),
#   BENCH_TMP (/var/tmp: the disk everything runs on), STASHFS_BUILD (build/),
#   WORKLOADS (every row; or a list such as "roundtrip create-unlink
#   create-new", where merge-shared and read-big:100M etc. name those rows).
#
# Every cell runs the systems interleaved (ext4, passthrough_ll, stashfs,
# ext4, ...) so drift hits all of them alike, and the table shows medians
# over the rounds.  On ext4 and passthrough_ll bench acts as a careful client
# (temp file + rename, read-parse-write for merges), so each row compares
# the same guarantee.  passthrough_ll is compiled from the libfuse3-dev
# examples into the temp dir, never into the tree.  The script only ever
# stops the daemons it started, by PID, and unmounts their mounts on any exit.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ROUNDS=${ROUNDS:-3}
BENCH_SECONDS=${BENCH_SECONDS:-2}
MERGE_SHARED_OPS=${MERGE_SHARED_OPS:-3000}
BUILD=${STASHFS_BUILD:-$ROOT/build}
OUT=""
REPORT=""
README=""

while [ $# -gt 0 ]; do
	case "$1" in
	--quick) ROUNDS=1; BENCH_SECONDS=0.5; MERGE_SHARED_OPS=300 ;;
	--out) OUT=$2; shift ;;
	--report) REPORT=$(cd "$2" && pwd); shift ;;
	--readme) README=$(realpath "$2"); shift ;;
	-h|--help) sed -n '3,25p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	*) echo "compare.sh: unknown argument $1" >&2; exit 2 ;;
	esac
	shift
done
OUT=${OUT:-${REPORT:-/var/tmp/stashfs-bench-results-$(date +%Y%m%d-%H%M%S)}}

log() { printf '== %s\n' "$*" >&2; }

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO=sudo
need_pkg() {    # need_pkg TEST-COMMAND PACKAGE...
	if ! eval "$1" >/dev/null 2>&1; then
		shift
		if [ -n "$SUDO" ] && ! command -v sudo >/dev/null 2>&1; then
			log "not root and there is no sudo; as root, run: apt-get install -y $*"
			exit 1
		fi
		log "installing $*"
		$SUDO apt-get install -y "$@" >/dev/null 2>&1 ||
			{ $SUDO apt-get update >/dev/null && $SUDO apt-get install -y "$@" >/dev/null; }
	fi
}
need_pkg 'test -f /usr/share/doc/libfuse3-dev/examples/passthrough_ll.c' libfuse3-dev
need_pkg 'command -v gcc' gcc
need_pkg 'command -v pkg-config' pkg-config
need_pkg 'command -v fusermount3' fuse3
need_pkg 'command -v python3' python3

if [ -z "$REPORT" ]; then
log "building stashfs and bench in $BUILD"
[ -f "$BUILD/build.ninja" ] || meson setup "$BUILD" "$ROOT" >/dev/null
ninja -C "$BUILD" fs/stashfs tools/bench >/dev/null
STASHFS=$BUILD/fs/stashfs
BENCH=$BUILD/tools/bench

mkdir -p "${BENCH_TMP:-/var/tmp}" "$OUT"
WORK=$(mktemp -d "${BENCH_TMP:-/var/tmp}/stashfs-bench.XXXX")

# --- mounts and cleanup --------------------------------------------------
PIDS=()
MOUNTS=()

is_mounted() {
	local p
	p=$(realpath "$1")
	awk -v p="$p" '$5 == p { found = 1 } END { exit !found }' /proc/self/mountinfo
}

cleanup() {
	local rc=$? m pid
	trap - EXIT INT TERM
	for m in "${MOUNTS[@]}"; do
		is_mounted "$m" && { fusermount3 -u "$m" 2>/dev/null || fusermount3 -u -z "$m" 2>/dev/null || true; }
	done
	for pid in "${PIDS[@]}"; do
		for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
		if kill -0 "$pid" 2>/dev/null; then
			log "daemon $pid did not exit after unmount; sending TERM"
			kill -TERM "$pid" 2>/dev/null || true
			sleep 1
			kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
		fi
		wait "$pid" 2>/dev/null || true
	done
	cp "$WORK"/*.log "$OUT"/ 2>/dev/null || true
	rm -rf "$WORK"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

start_daemon() {    # start_daemon NAME MOUNTPOINT CMD...
	local name=$1 mnt=$2 pid
	shift 2
	"$@" >"$WORK/$name.log" 2>&1 &
	pid=$!
	PIDS+=("$pid")
	MOUNTS+=("$mnt")
	for _ in $(seq 200); do
		is_mounted "$mnt" && return 0
		kill -0 "$pid" 2>/dev/null || { cat "$WORK/$name.log" >&2; echo "compare.sh: $name exited" >&2; exit 1; }
		sleep 0.05
	done
	echo "compare.sh: $name did not mount" >&2
	exit 1
}

log "compiling passthrough_ll into $WORK"
cp /usr/share/doc/libfuse3-dev/examples/passthrough_ll.c \
   /usr/share/doc/libfuse3-dev/examples/passthrough_helpers.h "$WORK/"
# shellcheck disable=SC2046
gcc -O2 -Wall -o "$WORK/passthrough_ll" "$WORK/passthrough_ll.c" $(pkg-config --cflags --libs fuse3)

mkdir -p "$WORK"/{ext4,pt-backing,pt,st-backing,st,sts-backing,sts}
start_daemon passthrough_ll "$WORK/pt" "$WORK/passthrough_ll" -f -o "source=$WORK/pt-backing" "$WORK/pt"
# max_size: room for the 1 GiB rows (it only limits, it costs nothing).
start_daemon stashfs "$WORK/st" "$STASHFS" -f -o sync=never,max_size=2G "$WORK/st-backing" "$WORK/st"
ST_PID=${PIDS[-1]}
start_daemon stashfs-sync "$WORK/sts" "$STASHFS" -f -o sync=always,max_size=2G "$WORK/sts-backing" "$WORK/sts"

# Honesty check: every backing store on one device.
devs=$(stat -c %d "$WORK/ext4" "$WORK/pt-backing" "$WORK/st-backing" "$WORK/sts-backing" | sort -u | wc -l)
[ "$devs" -eq 1 ] || { echo "compare.sh: the backing dirs are not on one device" >&2; exit 1; }

declare -A DIR=([ext4]=$WORK/ext4 [passthrough_ll]=$WORK/pt [stashfs]=$WORK/st [stashfs-sync]=$WORK/sts)

# --- the runs ----------------------------------------------------------
RESULTS=$WORK/results.jsonl
: >"$RESULTS"

run_cell() {    # run_cell WORKLOAD[:SIZE] THREADS SYSTEM...
	local wl=${1%%:*} t=$2 r sys budget line err size=() cell=${1/:/ }
	case "$1" in *:*) size=(--size "${1#*:}") ;; esac
	shift 2
	if [ "$wl" = merge-shared ]; then
		# a fixed op count: the shared document grows with every op, so a
		# time budget would hand the faster system a bigger document
		budget=(--ops "$MERGE_SHARED_OPS")
	else
		budget=(--seconds "$BENCH_SECONDS")
	fi
	for r in $(seq "$ROUNDS"); do
		for sys in "$@"; do
			if line=$("$BENCH" --dir "${DIR[$sys]}" --workload "$wl" --threads "$t" \
			          "${budget[@]}" "${size[@]}" --json --label "$sys" 2>"$WORK/bench.err"); then
				printf '%s\n' "$line" | python3 -c '
import json, sys
r = sys.argv[1]
for l in sys.stdin:
    o = json.loads(l); o["round"] = int(r); o["cell"] = sys.argv[2]; print(json.dumps(o))' "$r" "$cell" >>"$RESULTS"
			else
				err=$(tr '\n' ' ' <"$WORK/bench.err")
				log "FAILED: $sys $wl threads=$t: $err"
				python3 -c 'import json, sys; print(json.dumps({"label": sys.argv[1], "workload": sys.argv[2],
"threads": int(sys.argv[3]), "round": int(sys.argv[4]), "failed": True, "error": sys.argv[5]}))' \
					"$sys" "$cell" "$t" "$r" "$err" >>"$RESULTS"
			fi
		done
	done
}

SYSTEMS=(ext4 passthrough_ll stashfs)
ALL="roundtrip read read-changed stat replace replace-fsync append create-unlink create-new merge
     merge-schema merge-stream merge-shared read-big:100M replace-big:100M read-big:1G replace-big:1G"
# shellcheck disable=SC2086
WANT=" $(echo ${WORKLOADS:-$ALL}) "
wanted() { [[ "$WANT" == *" $1 "* ]]; }
for wl in roundtrip read read-changed stat replace replace-fsync append create-unlink create-new merge merge-schema merge-stream; do
	wanted "$wl" || continue
	for t in 1 2; do
		log "$wl threads=$t"
		if [ "$wl" = replace-fsync ]; then
			run_cell "$wl" "$t" "${SYSTEMS[@]}" stashfs-sync
		else
			run_cell "$wl" "$t" "${SYSTEMS[@]}"
		fi
	done
done
for t in 1 2 8; do
	wanted merge-shared || continue
	log "merge-shared threads=$t"
	run_cell merge-shared "$t" "${SYSTEMS[@]}"
done
# Big files: written once in 1 MiB calls, then read (hot caches) or replaced whole.
for cell in read-big:100M replace-big:100M read-big:1G replace-big:1G; do
	wanted "$cell" || continue
	log "$cell threads=1"
	run_cell "$cell" 1 "${SYSTEMS[@]}"
done
# The peak over the whole run, big files included.
ST_HWM=$(awk '/^VmHWM/ { printf "%.1f", $2 / 1024 }' "/proc/$ST_PID/status")
export ST_HWM

# --- report --------------------------------------------------------------
FSTYPE=$(findmnt -n -o FSTYPE -T "$WORK")
FSSRC=$(findmnt -n -o SOURCE -T "$WORK")
FSOPTS=$(findmnt -n -o OPTIONS -T "$WORK")
REV=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
git -C "$ROOT" diff --quiet HEAD 2>/dev/null || REV="$REV+uncommitted"

export ROUNDS BENCH_SECONDS MERGE_SHARED_OPS REV FSTYPE FSSRC FSOPTS
NPROC=$(nproc)
KERNEL=$(uname -r)
CPU=$(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)
FUSEVER=$(pkg-config --modversion fuse3)
export NPROC KERNEL CPU FUSEVER
cp "$RESULTS" "$OUT/runs.jsonl"
# What the report needs to be made again from runs.jsonl (--report).
for v in ROUNDS BENCH_SECONDS MERGE_SHARED_OPS REV FSTYPE FSSRC FSOPTS NPROC KERNEL CPU FUSEVER ST_HWM; do
	printf 'export %s=%q\n' "$v" "${!v}"
done >"$OUT/env.sh"
else
	# shellcheck disable=SC1091
	source "$REPORT/env.sh"
	RESULTS=$REPORT/runs.jsonl
fi
README_FILE=$README python3 - "$RESULTS" "$OUT" <<'PY'
import json, os, statistics, sys
from collections import defaultdict

results, out = sys.argv[1], sys.argv[2]
runs = [json.loads(l) for l in open(results)]
E = os.environ
SYS = ["ext4", "passthrough_ll", "stashfs", "stashfs-sync"]
EXPECT = {"ext4": "plain", "passthrough_ll": "plain", "stashfs": "stashfs", "stashfs-sync": "stashfs"}
cells = defaultdict(list)
order = []
for r in runs:
    if not r.get("failed") and not r.get("unsupported"):
        assert r["mode"] == EXPECT[r["label"]], r   # bench picked the intended protocol
    key = (r.get("cell", r["workload"]), r["threads"])
    if key not in order:
        order.append(key)
    cells[key + (r["label"],)].append(r)

def med(key, field="ops_per_s"):
    rs = cells.get(key, [])
    if not rs:
        return None
    if any(r.get("failed") for r in rs):
        return "FAIL"
    if any(r.get("unsupported") for r in rs):
        return "n/a"
    return statistics.median(r[field] for r in rs)

def spread(key):
    rs = [r["ops_per_s"] for r in cells.get(key, []) if "ops_per_s" in r]
    if len(rs) < 2:
        return None
    return (max(rs) - min(rs)) / statistics.median(rs)

def fmt(v, digits=0):
    if v is None:
        return ""
    if isinstance(v, str):
        return v
    return f"{v:,.{digits}f}"

def lat(v):
    return fmt(v, 1) if isinstance(v, (int, float)) else "-"

def ratio(a, b):
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and b:
        return f"{a / b:.2f}"
    return ""

lines = []
lines.append(f"Machine: {E['NPROC']} cores ({E['CPU']}), kernel {E['KERNEL']}, "
             f"disk fs {E['FSTYPE']} on {E['FSSRC']} ({E['FSOPTS']}), libfuse {E['FUSEVER']}, "
             f"stashfs {E['REV']}.")
lines.append(f"Settings: {E['ROUNDS']} interleaved rounds of {E['BENCH_SECONDS']} s per cell "
             f"(merge-shared: {E['MERGE_SHARED_OPS']} ops per run), medians over rounds; "
             "stashfs `-o sync=never`, stashfs-sync `-o sync=always`, passthrough_ll with its defaults.")
lines.append("")
lines.append("| workload | T | ext4 ops/s | passthrough_ll ops/s | stashfs ops/s | stashfs sync=always ops/s "
             "| stashfs/ext4 | stashfs/passthrough_ll | p50 µs ext4 / pt / stashfs | p99 µs ext4 / pt / stashfs "
             "| requests/op | floor µs | stashfs p50 / floor | max spread |")
lines.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")

# A row's floor: its FUSE requests, each a bare round trip (the roundtrip
# row's p50 at the same thread count, else at 1 thread), plus what the
# careful client pays on ext4 for the same thing.
def rt(t):
    v = med(("roundtrip", t, "stashfs"), "p50_us")
    return v if isinstance(v, (int, float)) else med(("roundtrip", 1, "stashfs"), "p50_us")

def requests(wl, t):
    rs = [r["requests_per_op"] for r in cells.get((wl, t, "stashfs"), []) if "requests_per_op" in r]
    return statistics.median(rs) if rs else None

def floor(wl, t):
    # read-changed times only its read: the untimed replace's requests are not its floor's.
    req = requests("read" if wl == "read-changed" else wl, t)
    own = med((wl, t, "ext4"), "p50_us")
    if wl in ("merge-schema", "merge-stream"):
        own = med(("merge", t, "ext4"), "p50_us")     # the careful client has no such hook
    if wl == "roundtrip":
        own = 0.0
    if not isinstance(rt(t), (int, float)) or req is None or not isinstance(own, (int, float)):
        return None
    return req * rt(t) + own
medians = []
for wl, t in order:
    v = {s: med((wl, t, s)) for s in SYS}
    p50 = {s: med((wl, t, s), "p50_us") for s in SYS}
    p99 = {s: med((wl, t, s), "p99_us") for s in SYS}
    sp = [spread((wl, t, s)) for s in SYS]
    sp = [x for x in sp if x is not None]
    for s in SYS:
        if v[s] is not None:
            m = {"workload": wl, "threads": t, "system": s, "ops_per_s": v[s],
                 "p50_us": p50[s], "p99_us": p99[s]}
            if wl == "merge-shared":
                m["lost"] = med((wl, t, s), "lost")
                m["keys"] = med((wl, t, s), "keys")
            medians.append(m)
    lines.append(f"| {wl} | {t} | {fmt(v['ext4'])} | {fmt(v['passthrough_ll'])} | {fmt(v['stashfs'])} "
                 f"| {fmt(v['stashfs-sync'])} | {ratio(v['stashfs'], v['ext4'])} "
                 f"| {ratio(v['stashfs'], v['passthrough_ll'])} "
                 f"| {' / '.join(lat(p50[s]) for s in SYS[:3])} "
                 f"| {' / '.join(lat(p99[s]) for s in SYS[:3])} "
                 f"| {fmt(requests(wl, t), 2)} | {lat(floor(wl, t))} "
                 f"| {ratio(p50['stashfs'], floor(wl, t))} "
                 f"| {f'{max(sp) * 100:.0f}%' if sp else ''} |")
if any(wl == "replace-fsync" for wl, _ in order):
    lines.append("")
    for t in sorted({t for wl, t in order if wl == "replace-fsync"}):
        a, b = med(("replace-fsync", t, "stashfs-sync")), med(("replace-fsync", t, "ext4"))
        lines.append(f"replace-fsync T={t}: stashfs sync=always / ext4 = {ratio(a, b)}")
hooks = [(wl, t) for wl, t in order if wl in ("merge-schema", "merge-stream")]
if hooks:
    lines.append("")
    lines.append("merge-schema / merge-stream are stashfs-only hooks (n/a = a plain directory has no "
                 "schema or linked stream; bench reports unsupported there).")
    for wl, t in hooks:
        rs = cells.get((wl, t, "stashfs"), [])
        if any(r.get("unsupported") for r in rs):
            lines.append(f"- {wl} T={t}: unsupported on stashfs: {rs[0].get('reason', '')}")
        elif wl == "merge-stream" and rs:
            b = statistics.median(r.get("stream_bytes", 0) for r in rs)
            lines.append(f"- {wl} T={t}: setxattr accepted; linked stream got {b:.0f} bytes"
                         + (" (the link has no effect yet: this row measures a plain merge)" if b == 0 else ""))
        elif wl == "merge-schema" and rs:
            enforced = [r.get("schema_enforced") for r in rs]
            lines.append(f"- {wl} T={t}: binding accepted; a patch the schema refuses was "
                         + ("refused in every run (validation is on the measured path)"
                            if all(e is True for e in enforced) else
                            f"NOT refused in some runs ({enforced}): this row may measure a plain merge"))
lines.append("")
lines.append("Lost updates in merge-shared (median over rounds; keys = unique keys written per run):")
lines.append("")
lines.append("| T | ext4 lost/keys | passthrough_ll lost/keys | stashfs lost/keys |")
lines.append("|---:|---:|---:|---:|")
for wl, t in order:
    if wl != "merge-shared":
        continue
    row = []
    for s in SYS[:3]:
        lost, keys = med((wl, t, s), "lost"), med((wl, t, s), "keys")
        row.append(f"{fmt(lost)}/{fmt(keys)}" if keys is not None else "")
    lines.append(f"| {t} | " + " | ".join(row) + " |")
lines.append("")
lines.append("max spread = largest (max-min)/median of ops/s over the rounds of one system in that row. "
             f"floor = requests/op × the bare round trip (roundtrip row at the same T, or at T=1 where "
             f"there is none: {lat(rt(1))} µs at T=1, {lat(rt(2))} µs at T=2) + ext4's p50 "
             "(the careful client's own cost; merge's for merge-schema/merge-stream). requests/op counts "
             "what the daemon saw during the run (user.stash.requests), read-changed's untimed replace included "
             "(its floor counts the read's requests only).")

# Ratios the targets speak of, per round (the systems ran interleaved
# within a round), as the median and the range over rounds.
def round_ratios(a, b, field="ops_per_s"):
    ra = {r["round"]: r[field] for r in cells.get(a, []) if field in r}
    rb = {r["round"]: r[field] for r in cells.get(b, []) if field in r}
    return [ra[k] / rb[k] for k in ra if k in rb and rb[k]]

def target(what, a, b, goal):
    rs = round_ratios(a, b)
    if not rs:
        return
    m = statistics.median(rs)
    lines.append(f"| {what} | {m:.2f} | {min(rs):.2f}–{max(rs):.2f} | ≥ {goal} | "
                 f"{'met' if m >= goal else 'not met'} |")

lines.append("")
lines.append("Targets (ratio of ops/s, median and range over the interleaved rounds):")
lines.append("")
lines.append("| target | median | range | goal | |")
lines.append("|---|---:|---:|---:|---|")
target("read / passthrough_ll", ("read", 1, "stashfs"), ("read", 1, "passthrough_ll"), 2)
target("replace / passthrough_ll", ("replace", 1, "stashfs"), ("replace", 1, "passthrough_ll"), 1.5)
target("replace / ext4 careful client", ("replace", 1, "stashfs"), ("replace", 1, "ext4"), 0.65)
target("merge / passthrough_ll", ("merge", 1, "stashfs"), ("merge", 1, "passthrough_ll"), 2)
target("merge / ext4 careful client", ("merge", 1, "stashfs"), ("merge", 1, "ext4"), 1.0)
target("merge, 8 writers / ext4 careful client", ("merge-shared", 8, "stashfs"),
       ("merge-shared", 8, "ext4"), 3)
target("create+unlink / passthrough_ll", ("create-unlink", 1, "stashfs"),
       ("create-unlink", 1, "passthrough_ll"), 1.3)
target("echo > new name / ext4 careful client", ("create-new", 1, "stashfs"), ("create-new", 1, "ext4"), 1.0)
for wl in ("read", "replace", "merge"):
    target(f"{wl}: 2 threads / 1 thread", (wl, 2, "stashfs"), (wl, 1, "stashfs"), 1.3)
for size in ("100M", "1G"):
    target(f"read {size} / ext4", (f"read-big {size}", 1, "stashfs"), (f"read-big {size}", 1, "ext4"), 0.25)
    target(f"replace {size} / ext4 careful client", (f"replace-big {size}", 1, "stashfs"),
           (f"replace-big {size}", 1, "ext4"), 1.0)

big = [(wl, t) for wl, t in order if wl.startswith(("read-big", "replace-big"))]
if big:
    lines.append("")
    lines.append("Big files (1 MiB read()/write() calls, hot caches; replace on ext4 and "
                 "passthrough_ll = temp file + rename), MiB/s:")
    lines.append("")
    lines.append("| workload | ext4 | passthrough_ll | stashfs | stashfs/ext4 | requests/op |")
    lines.append("|---|---:|---:|---:|---:|---:|")
    for wl, t in big:
        v = {s: med((wl, t, s), "mib_per_s") for s in SYS[:3]}
        lines.append(f"| {wl} | {fmt(v['ext4'])} | {fmt(v['passthrough_ll'])} | {fmt(v['stashfs'])} "
                     f"| {ratio(v['stashfs'], v['ext4'])} | {fmt(requests(wl, t))} |")
    lines.append("")
    lines.append(f"stashfs daemon peak RSS (VmHWM) over the whole run: {E.get('ST_HWM', '?')} MiB.")

table = "\n".join(lines) + "\n"
open(os.path.join(out, "table.md"), "w").write(table)
json.dump({"machine": {"nproc": int(E["NPROC"]), "cpu": E["CPU"], "kernel": E["KERNEL"],
                       "fstype": E["FSTYPE"], "device": E["FSSRC"], "mount_options": E["FSOPTS"],
                       "libfuse": E["FUSEVER"], "stashfs_rev": E["REV"]},
           "settings": {"rounds": int(E["ROUNDS"]), "seconds": float(E["BENCH_SECONDS"]),
                        "merge_shared_ops": int(E["MERGE_SHARED_OPS"])},
           "medians": medians, "runs": runs},
          open(os.path.join(out, "results.json"), "w"), indent=1)

# The gap to the floor as text: one bar per row, | at 1.0 and : at 1.5.
WIDTH, TOP = 40, 4.0
chart = ["stashfs p50 / floor (0 to 4×; `|` = at the floor, `:` = 1.5×, `>` = beyond 4×)", ""]
for wl, t in order:
    g = med((wl, t, "stashfs"), "p50_us")
    f = floor(wl, t)
    if not isinstance(g, (int, float)) or not f:
        continue
    x = g / f
    n = min(WIDTH, round(x / TOP * WIDTH))
    bar = ["#" if i < n else " " for i in range(WIDTH)]
    for mark, at in (("|", 1.0), (":", 1.5)):
        i = round(at / TOP * WIDTH) - 1
        bar[i] = mark if i >= n else bar[i]
    chart.append(f"{wl + ' T=' + str(t):<22} {''.join(bar)}{'>' if x > TOP else ' '} {x:.2f}")
chart_text = "\n".join(chart) + "\n"
open(os.path.join(out, "chart.txt"), "w").write(chart_text)

readme = E.get("README_FILE")
if readme:
    begin, end_mark = "<!-- bench-table: tools/compare.sh --readme writes from here -->", "<!-- bench-table end -->"
    text = open(readme).read()
    if begin not in text or end_mark not in text:
        sys.exit(f"compare.sh: no bench-table markers in {readme}")
    head, rest = text.split(begin, 1)
    _, tail = rest.split(end_mark, 1)
    open(readme, "w").write(head + begin + "\n\n" + table + "\n```\n" + chart_text + "```\n\n"
                            + end_mark + tail)
sys.stdout.write(table + "\n" + chart_text)
PY

log "results: $OUT/table.md $OUT/chart.txt $OUT/results.json${README:+, and in $README}"
