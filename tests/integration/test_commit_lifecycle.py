# SPDX-License-Identifier: MIT
"""The commit lifecycle: a name exists only from its first commit, refusals
reach the writer, a writer killed by a signal commits nothing, and the names
a stash can't take (README "A name exists from its first commit")."""
import errno
import hashlib
import json
import os
import shutil
import signal
import subprocess
import time

import pytest


def xget(env, name, attr):
    return os.getxattr(env.path(name), attr).decode()


def backing_names(env, sub=""):
    d = os.path.join(str(env.backing), sub)
    return sorted(n for n in os.listdir(d) if not n.startswith(".stashfs"))


class Writer:
    """A separate process holding a file open for writing, driven by lines on stdin."""

    SCRIPT = r"""
import os, sys
fd = None
for line in sys.stdin:
    cmd, _, arg = line.rstrip("\n").partition(" ")
    try:
        if cmd == "open":
            flags, name = arg.split(" ", 1)
            fd = os.open(name, int(flags), 0o644)
        elif cmd == "write":
            os.write(fd, arg.encode())
        elif cmd == "close":
            os.close(fd)
        print("ok", flush=True)
    except OSError as e:
        print("err %d" % e.errno, flush=True)
"""

    def __init__(self, cwd):
        self.proc = subprocess.Popen(["python3", "-c", self.SCRIPT], cwd=cwd, text=True,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE)

    def do(self, line):
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        return self.proc.stdout.readline().strip()

    def end(self):
        self.proc.stdin.close()
        self.proc.wait(timeout=10)


def test_new_stash_is_invisible_until_its_first_commit(mnt):
    w = Writer(str(mnt.mnt))
    assert w.do("open %d p" % (os.O_WRONLY | os.O_CREAT | os.O_TRUNC)) == "ok"
    assert w.do('write {"step": 3}') == "ok"
    # The resume pattern: another process finds nothing yet.
    r = mnt.sh("cat p || echo fresh")
    assert r.stdout == "fresh\n" and "No such file or directory" in r.stderr
    assert "p" not in mnt.sh("ls").stdout.split()
    assert not os.path.exists(mnt.path("p"))
    assert backing_names(mnt) == ["schemas", "streams"]
    # O_EXCL stays exclusive while it is being written.
    r = mnt.sh("set -o noclobber; echo other > p", check=False)
    assert r.returncode != 0 and "cannot overwrite existing file" in r.stderr
    r = subprocess.run(["python3", "-c", "open('p', 'x')"], cwd=str(mnt.mnt),
                       capture_output=True, text=True)
    assert r.returncode != 0 and "FileExistsError" in r.stderr
    assert w.do("close") == "ok"
    w.end()
    assert mnt.sh("cat p").stdout == '{"step": 3}'
    assert xget(mnt, "p", "user.stash.version") == "1"
    with open(os.path.join(str(mnt.backing), "p")) as f:
        assert f.read() == '{"step": 3}'


OWN_NAME = r"""
import os, sys
fd = os.open("new", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
os.write(fd, b"hello world")
seen = [os.stat("new").st_size]
os.chmod("new", 0o600)
os.truncate("new", 5)
os.utime("new", (1000000, 2000000))
st = os.stat("new")
seen += [oct(st.st_mode), st.st_size, st.st_mtime]
print(repr(seen), flush=True)
sys.stdin.readline()            # others look meanwhile
os.close(fd)
"""


def writer_beside_others(mnt, tmp_path, script):
    """Run @script in a plain directory, then on the mount; on the mount
    another process looks while the writer waits.  The writer's line and
    the new file's stat and content, by directory."""
    plain = tmp_path / "plain"
    plain.mkdir()
    seen, final = {}, {}
    for where in (str(plain), str(mnt.mnt)):
        w = subprocess.Popen(["python3", "-c", script], cwd=where, text=True,
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE)
        seen[where] = w.stdout.readline()
        assert seen[where], w.stderr.read()
        if where == str(mnt.mnt):
            r = mnt.sh("stat new", check=False)
            assert r.returncode != 0 and "No such file or directory" in r.stderr
            assert "new" not in os.listdir(where)
        w.stdin.write("\n")
        w.stdin.close()
        assert w.wait(timeout=10) == 0, w.stderr.read()
        st = os.stat(os.path.join(where, "new"))
        final[where] = (oct(st.st_mode), st.st_size, st.st_mtime,
                        open(os.path.join(where, "new")).read())
    return seen[str(plain)], seen[str(mnt.mnt)], final[str(plain)], final[str(mnt.mnt)]


