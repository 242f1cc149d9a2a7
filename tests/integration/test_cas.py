# SPDX-License-Identifier: MIT
"""Compare-and-swap by writing NAME@V (README "Compare-and-swap"): the write
commits only while NAME is still at version V, else nothing is written and
the writer gets ECANCELED; agents racing on one counter lose no update."""
import errno
import json
import os
import subprocess

import pytest

# One agent: read the version, read that version, decide, write it back
# conditionally; every refusal (at open, write or close) is retried.  With
# --meta it learns the version from the metadata view instead of an xattr.
AGENT = r'''
import errno, json, os, sys
mnt, rounds, meta = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "meta"
ok = refused = 0
while ok < rounds:
    if meta:
        with open(os.path.join(mnt, ".stashfs-meta", "counter")) as f:
            v = json.load(f)["version"]
    else:
        v = int(os.getxattr(os.path.join(mnt, "counter"), "user.stash.version"))
    try:
        with open(os.path.join(mnt, "counter@%d" % v)) as f:
            n = int(f.read())
    except FileNotFoundError:
        # 16 commits by others since the version was read: no longer kept.
        refused += 1
        continue
    try:
        with open(os.path.join(mnt, "counter@%d" % v), "w") as f:
            f.write("%d\n" % (n + 1))
        ok += 1
    except OSError as e:
        assert e.errno == errno.ECANCELED, e
        refused += 1
print(ok, refused)
'''


def run_agents(mounts, rounds, modes):
    procs = []
    for i in range(8):
        procs.append(subprocess.Popen(
            ["/usr/bin/python3", "-c", AGENT, str(mounts[i % len(mounts)]), str(rounds),
             modes[i % len(modes)]], stdout=subprocess.PIPE, text=True))
    ok = refused = 0
    for p in procs:
        out, _ = p.communicate(timeout=300)
        assert p.returncode == 0
        a, b = map(int, out.split())
        ok += a
        refused += b
    return ok, refused


def test_cas_replaces_only_at_the_version(mnt):
    mnt.sh("echo one > p")
    mnt.sh("v=$(getfattr --only-values -n user.stash.version p); echo two > p@$v")
    assert mnt.sh("cat p").stdout == "two\n"
    # Refused at open: p moved on to 2; nothing written, the reason names version 2.
    r = mnt.sh("echo three > p@1", check=False)
    assert r.returncode != 0 and "Operation canceled" in r.stderr
    assert mnt.sh("cat p; getfattr --only-values -n user.stash.version p").stdout == "two\n2"
    why = mnt.sh("getfattr --only-values -n user.stash.error p").stdout
    assert "version 2" in why and "p@1" in why
    # A future version is refused too, and a missing stash.
    for script in ("echo x > p@9", "echo x > nothere@1"):
        r = mnt.sh(script, check=False)
        assert r.returncode != 0 and "Operation canceled" in r.stderr, script
    assert not os.path.exists(os.path.join(str(mnt.backing), "nothere"))
    # Refused at write(): the version moved after the open.
    def put(text):
        with open(mnt.path("p"), "w") as f:
            f.write(text)

    fd = os.open(mnt.path("p@2"), os.O_WRONLY | os.O_TRUNC)
    try:
        put("other\n")
        with pytest.raises(OSError) as e:
            os.write(fd, b"mine\n")
        assert e.value.errno == errno.ECANCELED
    finally:
        with pytest.raises(OSError):
            os.close(fd)
    assert mnt.sh("cat p").stdout == "other\n"
    # Refused at close: the move came after the last write.
    fd = os.open(mnt.path("p@3"), os.O_WRONLY | os.O_TRUNC)
    os.write(fd, b"late\n")
    put("sooner\n")
    with pytest.raises(OSError) as e:
        os.close(fd)
    assert e.value.errno == errno.ECANCELED
    assert mnt.sh("cat p; cat p@3").stdout == "sooner\nother\n"
    # A version number does not take appends; @next takes nothing.
    for script in ("echo x >> p@4", "echo '{}' > p@next.json", "echo x > p@next"):
        r = mnt.sh(script, check=False)
        assert r.returncode != 0 and "Read-only file system" in r.stderr, script


def test_eight_agents_one_counter(mnt):
    mnt.sh("echo 0 > counter")
    ok, refused = run_agents([mnt.mnt], 25, ["xattr", "meta"])
    final = int(mnt.sh("cat counter").stdout)
    assert ok == 200 and final == ok
    print("8 agents: %d successful CAS writes, %d refused and retried" % (ok, refused))
    ver = int(mnt.sh("getfattr --only-values -n user.stash.version counter").stdout)
    assert ver == 1 + ok


def test_eight_agents_two_shared_daemons(env, tmp_path):
    env.mount(opts=["shared"])
    other = tmp_path / "mnt2"
    env.mount(opts=["shared"], mnt=other)
    env.sh("echo 0 > counter")
    ok, refused = run_agents([env.mnt, other], 15, ["xattr"])
    assert ok == 120
    assert int(env.sh("cat counter").stdout) == 120
    with open(os.path.join(str(other), "counter")) as f:
        assert f.read() == "120\n"
    print("two daemons: %d successful CAS writes, %d refused and retried" % (ok, refused))
