#!/bin/sh
# SPDX-License-Identifier: MIT
# Install what building and testing stashfs needs (Debian 12), if missing.
set -eu
PKGS="gcc meson ninja-build pkg-config libfuse3-dev fuse3 libjansson-dev libattr1-dev \
libpcre2-dev attr python3 python3-pytest rsync vim jq tar coreutils procps util-linux \
man-db groff-base systemd"
missing=""
for p in $PKGS; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "stashfs: installing:$missing"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
