# SPDX-License-Identifier: MIT
"""Open files as on ext4: after their name is removed, replaced or renamed,
the writer's own view through its descriptor, and metadata set through a
writer's descriptor (README "Open files")."""
import os
import stat
import subprocess
import time

import pytest


def backing(env, name):
    return os.path.join(str(env.backing), name)


def test_read_after_unlink(mnt):
    mnt.sh("echo hello > p")
    r = mnt.sh("exec 3<p; rm p; cat <&3; ls")
    assert r.stdout == "hello\nschemas\nstreams\n"
    assert not os.path.exists(backing(mnt, "p"))
    mnt.sh("echo again > p")
    fd = os.open(mnt.path("p"), os.O_RDONLY)
    try:
        os.unlink(mnt.path("p"))
        st = os.fstat(fd)
        assert st.st_nlink == 0 and st.st_size == 6
        assert os.lseek(fd, 0, os.SEEK_END) == 6
        assert os.pread(fd, 100, 0) == b"again\n"
    finally:
        os.close(fd)


def test_read_after_replace_and_expiry(mnt):
    mnt.sh("echo old > p && echo gone > q && setfattr -n user.stash.ttl -v 1 q")
    fp = os.open(mnt.path("p"), os.O_RDONLY)
    fq = os.open(mnt.path("q"), os.O_RDONLY)
    try:
        mnt.sh("echo newer > p")
        # The snapshot per open: the reader keeps the version it opened.
        assert os.pread(fp, 100, 0) == b"old\n"
        os.fstat(fp)
        for _ in range(100):
            if not os.path.exists(mnt.path("q")):
                break
            os.system("sleep 0.05")
        assert not os.path.exists(mnt.path("q"))
        assert os.pread(fq, 100, 0) == b"gone\n" and os.fstat(fq).st_size == 5
        assert os.fstat(fq).st_nlink == 0
    finally:
        os.close(fp)
        os.close(fq)


def test_writer_removed_while_open_stays_removed(mnt):
    mnt.sh("mkdir d && echo base > d/p")
    fd = os.open(mnt.path("d/p"), os.O_RDWR)
    try:
        os.unlink(mnt.path("d/p"))
        os.ftruncate(fd, 2)
        os.pwrite(fd, b"xyz", 2)
        os.fsync(fd)
        st = os.fstat(fd)
        assert st.st_nlink == 0 and st.st_size == 5
        assert os.pread(fd, 10, 0) == b"baxyz"
    finally:
        os.close(fd)
    assert not os.path.exists(mnt.path("d/p"))
    assert os.listdir(backing(mnt, "d")) == []
    os.rmdir(mnt.path("d"))


def beside_plain(mnt, tmp_path, script):
    """What @script prints, run in a plain directory and on the mount: the
    same, or the test fails."""
    plain = tmp_path / "plain"
    plain.mkdir()
    out = {}
    for where in (str(plain), str(mnt.mnt)):
        r = subprocess.run(["python3", "-c", script], cwd=where, text=True,
                           capture_output=True, timeout=30)
        assert r.returncode == 0, r.stderr
        out[where] = r.stdout
    assert out[str(mnt.mnt)] == out[str(plain)]
    return out[str(plain)]


