# SPDX-License-Identifier: MIT
"""Past versions, NAME@V (README "Past versions"): every commit keeps the
version it replaces, readable by name, listed in the metadata view and by
stashctl log, kept across restarts and renames, refused for writing."""
import ctypes
import errno
import json
import os
import subprocess

import pytest

from stashctl_util import stashctl_bin


def stashctl(*args):
    return subprocess.run([stashctl_bin()] + list(args), capture_output=True, text=True)


def history(env, name):
    return os.path.join(str(env.backing), ".stashfs", "versions", name)


def meta(env, name):
    with open(env.path(".stashfs-meta/" + name)) as f:
        return json.load(f)


def test_read_past_versions_and_restore(mnt):
    mnt.sh("for i in 1 2 3 4; do echo v$i > p; done")
    r = mnt.sh("getfattr --only-values -n user.stash.version p; echo; cat p@1 p@3 p")
    assert r.stdout == "4\nv1\nv3\nv4\n"
    # Not listed, and the backing tree stays a plain mirror of the mount.
    assert mnt.sh("ls -a").stdout.split() == [".", "..", "p", "schemas", "streams"]
    assert sorted(os.listdir(str(mnt.backing))) == [".stashfs", "p", "schemas", "streams"]
    assert sorted(os.listdir(history(mnt, "p"))) == ["@1", "@2", "@3"]
    # A link, not a copy: the kept file is the very inode that was replaced.
    st = os.stat(os.path.join(history(mnt, "p"), "@3"))
    assert st.st_nlink == 1 and st.st_size == 3
    # The current version by number: the stash itself, kept once it is replaced.
    r = mnt.sh("v=$(getfattr --only-values -n user.stash.version p); cat p@$v; "
               "getfattr --only-values -n user.stash.version p@$v")
    assert r.stdout == "v4\n4"
    assert not os.path.exists(os.path.join(history(mnt, "p"), "@4"))
    r = mnt.sh("cat p@0", check=False)
    assert r.returncode != 0 and r.stderr.count("No such file") == 1
    # A version still to come is waited for (test_waits.py), not missing.
    r = mnt.sh("timeout 0.5 cat p@5; echo $?; timeout 0.5 cat p@next; echo $?", check=False)
    assert r.stdout == "124\n124\n"
    # cp restores: a new version with the old content.
    mnt.sh("cp p@2 p")
    r = mnt.sh("cat p; getfattr --only-values -n user.stash.version p")
    assert r.stdout == "v2\n5"
    assert mnt.sh("cat p@4").stdout == "v4\n"


def test_merges_and_views_keep_versions(mnt):
    mnt.sh("""echo '{"a":1}' > d.json; echo '{"b":2}' > d.json""")
    assert json.loads(mnt.sh("cat d@1").stdout) == {"a": 1}
    assert json.loads(mnt.sh("cat d").stdout) == {"a": 1, "b": 2}


def test_metadata_view_and_stashctl_log(mnt):
    mnt.sh("printf one > p; printf two > p; printf three > p")
    m = meta(mnt, "p")
    assert m["version"] == 3 and m["versions"] == 16
    assert [(h["version"], h["size"]) for h in m["history"]] == [(2, 3), (1, 3)]
    import hashlib
    assert m["history"][0]["sha256"] == hashlib.sha256(b"two").hexdigest()
    assert m["history"][0]["time"].endswith("Z")
    out = stashctl("log", mnt.path("p")).stdout.splitlines()
    assert out[0].split() == ["VERSION", "TIME", "SIZE", "SHA256"]
    assert [l.split()[0] for l in out[1:]] == ["3", "2", "1"]
    assert out[1].endswith("(current)")
    assert out[3].split()[2:4] == ["3", hashlib.sha256(b"one").hexdigest()]


def test_retention_mount_directory_and_stash(env):
    env.mount(opts=["versions=2"])
    env.sh("for i in 1 2 3 4 5; do echo $i > p; done")
    assert sorted(os.listdir(history(env, "p"))) == ["@3", "@4"]
    assert env.sh("cat p@4").stdout == "4\n"
    assert env.sh("cat p@2", check=False).returncode != 0
    # A directory's setting passes to what is made inside, as ttl does.
    env.sh("mkdir d && setfattr -n user.stash.versions -v 0 d && "
           "echo 1 > d/q && echo 2 > d/q && echo 1 > p2")
    assert not os.path.exists(history(env, "d/q/@1"))
    assert env.sh("cat d/q@1", check=False).returncode != 0
    assert env.sh("getfattr --only-values -n user.stash.versions d/q").stdout == "0"
    assert meta(env, "d/.stashfs-dir")["versions"] == 0 and meta(env, "d/q")["versions"] == 0
    # Per stash, also through the metadata view; a smaller one prunes at the next commit.
    env.sh("echo '{\"versions\": 1}' > .stashfs-meta/p && echo 6 > p")
    assert sorted(os.listdir(history(env, "p"))) == ["@5"]
    r = env.sh("setfattr -n user.stash.versions -v many p", check=False)
    assert r.returncode != 0 and "Invalid argument" in r.stderr


