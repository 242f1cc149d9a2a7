# SPDX-License-Identifier: MIT
"""Many stashes known to the kernel at once: the daemon's table of the names
the kernel holds grows past its first size and shrinks back when the kernel
forgets them, names stay right throughout (lookups, renames of directories
full of known names, unlinks), and the memory of forgotten names goes back
to the system."""
import os
import subprocess
import time

import pytest

N = 140000      # past 65,536 twice: the table doubles, then halves back


def asan_build():
    """The sanitizer's allocator keeps freed memory in quarantine: RSS says nothing there."""
    from conftest import stashfs_bin
    out = subprocess.run(["nm", "-D", stashfs_bin()], capture_output=True, text=True).stdout
    return "__asan_init" in out


def rss_mib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS"):
                return int(line.split()[1]) / 1024.0
    raise AssertionError("no VmRSS for %d" % pid)


def fill(env, n, per_dir=None):
    """n stashes written straight into the backing directory (daemon down)."""
    names = []
    for i in range(n):
        d = "many" if per_dir is None else "d%03d" % (i // per_dir)
        os.makedirs(os.path.join(str(env.backing), d), exist_ok=True)
        name = "%s/s%06d" % (d, i)
        with open(os.path.join(str(env.backing), name), "w") as f:
            f.write("%d\n" % i)
        names.append(name)
    return names


def test_names_stay_right_as_the_table_grows_and_shrinks(env):
    env.backing.mkdir()
    names = fill(env, N, per_dir=1000)
    env.mount(opts=["versions=0"])
    for name in names:
        assert os.stat(env.path(name)).st_size == len(str(int(name.split("/s")[1]))) + 1
    # A renamed directory takes its known names along.
    os.rename(env.path("d007"), env.path("moved"))
    with open(env.path("moved/s007123")) as f:
        assert f.read() == "7123\n"
    assert not os.path.exists(env.path("d007/s007123"))
    # Reads, with a shell, of names spread over every bucket.
    out = subprocess.run(["sh", "-c", "cat d000/s000000 d139/s139999 d070/s070007"],
                         cwd=str(env.mnt), capture_output=True, text=True, check=True).stdout
    assert out == "0\n139999\n70007\n"
    # Unlink most of them: the kernel forgets them and the table shrinks.
    for name in names[:N - 2000]:
        if not name.startswith("d007/"):
            os.unlink(env.path(name))
    for name in names[N - 2000:]:
        with open(env.path(name)) as f:
            assert f.read() == "%d\n" % int(name.split("/s")[1])
    with open(env.path("moved/s007999")) as f:
        assert f.read() == "7999\n"
    assert sorted(os.listdir(str(env.backing / "d139"))) == \
        ["s%06d" % i for i in range(139000, 140000)]
    assert not os.path.exists(os.path.join(str(env.backing), "d000", "s000000"))


def test_forgotten_stashes_give_their_memory_back(env, monkeypatch):
    if asan_build():
        pytest.skip("RSS means nothing under the sanitizer's allocator")
    # meson test sets it: glibc then writes into every block freed, and what
    # it keeps for reuse is measured too (about 10 MiB more here).
    monkeypatch.delenv("MALLOC_PERTURB_", raising=False)
    env.backing.mkdir()
    names = fill(env, N)
    d = env.mount(opts=["versions=0"])
    time.sleep(0.5)
    idle = rss_mib(d.pid())
    for name in names:
        os.stat(env.path(name))
    known = rss_mib(d.pid())
    assert known - idle > 8, (idle, known)      # ~130 bytes per name the kernel holds
    # rm through the mount: each unlinked inode is forgotten by the kernel.
    subprocess.run(["find", "many", "-type", "f", "-delete"], cwd=str(env.mnt), check=True)
    assert os.listdir(os.path.join(str(env.backing), "many")) == []
    # At least half of it back (glibc keeps some free blocks for reuse; the
    # daemon used to keep all of it, and more).
    deadline = time.time() + 10
    while time.time() < deadline and rss_mib(d.pid()) - idle > (known - idle) / 2:
        time.sleep(0.2)
    after = rss_mib(d.pid())
    assert after - idle <= (known - idle) / 2, (idle, known, after)