def test_the_writer_sees_its_new_file_by_name(mnt, tmp_path):
    """git's lock files, open then os.chmod(path): the process writing a new
    stash stats, chmods, truncates and touches it by name as on ext4 (side by
    side with a plain directory), every other process gets ENOENT until the
    close, and the close commits what the writer set."""
    seen_plain, seen, final_plain, final = writer_beside_others(mnt, tmp_path, OWN_NAME)
    assert seen == seen_plain == "[11, '0o100600', 5, 2000000.0]\n"
    assert final == final_plain == ("0o100600", 5, 2000000.0, "hello")
    assert xget(mnt, "new", "user.stash.version") == "1"


OWN_NAME_THREADS = r"""
import os, sys, threading
def run(f):
    out = []
    t = threading.Thread(target=lambda: out.append(f()))
    t.start()
    t.join()
    return out[0]
fd = run(lambda: os.open("new", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
run(lambda: os.write(fd, b"hello world"))
seen = [run(lambda: os.stat("new").st_size)]
run(lambda: os.chmod("new", 0o600))
run(lambda: os.truncate("new", 5))
st = run(lambda: os.stat("new"))
seen += [oct(st.st_mode), st.st_size]
print(repr(seen), flush=True)
sys.stdin.readline()            # others look meanwhile
fd2 = run(lambda: os.open("new", os.O_WRONLY | os.O_APPEND))
run(lambda: os.write(fd2, b"!"))
run(lambda: os.close(fd2))
run(lambda: os.close(fd))
"""


def test_every_thread_of_the_writer_sees_its_new_file(mnt, tmp_path):
    """A thread pool (Node's libuv, Rust's tokio, Go) opens a new file in
    one thread and stats, chmods, truncates and reopens it by name in
    others, threads that have ended by then: as on ext4 (side by side),
    while another process gets ENOENT."""
    seen_plain, seen, final_plain, final = writer_beside_others(mnt, tmp_path,
                                                                OWN_NAME_THREADS)
    assert seen == seen_plain == "[11, '0o100600', 5]\n"
    assert final_plain[0::3] == ("0o100600", "hello!")
    # Two writers of one creation: the last to close wins (README item 1).
    assert final[0::3] == ("0o100600", "hello")