def test_versions_survive_restart_and_follow_mv(env):
    d = env.mount()
    env.sh("mkdir a && echo one > a/p && echo two > a/p")
    d.stop()
    env.mount()
    assert env.sh("cat a/p@1").stdout == "one\n"
    env.sh("mv a/p q")
    assert env.sh("cat q@1 q").stdout == "one\ntwo\n"
    assert env.sh("cat a/p@1", check=False).returncode != 0
    # A save by rename (editors, sed -i) keeps the history and adds the replaced content.
    env.sh("sed -i s/two/three/ q")
    assert env.sh("cat q@1 q@2 q").stdout == "one\ntwo\nthree\n"


def test_directory_moves_carry_histories(mnt):
    # e once held a stash e/p, removed: its history must not shadow d/p's.
    mnt.sh("mkdir d e; echo old > e/p; rm e/p; echo one > d/p; echo two > d/p; "
           "mv -T d e")
    assert mnt.sh("cat e/p@1 e/p").stdout == "one\ntwo\n"
    assert sorted(os.listdir(history(mnt, "e/p"))) == ["@1"]
    assert not os.path.exists(history(mnt, "d"))
    # RENAME_EXCHANGE of two directories swaps their histories.
    mnt.sh("mkdir g; echo g1 > g/p; echo g2 > g/p")
    libc = ctypes.CDLL(None, use_errno=True)
    at_fdcwd, rename_exchange = -100, 2
    assert libc.renameat2(at_fdcwd, mnt.path("e").encode(), at_fdcwd, mnt.path("g").encode(),
                          rename_exchange) == 0
    assert mnt.sh("cat g/p@1 e/p@1").stdout == "one\ng1\n"
    # f was a stash once: its versions stay, the moved stashes' histories come along.
    mnt.sh("echo s > f; rm f; mkdir f h; echo h1 > h/p; echo h2 > h/p; mv -T h f")
    assert mnt.sh("cat f/p@1 f@1").stdout == "h1\ns\n"


def test_rm_is_undone_by_cp(mnt):
    mnt.sh("echo keep > p && echo me > p")
    mnt.sh("rm p")
    assert mnt.sh("cat p", check=False).returncode != 0
    assert mnt.sh("cat p@2 p@1").stdout == "me\nkeep\n"
    # The log still lists what was removed, so the number need not be known.
    assert meta(mnt, "p")["kind"] == "removed"
    assert [h["version"] for h in meta(mnt, "p")["history"]] == [2, 1]
    out = stashctl("log", mnt.path("p")).stdout.splitlines()
    assert [l.split()[0] for l in out] == ["VERSION", "2", "1"]
    mnt.sh("cp p@2 p")
    # The name counts on from its history: no version number is ever reused.
    r = mnt.sh("cat p; getfattr --only-values -n user.stash.version p")
    assert r.stdout == "me\n3"


def test_expiry_and_ephemeral_take_versions(env):
    env.mount(opts=["sweep_interval=0.2"])
    env.sh("echo a > t && echo b > t && setfattr -n user.stash.ttl -v 1 t")
    assert env.sh("cat t@1").stdout == "a\n"
    import time
    deadline = time.time() + 10
    # The sweeper removes the stash, then its history: wait for both.
    while (os.path.exists(os.path.join(str(env.backing), "t")) or
           os.path.exists(history(env, "t"))) and time.time() < deadline:
        time.sleep(0.1)
    assert not os.path.exists(history(env, "t"))
    assert env.sh("cat t@1", check=False).returncode != 0
    env.sh("echo a > e && setfattr -n user.stash.persistent -v 0 e && echo b > e")
    assert env.sh("cat e@1").stdout == "a\n"
    env.daemons[-1].stop()
    assert not os.path.exists(history(env, "e"))


def test_reserved_names_refused(mnt):
    mnt.sh("echo w > p; echo x > p")
    # Replacing by a version's name is a compare-and-swap (test_cas.py).
    for script in ("echo y > p@1", "echo y > new@3", "echo '{}' > new@1.json"):
        r = mnt.sh(script, check=False)
        assert r.returncode != 0 and "Operation canceled" in r.stderr, script
    for script in ("echo y >> p@2", "echo y > p@next", "mkdir d@2",
                   "touch p@1", "rm p@1", "mv p p@7", "truncate -s 0 p@1",
                   "setfattr -n user.stash.ttl -v 5 p@1", "echo '{}' > p@next.json"):
        r = mnt.sh(script, check=False)
        assert r.returncode != 0 and "Read-only file system" in r.stderr, script
    with pytest.raises(OSError) as e:
        os.open(mnt.path("q@12"), os.O_WRONLY | os.O_CREAT, 0o644)
    assert e.value.errno == errno.EROFS
    with pytest.raises(OSError) as e:
        os.open(mnt.path("q@12"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    assert e.value.errno == errno.ECANCELED
    assert mnt.sh("cat p p@1").stdout == "x\nw\n"
    assert mnt.sh("ls").stdout.split() == ["p", "schemas", "streams"]
    assert sorted(os.listdir(str(mnt.backing))) == [".stashfs", "p", "schemas", "streams"]
    # "@" elsewhere in a name is an ordinary name.
    mnt.sh("echo ok > a@b && echo ok > 'c@' && cat a@b")


def test_fsck_accepts_history(env):
    d = env.mount()
    env.sh("mkdir n && echo 1 > n/p && echo 2 > n/p && rm n/p")
    d.stop()
    r = stashctl("fsck", str(env.backing))
    assert "0 problems found" in r.stdout + r.stderr
    assert os.path.exists(history(env, "n/p/@2"))
