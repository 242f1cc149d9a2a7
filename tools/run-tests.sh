#!/bin/sh
# SPDX-License-Identifier: MIT
# One command to install what is missing, build, and run the whole suite:
# once in a plain build (build/) and once under AddressSanitizer and
# UndefinedBehaviorSanitizer (build-asan/).  Ends with "N passed, N failed".
set -u
cd "$(dirname "$0")/.."
tools/deps.sh || exit 1
status=0
[ -d build ] || meson setup build >/dev/null || exit 1
[ -d build-asan ] || meson setup build-asan -Db_sanitize=address,undefined \
	-Db_lundef=false >/dev/null || exit 1
ninja -C build || exit 1
ninja -C build-asan || exit 1
# Install so that `mount -t fuse.stashfs` finds the daemon on the system PATH.
meson install -C build --quiet >/dev/null 2>&1 || echo "note: meson install failed; mount-helper test will skip"
meson test -C build --print-errorlogs --num-processes 1 || status=1
ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	meson test -C build-asan --print-errorlogs --num-processes 1 || status=1
/usr/bin/python3 tools/test-summary.py build build-asan || status=1
exit $status