def test_a_read_only_create_makes_the_file(mnt, tmp_path):
    """open(O_RDONLY | O_CREAT) of a new name, as `flock FILE` does, leaves
    an empty file as on ext4 (side by side), and the lock excludes."""
    plain = tmp_path / "plain"
    plain.mkdir()
    for where in (str(plain), str(mnt.mnt)):
        fd = os.open(os.path.join(where, "made"), os.O_RDONLY | os.O_CREAT, 0o600)
        assert os.read(fd, 10) == b""
        os.close(fd)
        subprocess.run(["flock", "lock", "true"], cwd=where, check=True)
    for name in ("made", "lock"):
        a, b = os.stat(os.path.join(str(plain), name)), os.stat(mnt.path(name))
        assert (oct(a.st_mode), a.st_size) == (oct(b.st_mode), b.st_size), name
    assert xget(mnt, "made", "user.stash.version") == "1"
    # A lock file that does not exist yet: the second flock must wait.
    holder = subprocess.Popen(["flock", "new.lock", "sh", "-c", "echo held; sleep 3"],
                              cwd=str(mnt.mnt), stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "held\n"
        r = subprocess.run(["flock", "-n", "new.lock", "true"], cwd=str(mnt.mnt))
        assert r.returncode == 1        # held by the first
    finally:
        holder.wait(timeout=10)
    assert os.stat(mnt.path("new.lock")).st_size == 0


SQLITE = r"""
import sqlite3, sys
c = sqlite3.connect("db.sqlite")
c.execute("create table t(a, b)")
c.executemany("insert into t values (?, ?)", [(i, "x" * i) for i in range(200)])
c.commit()
c.execute("update t set b = 'y' where a < 100")
c.commit()
c.close()
c = sqlite3.connect("db.sqlite")
print(c.execute("select count(*), sum(length(b)) from t").fetchone(),
      c.execute("pragma integrity_check").fetchone()[0])
"""


def test_an_sqlite_database_in_the_store(mnt):
    """SQLite creates the database file and stats it by name while it holds
    it open, to see that it was not removed ("disk I/O error" while a new
    name was no name for its own writer either)."""
    r = subprocess.run(["python3", "-c", SQLITE], cwd=str(mnt.mnt), capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "(200, %d) ok\n" % (100 + sum(range(100, 200)))
    assert not os.path.exists(mnt.path("db.sqlite-journal"))


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_a_git_repository_in_the_store(mnt):
    """git init and git config write config.lock, chmod it by name while it
    is open, and rename it over config."""
    r = mnt.sh("git init -q repo && cd repo && git config user.email a@example.org && "
               "git config user.name a && echo hi > a && git add a && git commit -qm one && "
               "echo more >> a && git commit -qam two && git log --format=%s && git fsck",
               check=False)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["two", "one"]
    assert mnt.sh("git -C repo config user.name").stdout == "a\n"


def test_new_stash_written_by_a_child_of_its_opener(mnt):
    """`sh -c 'cat > new <<EOF'`: the shell opens the name, `cat` inherits
    the descriptor and fstats it; the new file is its own to write."""
    os.mkdir(mnt.path("d"))
    for name in ("notes", "d/notes", "schemas/s"):
        r = subprocess.run(["sh", "-c", "cat > %s <<EOF\n{\"type\": \"object\"}\nEOF" % name],
                           cwd=str(mnt.mnt), capture_output=True, text=True)
        assert r.returncode == 0, (name, r.stderr)
        with open(mnt.path(name)) as f:
            assert json.load(f) == {"type": "object"}
        assert xget(mnt, name, "user.stash.version") == "1"
        with open(os.path.join(str(mnt.backing), name)) as f:
            assert json.load(f) == {"type": "object"}
    # The same through a pipe into a child that stats its stdout first.
    r = mnt.sh("printf 'a b c\\n' | sh -c 'exec 3>piped; cat >&3; stat -L -c %s /dev/fd/3'")
    assert r.stdout.strip() == "6"
    assert open(mnt.path("piped")).read() == "a b c\n"


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root (a bind mount)")
def test_new_stash_written_through_a_bind_mount(mnt, tmp_path):
    """The same through a bind mount that shows the store under another path
    (a container's -v MOUNT:/stash): the shell's close of its first copy is
    still not the end of the file."""
    other = tmp_path / "other"
    other.mkdir()
    subprocess.run(["mount", "--bind", str(mnt.mnt), str(other)], check=True)
    try:
        script = ('cat > schemas/s <<EOF\n{"type": "object"}\nEOF\n'
                  'cat > notes <<EOF\n{"a": 1}\nEOF\n')
        r = subprocess.run(["sh", "-c", script], cwd=str(other), capture_output=True,
                           text=True)
    finally:
        subprocess.run(["umount", str(other)], check=True)
    assert r.returncode == 0, r.stderr
    for name, doc in (("schemas/s", {"type": "object"}), ("notes", {"a": 1})):
        with open(mnt.path(name)) as f:
            assert json.load(f) == doc
        assert xget(mnt, name, "user.stash.version") == "1"


def test_first_commit_is_version_1_with_one_record(mnt):
    mnt.sh("touch streams/log && setfattr -n user.stash.linked_stash -v p streams/log")
    mnt.sh("""echo '{"a":1}' > p""")
    assert xget(mnt, "p", "user.stash.version") == "1"
    recs = [json.loads(l) for l in mnt.sh("cat streams/log").stdout.splitlines()]
    assert [(r["op"], r["version"]) for r in recs] == [("put", 1)]
    assert recs[0]["data"] == {"a": 1}
    # touch and `: >` still create an empty stash, version 1.
    mnt.sh("touch t && : > e")
    for name in ("t", "e"):
        assert os.path.getsize(mnt.path(name)) == 0
        assert xget(mnt, name, "user.stash.version") == "1"
    assert mnt.sh("ls").stdout.split() == ["e", "p", "schemas", "streams", "t"]
    # `touch` then at once `ls` in the same shell: the name is there.
    assert mnt.sh("touch u && ls u").stdout == "u\n"


def test_refused_first_writes_leave_no_name(mnt, tmp_path):
    mnt.sh("""echo '{"type":"object","required":["a"]}' > schemas/needs-a""")
    mnt.sh("mkdir bound && setfattr -n user.stash.schema -v needs-a bound")
    # Schema refusal (inherited binding), at write().
    r = mnt.sh("""echo '{"b":1}' > bound/p""", check=False)
    assert r.returncode != 0 and "Invalid argument" in r.stderr
    # Bad JSON through the view.
    r = mnt.sh("echo 'nope' > q.json", check=False)
    assert r.returncode != 0
    # A refused schema leaves no empty file in schemas/.
    r = mnt.sh("""echo '{"type": 12}' > schemas/bad""", check=False)
    assert r.returncode != 0
    # cp of a source its user can't read.
    src = tmp_path / "secret"
    src.write_text("x")
    src.chmod(0)
    os.chmod(str(mnt.mnt), 0o777)
    r = subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
                        "cp", str(src), mnt.path("copy")], capture_output=True, text=True)
    assert r.returncode != 0 and "Permission denied" in r.stderr
    for name in ("bound/p", "q", "schemas/bad", "copy"):
        assert not os.path.exists(mnt.path(name)), name
    assert backing_names(mnt, "bound") == []
    assert backing_names(mnt, "schemas") == ["needs-a"]
    assert backing_names(mnt) == ["bound", "schemas", "streams"]


