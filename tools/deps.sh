#!/bin/sh
# SPDX-License-Identifier: MIT
# Install the Debian 12 packages stashfs needs, if missing, and say which.
#   tools/deps.sh          build and use stashfs (what tools/quickstart.sh runs)
#   tools/deps.sh --test   also everything the test suite drives (what
#                          tools/run-tests.sh runs): GlusterFS, podman with
#                          runc and debootstrap, and the programs tests call
#   tools/deps.sh --list   print the packages (build and test) and exit
# As root it runs apt-get itself; otherwise through sudo when there is one,
# else it prints the command to run as root and exits 1.
set -eu
BUILD="gcc meson ninja-build pkg-config libfuse3-dev fuse3 libjansson-dev \
libpcre2-dev attr python3"
TEST="python3-pytest rsync vim jq git tar coreutils procps util-linux man-db groff-base systemd \
glusterfs-server glusterfs-client podman runc debootstrap"
case "${1:-}" in
	"") PKGS=$BUILD ;;
	--test) PKGS="$BUILD $TEST" ;;
	--list) echo $BUILD $TEST; exit 0 ;;
	*) echo "usage: tools/deps.sh [--test | --list]" >&2; exit 2 ;;
esac
missing=""
for p in $PKGS; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
cmd="apt-get install -y --no-install-recommends$missing"
if [ "$(id -u)" -eq 0 ]; then
	SUDO=""
elif command -v sudo >/dev/null 2>&1; then
	SUDO="sudo"
	echo "stashfs: not root: apt-get runs through sudo"
else
	echo "stashfs: missing packages:$missing" >&2
	echo "stashfs: not root, and there is no sudo. As root, run:" >&2
	echo "    apt-get update && $cmd" >&2
	echo "then run this again." >&2
	exit 1
fi
echo "stashfs: installing:$missing"
$SUDO apt-get update -qq
log=$(mktemp)
if ! DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
		$missing >"$log" 2>&1; then
	cat "$log" >&2
	rm -f "$log"
	echo "stashfs: apt-get failed; as root, run: $cmd" >&2
	exit 1
fi
rm -f "$log"
