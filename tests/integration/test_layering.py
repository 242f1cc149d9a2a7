# SPDX-License-Identifier: MIT
"""tools/layering.py on small trees compiled here: it sees include and call
edges, finds a cycle of either kind (exit 1, the files and the symbols that
close it), and passes a tree whose dependencies point one way (exit 0)."""
import os
import shutil
import subprocess
import sys

import pytest

from stashctl_util import source_root

SCRIPT = os.path.join(source_root(), "tools", "layering.py")


def tree(tmp, files):
    """Write @files under tmp/core and tmp/include, compile each .c to
    tmp/obj/NAME.c.o as meson names them; returns the script's arguments."""
    if not shutil.which("cc") or not shutil.which("nm"):
        pytest.skip("cc and nm are needed (apt-get install gcc binutils)")
    for rel, text in files.items():
        path = tmp / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    obj = tmp / "obj"
    obj.mkdir()
    for rel in files:
        if rel.startswith("core/") and rel.endswith(".c"):
            subprocess.run(["cc", "-c", "-I", str(tmp / "include"), "-I", str(tmp / "core"), "-o",
                            str(obj / (os.path.basename(rel) + ".o")), str(tmp / rel)],
                           check=True)
    return ["--core", str(tmp / "core"), "--include", str(tmp / "include"),
            "--objects", str(obj)]


def run(args, *extra):
    r = subprocess.run([sys.executable, SCRIPT] + args + list(extra), capture_output=True,
                       text=True, timeout=60)
    return r.returncode, r.stdout + r.stderr


DOWNWARD = {
    "include/pub/leaf.h": "int leaf_get(void);\n",
    "core/leaf.c": '#include "pub/leaf.h"\nint leaf_get(void) { return 1; }\n',
    "core/mid.h": '#include "pub/leaf.h"\nint mid_get(void);\n',
    "core/mid.c": '#include "mid.h"\nint mid_get(void) { return leaf_get() + 1; }\n',
    "core/top.c": '#include "mid.h"\nint top_get(void);\nint top_get(void) { return mid_get(); }\n',
}


def test_downward_tree_passes(tmp_path):
    rc, out = run(tree(tmp_path, DOWNWARD))
    assert rc == 0, out
    assert "core/mid.c -> core/mid.h" in out
    assert "core/mid.h -> include/pub/leaf.h" in out
    assert "core/top.c -> core/mid.c  (mid_get)" in out
    assert "core/mid.c -> core/leaf.c  (leaf_get)" in out
    assert "include cycles: none" in out and "call cycles: none" in out
    assert out.rstrip().endswith("0 cycles")


def test_call_cycle_fails_naming_files_and_symbols(tmp_path):
    files = dict(DOWNWARD)
    # The leaf calls back up: leaf -> top -> mid -> leaf.
    files["core/leaf.c"] = ('#include "pub/leaf.h"\nint top_get(void);\n'
                            'int leaf_get(void) { return top_get() ? 1 : 2; }\n')
    args = tree(tmp_path, files)
    rc, out = run(args)
    assert rc == 1, out
    assert "call cycle among 3 files: core/leaf.c core/mid.c core/top.c" in out
    assert "for one: core/leaf.c -> core/top.c -> core/mid.c -> core/leaf.c" in out
    assert "    core/leaf.c -> core/top.c  (top_get)" in out
    assert "include cycles: none" in out
    rc, out = run(args, "--dot")
    assert rc == 1 and out.startswith("digraph core {"), out
    assert '"core/leaf.c" -> "core/top.c" [label="1", color=red];' in out


def test_include_cycle_fails(tmp_path):
    files = dict(DOWNWARD)
    files["include/pub/leaf.h"] = '#include "mid.h"\nint leaf_get(void);\n'
    files["core/mid.h"] = '#ifndef MID_H\n#define MID_H\n#include "pub/leaf.h"\nint mid_get(void);\n#endif\n'
    files["core/leaf.c"] = '#include "pub/leaf.h"\nint leaf_get(void) { return mid_get(); }\n'
    files["core/mid.c"] = '#include "mid.h"\nint mid_get(void) { return 2; }\n'
    files["core/top.c"] = '#include "mid.h"\nint top_get(void);\nint top_get(void) { return leaf_get(); }\n'
    args = tree(tmp_path, files)
    # mid.h is in core/, leaf.h finds it through -I core too.
    rc, out = run(args)
    assert rc == 1, out
    assert "include cycle among 2 files: core/mid.h include/pub/leaf.h" in out
    assert "call cycles: none" in out


def test_not_built_is_an_error_not_a_pass(tmp_path):
    rc, out = run(["--objects", str(tmp_path / "nowhere")])
    assert rc == 2 and "build first" in out, out