def test_refused_first_write_over_size_leaves_no_name(env):
    env.mount(opts=["max_size=100"])
    r = env.sh("head -c 500 /dev/zero > big", check=False)
    assert r.returncode != 0 and "too large" in r.stderr
    assert not os.path.exists(env.path("big"))
    assert backing_names(env) == ["schemas", "streams"]


def test_o_excl_between_two_daemons(env):
    env.mount(opts=["shared"])
    other = env.tmp / "mnt2"
    env.mount(opts=["shared"], mnt=other)
    w = Writer(str(env.mnt))
    assert w.do("open %d lock" % (os.O_WRONLY | os.O_CREAT | os.O_EXCL)) == "ok"
    w2 = Writer(str(other))
    assert w2.do("open %d lock" % (os.O_WRONLY | os.O_CREAT | os.O_EXCL)) == "err %d" % errno.EEXIST
    assert not os.path.exists(os.path.join(str(other), "lock"))
    assert w.do("write mine") == "ok"
    assert w.do("close") == "ok"
    assert w2.do("open %d lock" % (os.O_WRONLY | os.O_CREAT | os.O_EXCL)) == "err %d" % errno.EEXIST
    w.end()
    w2.end()
    with open(os.path.join(str(other), "lock")) as f:
        assert f.read() == "mine"


def test_writer_killed_by_signal_commits_nothing(mnt):
    mnt.sh("""echo '{"ok": 1}' > p""")
    kill = ('import os;fd=os.open("%s",os.O_WRONLY|os.O_TRUNC|os.O_CREAT);'
            'os.write(fd,b"{\\"half\\": [1,");os.kill(os.getpid(),9)')
    for name in ("p", "new"):
        r = subprocess.run(["python3", "-c", kill % name], cwd=str(mnt.mnt))
        assert r.returncode == -signal.SIGKILL
    assert mnt.sh("cat p").stdout == '{"ok": 1}\n'
    assert xget(mnt, "p", "user.stash.version") == "1"
    assert not os.path.exists(mnt.path("new"))
    assert backing_names(mnt) == ["p", "schemas", "streams"]
    # A writer that exits without closing (no signal) commits, as always.
    subprocess.run(["python3", "-c", 'import os;fd=os.open("p",os.O_WRONLY|os.O_TRUNC);'
                    'os.write(fd,b"done");os._exit(0)'], cwd=str(mnt.mnt), check=True)
    assert mnt.sh("cat p").stdout == "done"


THREADED = ("import os,sys,threading,time\n"
            "for _ in range(4):\n"
            "    threading.Thread(target=time.sleep,args=(60,),daemon=True).start()\n"
            "%s")


