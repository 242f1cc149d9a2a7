# SPDX-License-Identifier: MIT
"""tools/quickstart.sh shows what the README shows, and what it shows works.

The quick start runs with HOME in a temporary directory (so ~/stash and
~/.local/share/stashfs are there) against the clone's build/ (run-tests.sh
builds it), twice: a first run ends exactly with the README's example, a
second one resumes.  Then the README's commands, pasted into sh one by one,
print what the README says they print, and the stashctl it names works.
"""
import os
import re
import subprocess
import time

import pytest

from conftest import mounted
from stashctl_util import source_root

ROOT = source_root()


def readme_example():
    """The lines of the README's quick start example."""
    with open(os.path.join(ROOT, "README.md")) as f:
        text = f.read()
    quick = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"^```console\n(.*?)^```", quick, re.S | re.M)
    assert len(blocks) == 1
    return blocks[0].splitlines()


def daemons_of(mnt):
    pids = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open("/proc/%s/cmdline" % pid, "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if os.path.basename(argv[0]) == b"stashfs" and str(mnt).encode() in argv:
            pids.append(int(pid))
    return pids


@pytest.fixture
def home(tmp_path):
    if not os.path.exists(os.path.join(ROOT, "build", "build.ninja")):
        pytest.skip("the quick start uses ./build, which is not set up (tools/run-tests.sh does)")
    env = dict(os.environ, HOME=str(tmp_path))
    for var in ("STASHFS_MNT", "XDG_DATA_HOME"):
        env.pop(var, None)
    yield env
    mnt = tmp_path / "stash"
    pids = daemons_of(mnt)
    if mounted(mnt):
        subprocess.run(["fusermount3", "-u", str(mnt)], check=False)
    for _ in range(200):          # the daemon forked into the background exits
        if not daemons_of(mnt):
            break
        time.sleep(0.05)
    assert not daemons_of(mnt), pids


def quickstart(env):
    r = subprocess.run([os.path.join(ROOT, "tools", "quickstart.sh")], env=env,
                       capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "+ " not in r.stderr          # no shell trace
    return r.stdout.splitlines()


def test_quickstart_prints_the_readme_example(home):
    example = readme_example()
    out = quickstart(home)
    assert out[-len(example):] == example
    backing = os.path.join(home["HOME"], ".local", "share", "stashfs")
    with open(os.path.join(backing, "demo-progress")) as f:
        assert f.read().splitlines() == example[example.index("{"):example.index("}") + 1]
    # A second run resumes: the first cat prints the document.
    again = quickstart(home)
    start = again.index(example[2])
    assert again[start + 1:start + 6] == example[example.index("{"):example.index("}") + 1]


def test_readme_example_can_be_pasted(home):
    """Each "$ " line of the example, pasted into sh in the clone, prints the
    lines that follow it in the README; stashctl is where the README says."""
    example = readme_example()
    quickstart(home)
    os.unlink(os.path.join(home["HOME"], "stash", "demo-progress"))       # fresh again
    cmds = [i for i, l in enumerate(example) if l.startswith("$ ")]
    for n, i in enumerate(cmds):
        end = cmds[n + 1] if n + 1 < len(cmds) else example.index("", i)
        r = subprocess.run(["sh", "-c", example[i][2:]], cwd=ROOT, env=home,
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0 and r.stderr == "", example[i] + "\n" + r.stderr
        assert r.stdout.splitlines() == example[i + 1:end], example[i]
    for line in example:
        if line.startswith(("metadata:", "stop:")):
            cmd = line.split(":", 1)[1].strip()
            r = subprocess.run(["sh", "-c", cmd], cwd=ROOT, env=home, capture_output=True,
                               text=True, timeout=60)
            assert r.returncode == 0, cmd + "\n" + r.stderr
    assert not mounted(os.path.join(home["HOME"], "stash"))     # the stop line stopped it