def others_cannot(mnt, command):
    """While this process writes the new stash `mine`, @command from another
    process fails with ENOENT; the close commits it."""
    fd = os.open(mnt.path("mine"), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        os.write(fd, b"kept")
        r = mnt.sh(command, check=False)
        assert r.returncode != 0 and "No such file or directory" in r.stderr
    finally:
        os.close(fd)
    assert open(mnt.path("mine")).read() == "kept"


UNLINKED_NEW = r"""
import os, sys, tempfile
before = sorted(os.listdir("."))
f = tempfile.TemporaryFile(dir=".")     # mkstemp, then unlink at once
f.write(b"scratch")
f.seek(0)
seen = [f.read(), os.fstat(f.fileno()).st_nlink, sorted(os.listdir(".")) == before]
# The name is free again for another exclusive creation.
a = os.open("n", os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
os.unlink("n")
b = os.open("n", os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
os.write(b, b"second")
os.write(a, b"first")
seen += [os.fstat(a).st_nlink, os.pread(a, 10, 0)]
os.close(b)
os.close(a)
f.close()
seen += [open("n").read(), sorted(os.listdir(".")) == sorted(before + ["n"])]
print(repr(seen))
"""


def test_a_new_file_removed_by_its_writer(mnt, tmp_path):
    """Python's TemporaryFile (mkstemp, then unlink before any close) and a
    name removed and created again while its first writer still writes: as
    on ext4 (side by side).  The removed file commits nothing, leaves nothing
    in the backing directory, and another process may not remove the name of
    a creation that is not its own."""
    assert beside_plain(mnt, tmp_path, UNLINKED_NEW) == \
        "[b'scratch', 0, True, 0, b'first', 'second', True]\n"
    assert sorted(os.listdir(str(mnt.backing))) == [".stashfs", "n", "schemas", "streams"]
    tmp = os.path.join(str(mnt.backing), ".stashfs", "tmp")
    assert [f for _, _, fs in os.walk(tmp) for f in fs if not f.endswith(".lock")] == []
    others_cannot(mnt, "rm mine")


RENAMED_NEW = r"""
import json, os, stat, tempfile
with open("dest", "w") as d:
    d.write("old")
os.chmod("dest", 0o644)
seen = []
with tempfile.NamedTemporaryFile("w", dir=".", delete=False) as f:
    json.dump({"step": 1}, f)
    f.flush()
    os.replace(f.name, "dest")          # the atomic write, before the close
    st = os.stat("dest")
    seen += [open("dest").read(), oct(stat.S_IMODE(st.st_mode)), os.path.exists(f.name)]
    f.write(" ")
seen += [open("dest").read(), sorted(n for n in os.listdir(".") if n not in ("schemas", "streams"))]
print(repr(seen))
"""


def test_a_new_file_renamed_by_its_writer(mnt, tmp_path):
    """Python's NamedTemporaryFile then os.replace before the close (Rust's
    tempfile persist does the same): the name moves at once, over the file
    there, as on ext4 (side by side); the rename commits what was written,
    the close what came after.  Another process can't move it."""
    assert beside_plain(mnt, tmp_path, RENAMED_NEW) == \
        """['{"step": 1}', '0o600', False, '{"step": 1} ', ['dest']]\n"""
    assert os.getxattr(mnt.path("dest"), "user.stash.version") == b"3"
    assert open(mnt.path("dest@2")).read() == '{"step": 1}'
    others_cannot(mnt, "mv mine moved")
    assert not os.path.exists(mnt.path("moved"))
    # A rename that can't be (RENAME_NOREPLACE over a stash, onto a
    # directory, RENAME_EXCHANGE with no other name) is refused before
    # anything is committed.
    r = subprocess.run(["python3", "-c", """
import ctypes, os, subprocess
libc = ctypes.CDLL(None, use_errno=True)
os.mkdir("dir")
fd = os.open("tmp", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
os.write(fd, b"half")
out = []
for to, flags in ((b"dest", 1), (b"dir", 0), (b"nothere", 2)):
    rc = libc.renameat2(-100, b"tmp", -100, to, flags)
    out.append((rc, ctypes.get_errno()))
out.append(subprocess.run(["stat", "tmp"], capture_output=True).returncode)
os.close(fd)
print(out)
"""], cwd=str(mnt.mnt), text=True, capture_output=True, timeout=30)
    assert r.stdout == "[(-1, 17), (-1, 21), (-1, 2), 1]\n", r.stderr
    assert os.getxattr(mnt.path("tmp"), "user.stash.version") == b"1"
    # Over a stash bound to a schema: its schema checks what the rename brings.
    mnt.sh("""echo '{"type": "object"}' > schemas/obj.json && echo '{"a": 1}' > bound &&
              setfattr -n user.stash.schema -v obj bound""")
    r = subprocess.run(["python3", "-c", """
import os, tempfile
with tempfile.NamedTemporaryFile("w", dir=".", delete=False) as f:
    f.write("[1]")
    f.flush()
    try:
        os.replace(f.name, "bound")
    except OSError as e:
        print(e.errno, os.path.exists(f.name))
"""], cwd=str(mnt.mnt), text=True, capture_output=True, timeout=30)
    assert r.stdout == "22 True\n", r.stderr
    assert open(mnt.path("bound")).read() == '{"a": 1}\n'


def test_writer_renamed_while_open_commits_under_new_name(mnt):
    mnt.sh("echo base > p")
    fd = os.open(mnt.path("p"), os.O_WRONLY | os.O_TRUNC)
    try:
        os.write(fd, b"moved\n")
        os.rename(mnt.path("p"), mnt.path("q"))
    finally:
        os.close(fd)
    assert not os.path.exists(mnt.path("p"))
    assert mnt.sh("cat q").stdout == "moved\n"
    assert sorted(os.listdir(str(mnt.backing))) == [".stashfs", "q", "schemas", "streams"]


def test_writer_keeps_one_link_after_another_commit(mnt):
    """A later commit under the name replaces the backing file the writer
    started from; the name is still there, so fstat says one link."""
    mnt.sh("echo first > p")
    fd = os.open(mnt.path("p"), os.O_WRONLY | os.O_TRUNC)
    try:
        mnt.sh("echo second > p")
        st = os.fstat(fd)
        assert (st.st_nlink, st.st_size) == (1, 0)
        os.write(fd, b"third\n")
        assert os.fstat(fd).st_nlink == 1
    finally:
        os.close(fd)
    assert mnt.sh("cat p").stdout == "third\n"
    assert os.stat(mnt.path("p")).st_nlink == 1


@pytest.mark.parametrize("existing", [False, True], ids=["new", "replace"])
def test_writer_commits_where_its_directory_was_renamed(mnt, existing):
    os.makedirs(mnt.path("d/sub"))
    if existing:
        mnt.sh("echo old > d/sub/p")
    fd = os.open(mnt.path("d/sub/p"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, b"written\n")
        os.rename(mnt.path("d"), mnt.path("e"))
    finally:
        os.close(fd)
    assert mnt.sh("cat e/sub/p; ls d 2>&1 || true").stdout == (
        "written\nls: cannot access 'd': No such file or directory\n")
    assert open(backing(mnt, "e/sub/p"), "rb").read() == b"written\n"
    assert not os.path.exists(backing(mnt, "d"))


def test_writer_size_survives_a_lookup_of_its_name(mnt):
    """A lookup answers with the committed attributes; the writer's fstat
    and SEEK_END still show what it wrote (also once its name is replaced)."""
    mnt.sh("printf 12345 > c; echo hello > b")
    fd = os.open(mnt.path("c"), os.O_RDWR | os.O_TRUNC)
    try:
        os.pwrite(fd, b"x" * 5000, 10)
        assert os.lseek(fd, 0, os.SEEK_END) == 5010
        os.rename(mnt.path("b"), mnt.path("c"))
        assert os.lseek(fd, 0, os.SEEK_END) == 5010
        st = os.fstat(fd)
        assert (st.st_size, st.st_nlink) == (5010, 0)
    finally:
        os.close(fd)
    assert mnt.sh("cat c").stdout == "hello\n"


@pytest.mark.parametrize("existing", [False, True], ids=["new", "replace"])
def test_writer_sees_its_own_size(mnt, existing):
    if existing:
        mnt.sh("echo 0123456789abcdef > p")
    fd = os.open(mnt.path("p"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        assert os.fstat(fd).st_size == 0
        os.write(fd, b"abc")
        assert os.fstat(fd).st_size == 3
        os.pwrite(fd, b"xy", 10)
        assert os.fstat(fd).st_size == 12
        assert os.lseek(fd, 0, os.SEEK_END) == 12
        # Everyone else sees the committed version (or no name).
        out = mnt.sh("stat -c %s p 2>&1 || true").stdout
        assert out == ("17\n" if existing else "stat: cannot statx 'p': No such file or directory\n")
    finally:
        os.close(fd)
    assert os.stat(mnt.path("p")).st_size == 12
    assert os.path.getsize(backing(mnt, "p")) == 12


@pytest.mark.parametrize("existing", [False, True], ids=["new", "replace"])
def test_metadata_through_writer_fd_applies_to_the_commit(mnt, existing):
    if existing:
        mnt.sh("echo 0123456789 > p && chmod 644 p")
    before = os.stat(mnt.path("p")).st_ctime_ns if existing else 0
    fd = os.open(mnt.path("p"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, b"hello world")
        os.ftruncate(fd, 5)
        os.fchmod(fd, 0o600)
        os.utime(fd, ns=(1_000_000_000_000_000_000, 1_100_000_000_000_000_000))
        st = os.fstat(fd)
        assert (st.st_size, stat.S_IMODE(st.st_mode), st.st_mtime_ns) == \
            (5, 0o600, 1_100_000_000_000_000_000)
    finally:
        os.close(fd)
    # Right after the close, through the mount and in the backing directory.
    for path in (mnt.path("p"), backing(mnt, "p")):
        st = os.stat(path)
        assert st.st_size == 5, path
        assert stat.S_IMODE(st.st_mode) == 0o600, path
        assert st.st_mtime_ns == 1_100_000_000_000_000_000, path
        assert st.st_ctime_ns > before, path
    assert mnt.sh("stat -c %s p").stdout == "5\n"
    assert mnt.sh("cat p").stdout == "hello"


def test_cp_tar_rsync_keep_size_mode_mtime(mnt, tmp_path):
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    files = {"a.txt": (b"alpha\n" * 50, 0o640), "sub/b": (b"beta", 0o600),
             "hostname": (open("/etc/hostname", "rb").read(), 0o644)}
    for i, (name, (data, mode)) in enumerate(sorted(files.items())):
        p = src / name
        p.write_bytes(data)
        p.chmod(mode)
        os.utime(p, (1_600_000_000 + i, 1_600_000_000 + i))
    # The one-liner: the size is right at once (no stale cached 0).
    mnt.sh("cp -p /etc/hostname x")
    assert mnt.sh("stat -c %s x").stdout == "%d\n" % os.path.getsize("/etc/hostname")
    subprocess.run(["cp", "-a", str(src), mnt.path("cpa")], check=True)
    subprocess.run(["tar", "-C", str(src), "-cf", str(tmp_path / "t.tar"), "."], check=True)
    os.mkdir(mnt.path("tarx"))
    subprocess.run(["tar", "-C", mnt.path("tarx"), "-xf", str(tmp_path / "t.tar")], check=True)
    subprocess.run(["rsync", "-a", str(src) + "/", mnt.path("rs") + "/"], check=True)
    for dest in ("cpa", "tarx", "rs"):
        for name in files:
            s, d = os.stat(src / name), os.stat(os.path.join(mnt.path(dest), name))
            got = (d.st_size, stat.S_IMODE(d.st_mode), int(d.st_mtime))
            assert got == (s.st_size, stat.S_IMODE(s.st_mode), int(s.st_mtime)), (dest, name)
            b = os.stat(os.path.join(str(mnt.backing), dest, name))
            assert (b.st_size, int(b.st_mtime)) == (s.st_size, int(s.st_mtime)), (dest, name)


@pytest.mark.parametrize("through", [0, 1], ids=["first", "second"])
def test_fchmod_futimens_reach_every_writer_of_the_process(mnt, through):
    """One process, two descriptors open for writing on one file: fchmod and
    futimens through either are the file's (one inode on ext4), whichever
    of them commits last."""
    mnt.sh("echo base > p && chmod 644 p")
    t = 1_200_000_000_000_000_000
    fds = [os.open(mnt.path("p"), os.O_WRONLY) for _ in range(2)]
    try:
        for i, fd in enumerate(fds):
            os.write(fd, b"w%d\n" % i)
        os.fchmod(fds[through], 0o600)
        os.utime(fds[through], ns=(t, t))
        os.close(fds[through])
        os.close(fds[1 - through])
    finally:
        for fd in fds:
            try:
                os.close(fd)
            except OSError:
                pass
    assert mnt.sh("cat p").stdout == "w%d\ne\n" % (1 - through)
    for path in (mnt.path("p"), backing(mnt, "p")):
        st = os.stat(path)
        assert (stat.S_IMODE(st.st_mode), st.st_mtime_ns) == (0o600, t), path


def test_directory_removed_while_open(mnt):
    """fstat of a directory's descriptor after rmdir, as on ext4: still a
    directory, empty, no links; its listing is empty too."""
    mnt.sh("mkdir -m 750 d")
    fd = os.open(mnt.path("d"), os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.rmdir(mnt.path("d"))
        st = os.fstat(fd)
        assert stat.S_ISDIR(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o750
        assert (st.st_nlink, st.st_size) == (0, 0)
        assert os.listdir(fd) == []
    finally:
        os.close(fd)
    assert not os.path.exists(backing(mnt, "d"))


def test_a_childs_exec_does_not_commit_a_truncating_writer(mnt):
    """A child that inherited a writer's descriptor closes its copy at exec
    (close-on-exec): that is not the writer's close, also for a writer that
    has only truncated so far (no fd table to compare yet).  It committed
    the truncation there, before the other writer's commit, and could hang
    the child's exec."""
    mnt.sh("printf %0300d 0 > f")
    a = os.open(mnt.path("f"), os.O_WRONLY | os.O_TRUNC)
    b = os.open(mnt.path("f"), os.O_WRONLY | os.O_TRUNC)
    try:
        os.write(a, b"a" * 100)
        subprocess.run(["true"], timeout=10)       # forks with both open, execs
        os.close(a)
        assert os.path.getsize(backing(mnt, "f")) == 100
    finally:
        for fd in (a, b):
            try:
                os.close(fd)
            except OSError:
                pass
    for _ in range(100):                             # b commits at its release
        if os.path.getsize(backing(mnt, "f")) == 0:
            break
        time.sleep(0.02)
    assert mnt.sh("wc -c < f").stdout.strip() == "0"