def test_threaded_writer_exiting_normally_commits(mnt):
    """A process with threads that exits (exit_group) while its file is
    still open: the kernel kills its other threads, and one of them may be
    the last to close the file.  That is no kill of the writer."""
    for i in range(6):
        # stdout redirected to the stash, never closed before exit.
        mnt.sh("""python3 -c '%s' > out%d""" % (THREADED % 'print("{\\"n\\": %d}" % 1)', i))
        assert mnt.sh("cat out%d" % i).stdout == '{"n": 1}\n'
        subprocess.run(["python3", "-c", THREADED % (
            'fd=os.open("raw%d",os.O_WRONLY|os.O_CREAT,0o644);os.write(fd,b"all");os._exit(3)' % i)],
            cwd=str(mnt.mnt))
        assert mnt.sh("cat raw%d" % i).stdout == "all"
    # Killed with its threads, it still commits nothing.
    r = subprocess.run(["python3", "-c", THREADED % (
        'fd=os.open("out0",os.O_WRONLY|os.O_TRUNC);os.write(fd,b"half");os.kill(os.getpid(),9)')],
        cwd=str(mnt.mnt))
    assert r.returncode == -signal.SIGKILL
    assert mnt.sh("cat out0").stdout == '{"n": 1}\n'


@pytest.mark.parametrize("name", ["y.json.json", ".json", "..json", "...json", ".json.json"])
def test_view_of_no_possible_stash_is_refused(mnt, name):
    """Views of a view, of a stash with no name, of . and ..: no stash
    could be behind them, so the names are refused (and .json is no stash
    name either: its view would be ..json)."""
    mnt.sh("mkdir d")
    r = mnt.sh("""echo '{"x":1}' > d/%s""" % name, check=False)
    assert r.returncode != 0 and "Invalid argument" in r.stderr
    r = mnt.sh("cat d/%s" % name, check=False)
    assert r.returncode != 0 and "Invalid argument" in r.stderr
    assert backing_names(mnt, "d") == []
    assert mnt.sh("ls -l d").stdout.strip() == "total 0"


def test_stash_names_leave_room_for_their_view(mnt):
    ok, long = "a" * 250, "b" * 251
    mnt.sh("echo fits > %s" % ok)
    assert os.path.exists(mnt.path(ok)) and os.path.exists(mnt.path(ok + ".json"))
    r = mnt.sh("echo no > %s" % long, check=False)
    assert r.returncode != 0 and "File name too long" in r.stderr
    r = mnt.sh("mv %s %s" % (ok, long), check=False)
    assert r.returncode != 0 and "File name too long" in r.stderr
    # Directories have no view: they may use all of NAME_MAX.
    mnt.sh("mkdir %s" % ("d" * 255))
    assert backing_names(mnt) == [ok, "d" * 255, "schemas", "streams"]


def kernel_at_least(major, minor):
    rel = os.uname().release.split(".")
    return (int(rel[0]), int("".join(c for c in rel[1] if c.isdigit()))) >= (major, minor)


def tmpfs_disk(tmp_path, size):
    """A tmpfs of @size as the backing directory (user xattrs need Linux >= 6.6)."""
    if not kernel_at_least(6, 6):
        pytest.skip("tmpfs without user xattrs before Linux 6.6")
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    disk = tmp_path / "disk"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=" + size, "tmpfs", str(disk)], check=True)
    yield disk
    subprocess.run(["umount", str(disk)], check=False)


@pytest.fixture
def small_disk(tmp_path):
    yield from tmpfs_disk(tmp_path, "1m")


@pytest.fixture
def disk_8m(tmp_path):
    yield from tmpfs_disk(tmp_path, "8m")


