# SPDX-License-Identifier: MIT
"""Plain stashes through a real mount (DESIGN 2.1, 3, 4)."""
import errno
import os
import stat
import subprocess
import threading
import time

import pytest


def read(p):
    with open(p, "rb") as f:
        return f.read()


def test_progress_file_pattern(mnt):
    r = mnt.sh("cat p", check=False)
    assert r.returncode != 0 and "No such file" in r.stderr
    mnt.sh("printf '%s' 'step 1 done' > p")
    assert mnt.sh("cat p").stdout == "step 1 done"
    assert read(mnt.backing / "p") == b"step 1 done"
    mnt.sh("echo more >> p")
    assert mnt.sh("cat p").stdout == "step 1 donemore\n"
    mnt.sh("rm p")
    assert not os.path.exists(mnt.path("p"))
    assert not (mnt.backing / "p").exists()


def test_replace_append_truncate_touch(mnt):
    mnt.sh("echo one > f; echo two > f")
    assert mnt.sh("cat f").stdout == "two\n"
    mnt.sh("truncate -s 2 f")
    assert read(mnt.path("f")) == b"tw"
    assert os.stat(mnt.path("f")).st_size == 2
    mnt.sh("truncate -s 5 f")
    assert read(mnt.path("f")) == b"tw\0\0\0"
    mnt.sh("touch new")
    assert os.stat(mnt.path("new")).st_size == 0
    assert (mnt.backing / "new").exists()
    mnt.sh("touch -d '2001-02-03 04:05:06Z' new")
    assert time.gmtime(os.stat(mnt.path("new")).st_mtime)[:6] == (2001, 2, 3, 4, 5, 6)
    mnt.sh(": > f")
    assert read(mnt.path("f")) == b""


def test_chmod_stat_statfs(mnt):
    mnt.sh("echo x > f; chmod 600 f")
    assert stat.S_IMODE(os.stat(mnt.path("f")).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(mnt.backing / "f").st_mode) == 0o600
    # A commit keeps the mode.
    mnt.sh("echo y > f")
    assert stat.S_IMODE(os.stat(mnt.path("f")).st_mode) == 0o600
    st = os.statvfs(str(mnt.mnt))
    assert st.f_blocks > 0 and st.f_bsize > 0
    assert "stashfs" in mnt.sh("df -P .").stdout


def test_namespaces(mnt):
    mnt.sh("mkdir -p team-a/nightly/deep && echo hi > team-a/nightly/deep/s")
    assert read(mnt.backing / "team-a/nightly/deep/s") == b"hi\n"
    assert sorted(os.listdir(mnt.path("team-a/nightly"))) == ["deep"]
    r = mnt.sh("rmdir team-a/nightly/deep", check=False)
    assert r.returncode != 0 and "not empty" in r.stderr
    mnt.sh("rm team-a/nightly/deep/s; rmdir team-a/nightly/deep")
    assert not (mnt.backing / "team-a/nightly/deep").exists()


def test_listing_hides_internal_state(mnt):
    mnt.sh("echo a > a")
    names = os.listdir(str(mnt.mnt))
    assert sorted(names) == ["a", "schemas", "streams"]
    assert (mnt.backing / ".stashfs" / "format").exists()
    with pytest.raises(OSError) as e:
        os.stat(mnt.path(".stashfs"))
    assert e.value.errno == errno.ENOENT
    r = mnt.sh("echo x > .stashfs-mine", check=False)
    assert r.returncode != 0 and "not permitted" in r.stderr


def test_rename_atomic_over_existing(mnt):
    mnt.sh("echo old > target; echo new > src")
    with open(mnt.path("target")) as reader:
        mnt.sh("mv src target")
        assert reader.read() == "old\n"      # the open reader keeps its version
    assert mnt.sh("cat target").stdout == "new\n"
    assert not os.path.exists(mnt.path("src"))
    mnt.sh("mkdir d; mv target d/t")
    assert read(mnt.backing / "d/t") == b"new\n"


