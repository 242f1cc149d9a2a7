# SPDX-License-Identifier: MIT
"""Finding the build's tools for the suites that run stashctl, and the
README's sections whose commands tests run as written."""
import os
import re

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


def readme_section(title):
    """The text of the README section whose heading starts with @title, up to
    the next heading of the same or a higher level."""
    with open(os.path.join(ROOT, "README.md")) as f:
        text = f.read()
    m = re.search(r"^(#+) %s.*$" % re.escape(title), text, re.M)
    if not m:
        raise RuntimeError("README.md has no section %r" % title)
    rest = text[m.end():]
    # Headings only outside code blocks: a "# comment" line in a block is not one.
    pos, fence = 0, False
    for line in rest.splitlines(True):
        if line.startswith("```"):
            fence = not fence
        elif not fence and re.match(r"#{1,%d} " % len(m.group(1)), line):
            return rest[:pos]
        pos += len(line)
    return rest
