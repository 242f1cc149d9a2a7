#!/bin/sh
# SPDX-License-Identifier: MIT
# One command from a fresh Debian 12 machine to a working store: install
# what is missing (tools/deps.sh says what), build, mount the default store
# (backing directory ${XDG_DATA_HOME:-~/.local/share}/stashfs) on
# ${STASHFS_MNT:-~/stash}, and show the progress-file pattern.  Each demo
# command is printed as the README writes it ("$ " and the command), then
# run by sh exactly as printed, so what is shown can be pasted.
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
# How the commands name the mount point: ~/stash as in the README, or the
# chosen one, quoted for the shell when it needs it.
if [ -z "${STASHFS_MNT:-}" ]; then
	M="~/stash"
else
	case $MNT in
	*[!A-Za-z0-9_./-]*) M="'$(printf '%s' "$MNT" | sed "s/'/'\\\\''/g")'" ;;
	*) M=$MNT ;;
	esac
fi
echo "stashfs: store mounted on $M"
echo
run() {
	printf '$ %s\n' "$1"
	sh -c "$1"
}
run "cat $M/demo-progress 2>/dev/null || echo \"fresh start\""
run "echo '{\"task\":\"demo\",\"status\":\"active\",\"next_step\":\"collect sources\"}' > $M/demo-progress.json"
run "echo '{\"next_step\":\"write summary\"}' > $M/demo-progress.json"
run "cat $M/demo-progress"
echo
echo "metadata: build/tools/stashctl show $M/demo-progress"
echo "stop:     fusermount3 -u $M"
