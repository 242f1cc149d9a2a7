# SPDX-License-Identifier: MIT
"""Conditional merges through NAME@V.json (README "Compare-and-swap"): the
patch is merged only while NAME is still at version V when the merge
commits, else nothing changes and the writer gets ECANCELED, at open, at
the write() or at close; merges queued together still keep the condition."""
import errno
import json
import os
import subprocess

import pytest


def version(path):
    return int(os.getxattr(path, "user.stash.version"))


def test_merge_only_at_the_version(mnt):
    mnt.sh("""echo '{"a":1}' > p""")
    mnt.sh("""v=$(getfattr --only-values -n user.stash.version p); echo '{"k":1}' > p@$v.json""")
    assert json.loads(mnt.sh("cat p").stdout) == {"a": 1, "k": 1}
    assert version(mnt.path("p")) == 2
    # Refused at open: p is at 2 now.  Nothing merged; the reason names version 2.
    r = mnt.sh("""echo '{"k":2}' > p@1.json""", check=False)
    assert r.returncode != 0 and "Operation canceled" in r.stderr
    with open(os.path.join(str(mnt.backing), "p")) as f:
        assert json.load(f) == {"a": 1, "k": 1}
    assert version(mnt.path("p")) == 2
    why = mnt.sh("getfattr --only-values -n user.stash.error p").stdout
    assert "p@1" in why and "version 2" in why
    # The same through the metadata view, for tools without xattrs.
    meta = json.loads(mnt.sh("cat .stashfs-meta/p").stdout)
    assert meta["version"] == 2 and "version 2" in meta["error"]
    # A missing stash is no version: refused, nothing created.
    r = mnt.sh("""echo '{"x":1}' > q@1.json""", check=False)
    assert r.returncode != 0 and "Operation canceled" in r.stderr
    assert not os.path.exists(os.path.join(str(mnt.backing), "q"))
    # Appending patches (>>) is a merge as well.
    mnt.sh("""echo '{"z":3}' >> p@2.json""")
    assert json.loads(mnt.sh("cat p").stdout) == {"a": 1, "k": 1, "z": 3}

    # Refused at write(): another merge landed between the open and the write.
    fd = os.open(mnt.path("p@3.json"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    try:
        mnt.sh("""echo '{"other":1}' > p.json""")
        with pytest.raises(OSError) as e:
            os.write(fd, b'{"mine":1}')
        assert e.value.errno == errno.ECANCELED
    finally:
        with pytest.raises(OSError):
            os.close(fd)
    # Refused at close: the other merge came after the last write.
    fd = os.open(mnt.path("p@4.json"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    os.write(fd, b'{"late":1}')
    mnt.sh("""echo '{"sooner":1}' > p.json""")
    with pytest.raises(OSError) as e:
        os.close(fd)
    assert e.value.errno == errno.ECANCELED
    doc = json.loads(mnt.sh("cat p").stdout)
    assert "mine" not in doc and "late" not in doc and doc["sooner"] == 1
    assert version(mnt.path("p")) == 5
    # A handle that merged may merge again on top of its own commit.
    with open(mnt.path("p@5.json"), "w") as f:
        f.write('{"b":1}')
        f.flush()
    assert json.loads(mnt.sh("cat p").stdout)["b"] == 1


# One agent: read the counter's version and value, merge n + 1 on the
# condition that nobody merged meanwhile; retry every refusal.  Others merge
# unconditionally at the same time (their own keys), so the merge queue has
# batches to coalesce.
AGENT = r'''
import errno, json, os, sys
mnt, rounds, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]
ok = refused = 0
me = "k%d" % os.getpid()
while ok < rounds:
    if mode == "free":
        with open(os.path.join(mnt, "counter.json"), "w") as f:
            f.write(json.dumps({me: ok}))
        ok += 1
        continue
    v = int(os.getxattr(os.path.join(mnt, "counter"), "user.stash.version"))
    try:
        with open(os.path.join(mnt, "counter@%d" % v)) as f:
            n = json.load(f)["n"]
    except FileNotFoundError:
        refused += 1
        continue
    try:
        with open(os.path.join(mnt, "counter@%d.json" % v), "w") as f:
            f.write(json.dumps({"n": n + 1}))
        ok += 1
    except OSError as e:
        assert e.errno == errno.ECANCELED, e
        refused += 1
print(ok, refused)
'''


def run_agents(mounts, rounds, modes):
    procs = []
    for i, mode in enumerate(modes):
        procs.append((mode, subprocess.Popen(
            ["/usr/bin/python3", "-c", AGENT, str(mounts[i % len(mounts)]), str(rounds), mode],
            stdout=subprocess.PIPE, text=True)))
    ok = refused = 0
    for mode, p in procs:
        out, _ = p.communicate(timeout=300)
        assert p.returncode == 0
        a, b = map(int, out.split())
        if mode == "cas":
            ok += a
            refused += b
    return ok, refused


def test_conditional_merges_race_with_queued_merges(mnt):
    mnt.sh("""echo '{"n":0}' > counter""")
    ok, refused = run_agents([mnt.mnt], 20, ["cas"] * 6 + ["free"] * 3)
    doc = json.loads(mnt.sh("cat counter").stdout)
    # No conditional merge was lost to another: the count is the successes.
    assert ok == 120 and doc["n"] == ok
    print("6 agents: %d conditional merges, %d refused and retried" % (ok, refused))


def test_conditional_merges_two_shared_daemons(env, tmp_path):
    env.mount(opts=["shared"])
    other = tmp_path / "mnt2"
    env.mount(opts=["shared"], mnt=other)
    env.sh("""echo '{"n":0}' > counter""")
    ok, refused = run_agents([env.mnt, other], 12, ["cas"] * 6 + ["free"] * 2)
    assert ok == 72
    with open(os.path.join(str(other), "counter")) as f:
        assert json.load(f)["n"] == 72
    assert json.loads(env.sh("cat counter").stdout)["n"] == 72
    print("two daemons: %d conditional merges, %d refused and retried" % (ok, refused))