def test_full_disk_fails_the_write(env, small_disk):
    d = env.mount(backing=small_disk)
    try:
        env.sh("""echo '{"keep": 1}' > doc && head -c 600000 /dev/zero > big""")
        # A replace, an append (copied whole at commit) and a merge: each
        # fails in write(), where the shell sees it, with the real errno.
        for cmd in ("head -c 500000 /dev/zero > other", "echo more >> big",
                    "head -c 500000 /dev/zero > doc"):
            r = env.sh(cmd, check=False)
            assert r.returncode != 0 and "No space left on device" in r.stderr, cmd
        patch = b'{"pad": "' + b"x" * 450000 + b'"}'
        fd = os.open(env.path("doc.json"), os.O_WRONLY)
        try:
            with pytest.raises(OSError) as e:
                os.write(fd, patch)
            assert e.value.errno == errno.ENOSPC
        finally:
            with pytest.raises(OSError):
                os.close(fd)
        assert env.sh("cat doc").stdout == '{"keep": 1}\n'
        assert os.path.getsize(env.path("big")) == 600000
        assert not os.path.exists(env.path("other"))
        for name in ("doc", "big"):
            assert "No space left on device" in xget(env, name, "user.stash.error")
        assert sorted(os.listdir(str(small_disk))) == [".stashfs", "big", "doc", "schemas",
                                                       "streams"]
    finally:
        d.stop()


def test_full_disk_fails_a_big_write(env, disk_8m):
    """Content past the first MiB goes to its temp file as it is written:
    the write that fills the disk fails, the committed content stays, the
    space comes back."""
    mib = 1 << 20
    d = env.mount(backing=disk_8m, opts=["max_size=64M"])
    try:
        old = os.urandom(2 * mib + 5)
        with open(env.path("s"), "wb") as f:
            f.write(old)
        fd = os.open(env.path("s"), os.O_WRONLY | os.O_TRUNC)
        with pytest.raises(OSError) as e:
            try:
                for _ in range(16):
                    os.write(fd, old[:mib])
            finally:
                with pytest.raises(OSError):
                    os.close(fd)
        assert e.value.errno == errno.ENOSPC
        assert env.sh("sha256sum < s").stdout.split()[0] == hashlib.sha256(old).hexdigest()
        assert "No space left on device" in xget(env, "s", "user.stash.error")
        new = os.urandom(3 * mib)
        with open(env.path("t"), "wb") as f:
            f.write(new)
        with open(os.path.join(str(disk_8m), "t"), "rb") as f:
            assert f.read() == new
    finally:
        d.stop()


def test_merge_over_size_limit_refused_at_write(env):
    env.mount(opts=["max_size=300"])
    env.sh("""echo '{"a": "%s"}' > p""" % ("x" * 200))
    r = env.sh("""echo '{"b": "%s"}' > p.json""" % ("y" * 200), check=False)
    assert r.returncode != 0 and "File too large" in r.stderr
    assert xget(env, "p", "user.stash.version") == "1"
    assert "size limit" in xget(env, "p", "user.stash.error")
    assert json.loads(env.sh("cat p").stdout) == {"a": "x" * 200}


def test_incomplete_patch_fails_close(mnt):
    mnt.sh("""echo '{"a": 1}' > p""")
    fd = os.open(mnt.path("p.json"), os.O_WRONLY)
    os.write(fd, b'{"b": 2')
    with pytest.raises(OSError) as e:
        os.close(fd)
    assert e.value.errno == errno.EINVAL
    # A shell ignores close(): the version tells whether it committed.
    r = mnt.sh("""echo '{"c": 3' > p.json; getfattr --only-values -n user.stash.version p""")
    assert r.stdout == "1"
    assert json.loads(mnt.sh("cat p").stdout) == {"a": 1}
    assert "JSON" in xget(mnt, "p", "user.stash.error")


def test_refused_setxattr_leaves_a_reason(mnt):
    from stashctl_util import stashctl_bin
    mnt.sh("""echo '{"type":"object","required":["a"]}' > schemas/needs-a""")
    mnt.sh("""echo '{"b": 1}' > p""")
    r = mnt.sh("setfattr -n user.stash.schema -v needs-a p", check=False)
    assert r.returncode != 0 and "Invalid argument" in r.stderr
    assert "required" in xget(mnt, "p", "user.stash.error")
    r = subprocess.run([stashctl_bin(), "set", mnt.path("p"), "schema=no-such-schema"],
                       capture_output=True, text=True)
    assert r.returncode != 0
    assert "reason:" in r.stderr and "no-such-schema" in r.stderr
    assert "no-such-schema" in xget(mnt, "p", "user.stash.error")
    r = mnt.sh("setfattr -n user.stash.ttl -v soon p", check=False)
    assert r.returncode != 0 and "ttl" in xget(mnt, "p", "user.stash.error")


