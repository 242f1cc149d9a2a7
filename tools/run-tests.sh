#!/bin/sh
# SPDX-License-Identifier: MIT
# One command to install the packages the tests need (tools/deps.sh --test
# says which), build, and run the whole suite: once in a plain build
# (build/) and once under AddressSanitizer and UndefinedBehaviorSanitizer
# (build-asan/).  Every skip is printed with its reason, and the last line
# is "N passed, N failed, N skipped".
#
# Nothing is installed on the system besides the packages, unless asked:
# STASHFS_SYSTEM_INSTALL=1 runs `meson install -C build` (into /usr/local
# by default) first, and then the suite also tests `mount -t fuse.stashfs`
# against that installed daemon.
set -u
cd "$(dirname "$0")/.."
tools/deps.sh --test || exit 1
status=0
[ -d build ] || meson setup build >/dev/null || exit 1
[ -d build-asan ] || meson setup build-asan -Db_sanitize=address,undefined \
	-Db_lundef=false >/dev/null || exit 1
ninja -C build || exit 1
ninja -C build-asan || exit 1
if [ "${STASHFS_SYSTEM_INSTALL:-0}" = 1 ]; then
	if [ "$(id -u)" -ne 0 ]; then
		echo "stashfs: STASHFS_SYSTEM_INSTALL=1 installs on the system; as root, run:" >&2
		echo "    meson install -C $PWD/build" >&2
		echo "then run this again as root (the suite mounts and needs root)." >&2
		exit 1
	fi
	echo "stashfs: STASHFS_SYSTEM_INSTALL=1: meson install -C build"
	meson install -C build || exit 1
	export STASHFS_SYSTEM_INSTALL
fi
meson test -C build --print-errorlogs --num-processes 1 || status=1
ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	meson test -C build-asan --print-errorlogs --num-processes 1 || status=1
/usr/bin/python3 tools/test-summary.py build build-asan || status=1
exit $status
