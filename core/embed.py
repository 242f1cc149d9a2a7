#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Turn a text file into a C source defining it as a string, for the build.

    embed.py INPUT OUTPUT SYMBOL

defines `const char SYMBOL[]` (the bytes of INPUT, NUL-terminated) and
`const size_t SYMBOL_len` (their count, without the NUL).  Used to build
the agent's guide (core/guide.md) into the daemon; needs nothing but the
Python that runs meson.
"""
import os
import sys


def c_literal(data):
    """@data as C string literal lines, one per line of text."""
    out = []
    for line in data.splitlines(keepends=True):
        s = []
        for b in line:
            if b in (0x22, 0x5c):                       # " and \
                s.append("\\" + chr(b))
            elif 0x20 <= b < 0x7f and b != 0x3f:        # '?' could start a trigraph
                s.append(chr(b))
            else:
                s.append("\\%03o" % b)                  # three digits: no digit follows ambiguously
        out.append('\t"%s"' % "".join(s))
    return "\n".join(out) if out else '\t""'


def main():
    src, dst, sym = sys.argv[1:4]
    with open(src, "rb") as f:
        data = f.read()
    text = ("/* Generated from %s by embed.py at build time: edit that file, not this. */\n"
            "#include <stddef.h>\n\n"
            "extern const char %s[];\nextern const size_t %s_len;\n\n"
            "const char %s[] =\n%s;\n\n"
            "const size_t %s_len = %d;\n") % (
                os.path.basename(src), sym, sym, sym, c_literal(data), sym, len(data))
    with open(dst, "w") as f:
        f.write(text)


if __name__ == "__main__":
    main()
