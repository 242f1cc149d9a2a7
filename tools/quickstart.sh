#!/bin/sh
# SPDX-License-Identifier: MIT
# One command from a fresh Debian 12 machine to a working store: install
# what is missing, build, mount the default store (backing directory
# ${XDG_DATA_HOME:-~/.local/share}/stashfs) on ${STASHFS_MNT:-~/stash},
# and show the progress-file pattern.
set -eu
cd "$(dirname "$0")/.."
tools/deps.sh
[ -d build ] || meson setup build >/dev/null
ninja -C build >/dev/null
MNT=${STASHFS_MNT:-$HOME/stash}
mkdir -p "$MNT"
if ! grep -q " $(realpath "$MNT") " /proc/self/mountinfo; then
	build/fs/stashfs "$MNT"
fi
echo "stashfs: store mounted on $MNT (stop it with: fusermount3 -u $MNT)"
echo
set -x
cat "$MNT/demo-progress" 2>/dev/null || echo "no progress yet: fresh start"
echo '{"task":"demo","status":"active","next_step":"collect sources"}' > "$MNT/demo-progress.json"
echo '{"next_step":"write summary","completed_steps":["collect sources"]}' > "$MNT/demo-progress.json"
cat "$MNT/demo-progress"