def test_snapshot_per_open(mnt):
    mnt.sh("seq 1 20000 > s")
    old = read(mnt.path("s"))
    with open(mnt.path("s"), "rb") as r:
        first = r.read(100)
        mnt.sh("echo replaced > s")
        rest = r.read()
    assert first + rest == old
    assert read(mnt.path("s")) == b"replaced\n"


def test_readers_never_see_a_half_written_stash(mnt):
    mnt.sh("echo committed > s")
    w = open(mnt.path("s"), "w")
    w.write("half of the new")
    w.flush()
    # Not yet closed: others still read the committed version.
    assert mnt.sh("cat s").stdout == "committed\n"
    assert read(mnt.backing / "s") == b"committed\n"
    w.write(" content\n")
    w.close()
    assert mnt.sh("cat s").stdout == "half of the new content\n"


def test_concurrent_writers_last_commit_wins_whole(mnt):
    def writer(i):
        for _ in range(30):
            with open(mnt.path("race"), "w") as f:
                f.write(("%d" % i) * 5000)

    ts = [threading.Thread(target=writer, args=(i,)) for i in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    data = read(mnt.path("race")).decode()
    assert len(data) == 5000 and len(set(data)) == 1


def test_fsync_commits(mnt):
    fd = os.open(mnt.path("f"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.write(fd, b"durable")
    os.fsync(fd)
    # Committed at fsync, before close.
    assert read(mnt.backing / "f") == b"durable"
    os.write(fd, b"!")
    os.fdatasync(fd)
    assert read(mnt.backing / "f") == b"durable!"
    os.close(fd)


def test_python_positional_writes(mnt):
    mnt.sh("printf 'abcdefghij' > f")
    with open(mnt.path("f"), "r+b") as f:
        f.seek(3)
        f.write(b"XY")
        f.seek(0)
        assert f.read() == b"abcXYfghij"   # a handle sees its own writes
    assert read(mnt.path("f")) == b"abcXYfghij"


def test_unsupported_objects_eperm(mnt):
    mnt.sh("echo x > f")
    for cmd in ("ln f hard", "ln -s f soft", "mkfifo fifo", "mknod dev c 1 3"):
        r = mnt.sh(cmd, check=False)
        assert r.returncode != 0 and "not permitted" in r.stderr, cmd
    assert sorted(os.listdir(str(mnt.mnt))) == ["f", "schemas", "streams"]


def test_planted_symlink_not_followed(mnt):
    os.symlink("/etc", mnt.backing / "evil")
    os.symlink("/etc/hostname", mnt.backing / "evil2")
    assert "evil" not in os.listdir(str(mnt.mnt))
    for name in ("evil/hostname", "evil2"):
        r = mnt.sh("cat " + name, check=False)
        assert r.returncode != 0
    r = mnt.sh("echo pwned > evil2", check=False)
    assert r.returncode != 0
    assert os.readlink(mnt.backing / "evil2") == "/etc/hostname"


def test_binary_empty_and_long_names(mnt):
    blob = bytes(range(256)) * 1000
    with open(mnt.path("bin"), "wb") as f:
        f.write(blob)
    assert read(mnt.path("bin")) == blob
    open(mnt.path("empty"), "w").close()
    assert read(mnt.path("empty")) == b"" and os.path.exists(mnt.backing / "empty")
    # The longest stash name leaves room for its .json view (NAME_MAX - 5).
    name = "n" * 250
    mnt.sh("echo long > " + name)
    assert read(mnt.path(name)) == b"long\n"
    assert os.path.exists(mnt.path(name + ".json"))
    for n in (251, 255, 256):
        r = mnt.sh("echo x > " + "n" * n, check=False)
        assert r.returncode != 0 and "too long" in r.stderr, n


def test_tools_cp_sed_rsync_tar_vim(mnt, tmp_path):
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "a").write_text("alpha\n")
    (src / "sub" / "b").write_bytes(os.urandom(70000))
    mnt.sh("cp -r %s copied" % src)
    assert read(mnt.path("copied/sub/b")) == (src / "sub" / "b").read_bytes()
    mnt.sh("sed -i 's/alpha/beta/' copied/a")
    assert read(mnt.path("copied/a")) == b"beta\n"
    assert [n for n in os.listdir(mnt.path("copied")) if n.startswith("sed")] == []
    subprocess.run(["rsync", "-a", str(src) + "/", mnt.path("synced")], check=True)
    assert read(mnt.path("synced/sub/b")) == (src / "sub" / "b").read_bytes()
    subprocess.run(["tar", "-C", str(src), "-cf", str(tmp_path / "t.tar"), "."], check=True)
    mnt.sh("mkdir untarred && tar -C untarred -xf %s" % (tmp_path / "t.tar"))
    assert read(mnt.path("untarred/a")) == b"alpha\n"
    # An editor's save: vim in ex mode, with its default backup/rename dance.
    mnt.sh("printf 'line one\\nline two\\n' > notes")
    subprocess.run(["vim", "-Es", "-u", "NONE", "-c", "%s/two/2/", "-c", "wq", mnt.path("notes")],
                   check=True, stdin=subprocess.DEVNULL, timeout=30)
    assert read(mnt.path("notes")) == b"line one\nline 2\n"
    subprocess.run(["vim", "-Es", "-u", "NONE", "-c", "set backupcopy=no writebackup",
                    "-c", "1d", "-c", "wq", mnt.path("notes")],
                   check=True, stdin=subprocess.DEVNULL, timeout=30)
    assert read(mnt.path("notes")) == b"line 2\n"


def test_size_limit_efbig_keeps_old(env):
    env.mount(opts=["max_size=64k"])
    env.sh("echo precious > f")
    fd = os.open(env.path("f"), os.O_WRONLY | os.O_TRUNC)
    os.write(fd, b"x" * 60000)
    with pytest.raises(OSError) as e:
        os.write(fd, b"y" * 10000)
    assert e.value.errno == errno.EFBIG
    with pytest.raises(OSError):
        os.close(fd)     # the refusal is repeated at close, nothing commits
    assert read(env.path("f")) == b"precious\n"
    r = env.sh("head -c 100000 /dev/zero > f", check=False)
    assert r.returncode != 0 and "too large" in r.stderr
    assert read(env.path("f")) == b"precious\n"
    reason = os.getxattr(env.path("f"), "user.stash.error").decode()
    assert "size limit" in reason


def test_large_write_spills(env):
    """A 1 GiB stash is written through a temp file, not memory."""
    d = env.mount(opts=["max_size=2G", "sync=never"])
    chunk = b"z" * (1 << 20)
    with open(env.path("big"), "wb") as f:
        for _ in range(1024):
            f.write(chunk)
    with open("/proc/%d/status" % d.pid()) as s:
        hwm = [l for l in s if l.startswith("VmHWM")][0].split()[1]
    assert int(hwm) < 256 * 1024, "daemon peak RSS %s kB" % hwm
    assert os.stat(env.path("big")).st_size == 1 << 30
    os.unlink(env.path("big"))


def test_survives_remount(env):
    env.mount()
    env.sh("mkdir -p ns && echo kept > ns/p")
    env.daemons[-1].stop()
    assert read(env.backing / "ns/p") == b"kept\n"
    env.mount()
    assert env.sh("cat ns/p").stdout == "kept\n"


def test_temp_files_cleaned_at_mount(env):
    env.mount()
    env.sh("echo a > a")
    env.daemons[-1].kill()
    stale = env.backing / ".stashfs" / "tmp" / "999-dead"
    stale.mkdir()
    (stale / "t1").write_text("half")
    (env.backing / ".stashfs" / "tmp" / "999-dead.lock").write_text("")
    lockless = env.backing / ".stashfs" / "tmp" / "998-nolock"
    lockless.mkdir()
    (lockless / "t2").write_text("half")
    env.mount()
    assert not stale.exists() and not lockless.exists()
    assert not (env.backing / ".stashfs" / "tmp" / "998-nolock.lock").exists()
    assert env.sh("cat a").stdout == "a\n"