def test_trees_with_json_names_as_documented(mnt, tmp_path):
    """README, JSON views: what cp -r, tar -x and rsync do with *.json files."""
    src = tmp_path / "proj"
    src.mkdir()
    (src / "package.json").write_text('{"name": "x"}\n')
    (src / "list.json").write_text("[1, 2]\n")
    (src / "readme").write_text("hi\n")
    r = mnt.sh("cp -r %s cp1" % src, check=False)
    assert r.returncode == 1
    assert "cp: error writing 'cp1/list.json': Invalid argument" in r.stderr
    assert sorted(os.listdir(mnt.path("cp1"))) == ["package", "readme"]
    assert json.loads(mnt.sh("cat cp1/package").stdout) == {"name": "x"}
    r = mnt.sh("cp -a %s cpa" % src, check=False)
    assert r.returncode == 1
    assert "cp: preserving times for 'cpa/package.json': No such file or directory" in r.stderr
    subprocess.run(["tar", "-C", str(tmp_path), "-cf", str(tmp_path / "t.tar"), "proj"],
                   check=True)
    r = mnt.sh("mkdir tx && tar -C tx -xf %s" % (tmp_path / "t.tar"), check=False)
    assert r.returncode == 2
    assert "tar: proj/list.json: Cannot write: Invalid argument" in r.stderr
    assert sorted(os.listdir(mnt.path("tx/proj"))) == ["package", "readme"]
    r = mnt.sh("rsync -a %s/ rs/" % src, check=False)
    assert r.returncode == 23
    assert '-> "package.json": Operation not permitted (1)' in r.stderr
    assert os.listdir(mnt.path("rs")) == ["readme"]
    assert sorted(os.listdir(os.path.join(str(mnt.backing), "rs"))) == ["readme"]


def test_xattrs_through_a_new_stashs_writer_reach_the_stash(mnt, tmp_path):
    """cp -a sets xattrs on the file it is still writing, before the name
    exists: they wait for the first commit instead of being lost."""
    src = tmp_path / "src"
    src.write_text('{"x": 1}\n')
    os.setxattr(str(src), "user.stash.ttl", b"5000")
    os.setxattr(str(src), "user.note", b"hello")
    subprocess.run(["cp", "-a", str(src), mnt.path("copy")], check=True)
    assert xget(mnt, "copy", "user.stash.ttl") == "5000"
    assert xget(mnt, "copy", "user.note") == "hello"
    assert os.getxattr(os.path.join(str(mnt.backing), "copy"), "user.note") == b"hello"
    assert mnt.sh("cat copy").stdout == '{"x": 1}\n'
    # Through the descriptor: read back before the close, refused as by name.
    fd = os.open(mnt.path("new"), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    os.write(fd, b"text")
    os.setxattr(fd, "user.stash.persistent", b"0")
    assert os.getxattr(fd, "user.stash.persistent") == b"0"
    with pytest.raises(OSError) as e:
        os.getxattr(fd, "user.other")
    assert e.value.errno == errno.ENODATA
    with pytest.raises(OSError) as e:
        os.setxattr(fd, "user.stash.ttl", b"soon")
    assert e.value.errno == errno.EINVAL
    with pytest.raises(OSError) as e:
        os.setxattr(fd, "user.stash.persistent", b"1", os.XATTR_CREATE)
    assert e.value.errno == errno.EEXIST
    assert os.getxattr(mnt.path("new"), "user.stash.persistent") == b"0"   # the writer's own
    assert mnt.sh("test -e new", check=False).returncode != 0                # no one else's
    os.close(fd)
    assert xget(mnt, "new", "user.stash.persistent") == "0"
    assert mnt.sh("cat new").stdout == "text"
    # A writer killed before its first commit leaves neither name nor xattrs.
    r = subprocess.run(["python3", "-c", 'import os;fd=os.open("gone",os.O_WRONLY|os.O_CREAT);'
                        'os.write(fd,b"x");os.setxattr(fd,"user.note",b"n");os.kill(os.getpid(),9)'],
                       cwd=str(mnt.mnt))
    assert r.returncode == -signal.SIGKILL
    assert backing_names(mnt) == ["copy", "new", "schemas", "streams"]
