# SPDX-License-Identifier: MIT
"""Finding the build's tools for the suites that run stashctl."""
import os

from conftest import ROOT, stashfs_bin


def build_dir():
    """The build directory the daemon under test comes from."""
    if os.environ.get("STASHFS_BUILD"):
        return os.environ["STASHFS_BUILD"]
    return os.path.dirname(os.path.dirname(os.path.abspath(stashfs_bin())))


def stashctl_bin():
    path = os.environ.get("STASHCTL_BIN")
    if path:
        return path
    cand = os.path.join(build_dir(), "tools", "stashctl")
    if os.path.exists(cand):
        return cand
    raise RuntimeError("stashctl not built: set STASHCTL_BIN or build %s" % build_dir())


def source_root():
    return ROOT
