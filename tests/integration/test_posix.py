# SPDX-License-Identifier: MIT
"""POSIX names, paths and modes through a real mount (issue 14), checked
against what ext4 does, on the mount and in the backing directory."""
import ctypes
import errno
import hashlib
import os
import stat
import subprocess
import time

import pytest

RENAME_NOREPLACE = 1
RENAME_EXCHANGE = 2
_libc = ctypes.CDLL(None, use_errno=True)
_libc.renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p,
                            ctypes.c_uint]
AT_FDCWD = -100


def renameat2(old, new, flags):
    if _libc.renameat2(AT_FDCWD, str(old).encode(), AT_FDCWD, str(new).encode(), flags) < 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e), str(old))


def read(p):
    with open(p, "rb") as f:
        return f.read()


def deep_dir(root, name, levels):
    """Make @levels nested directories @name under @root; an O_PATH fd of the last."""
    fd = os.open(root, os.O_PATH | os.O_DIRECTORY)
    for _ in range(levels):
        try:
            os.mkdir(name, 0o755, dir_fd=fd)
        except FileExistsError:
            pass
        sub = os.open(name, os.O_PATH | os.O_DIRECTORY, dir_fd=fd)
        os.close(fd)
        fd = sub
    return fd


def test_paths_up_to_path_max_at_any_depth(mnt):
    comp = "N" * 250
    # 30 levels: 7.5 KB from the root, deeper than one PATH_MAX.
    fd = deep_dir(mnt.path(""), comp, 30)
    here = os.open(".", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
    os.close(fd)
    rel_dir = "/".join([comp] * 16)
    rel = rel_dir + "/" + "f" * (4095 - len(rel_dir) - 1)
    assert len(rel) == 4095
    old = os.getcwd()
    os.fchdir(here)
    try:
        os.makedirs(rel_dir)
        # A real shell, from inside the deep directory, with the 4,095-byte path.
        r = subprocess.run(["sh", "-c", "printf deep > \"$1\"; cat \"$1\"; stat -c %s \"$1\"",
                            "sh", rel], capture_output=True, text=True, check=True)
        assert r.stdout == "deep4\n"
        os.rename(rel, rel[:-1] + "g")
        assert read(rel[:-1] + "g") == b"deep"
        with pytest.raises(FileNotFoundError):
            os.stat(rel)
        os.mkdir(rel)
        assert stat.S_ISDIR(os.stat(rel).st_mode)
        os.rmdir(rel)
        os.unlink(rel[:-1] + "g")
        assert not os.path.exists(rel[:-1] + "g")
        with open(rel, "w") as f:
            f.write("again")
    finally:
        os.chdir(old)
        os.close(here)
    # The backing directory holds the same tree, 46 levels down.
    bfd = deep_dir(str(mnt.backing), comp, 46)
    try:
        leaf = rel.rsplit("/", 1)[1]
        f = os.open(leaf, os.O_RDONLY, dir_fd=bfd)
        assert os.read(f, 100) == b"again"
        os.close(f)
        listing = os.open(".", os.O_RDONLY | os.O_DIRECTORY, dir_fd=bfd)
        assert os.listdir(listing) == [leaf]
        os.close(listing)
    finally:
        os.close(bfd)


def test_mkdir_honors_the_callers_umask(mnt):
    mnt.sh("umask 0; mkdir d0; umask 027; mkdir d27; umask 077; mkdir -m 0775 dm")
    for name, mode in (("d0", 0o777), ("d27", 0o750), ("dm", 0o775)):
        assert stat.S_IMODE(os.stat(mnt.path(name)).st_mode) == mode, name
        assert stat.S_IMODE(os.stat(mnt.backing / name).st_mode) == mode, name
    # Files made in it keep working as before.
    mnt.sh("umask 0; echo x > d0/f")
    assert stat.S_IMODE(os.stat(mnt.path("d0/f")).st_mode) == 0o666


@pytest.mark.parametrize("layout", ["same-dir", "two-dirs", "dirs"])
def test_rename_exchange_swaps_two_names(mnt, layout):
    mnt.sh("mkdir -p x y")
    if layout == "dirs":
        a, b = "x/da", "y/db"
        mnt.sh("mkdir %s %s; echo in-a > %s/f; echo in-b > %s/g" % (a, b, a, b))
    else:
        a, b = ("x/a", "x/b") if layout == "same-dir" else ("x/a", "y/b")
        mnt.sh("echo first > %s; echo second > %s" % (a, b))
    # Let the kernel know both names and their attributes first.
    os.stat(mnt.path(a)), os.stat(mnt.path(b))
    renameat2(mnt.path(a), mnt.path(b), RENAME_EXCHANGE)
    if layout == "dirs":
        assert mnt.sh("cat %s/g %s/f" % (a, b)).stdout == "in-b\nin-a\n"
        assert sorted(os.listdir(mnt.path(a))) == ["g"]
        assert read(mnt.backing / a / "g") == b"in-b\n"
        mnt.sh("echo new > %s/h; rm %s/f; rmdir %s 2>/dev/null || true" % (a, b, b))
        assert read(mnt.path(a + "/h")) == b"new\n"
    else:
        assert mnt.sh("cat %s %s" % (a, b)).stdout == "second\nfirst\n"
        assert os.stat(mnt.path(a)).st_size == 7
        assert read(mnt.backing / a) == b"second\n"
        assert read(mnt.backing / b) == b"first\n"
        # Both names keep working for writes too.
        mnt.sh("echo third >> %s; echo fourth > %s" % (a, b))
        assert mnt.sh("cat %s %s" % (a, b)).stdout == "second\nthird\nfourth\n"
        mnt.sh("rm %s %s" % (a, b))
        assert not (mnt.backing / a).exists() and not (mnt.backing / b).exists()


def test_rename_noreplace(mnt):
    mnt.sh("echo one > a; echo two > b")
    with pytest.raises(FileExistsError):
        renameat2(mnt.path("a"), mnt.path("b"), RENAME_NOREPLACE)
    assert mnt.sh("cat a b").stdout == "one\ntwo\n"
    renameat2(mnt.path("a"), mnt.path("c"), RENAME_NOREPLACE)
    assert mnt.sh("cat c").stdout == "one\n" and not os.path.exists(mnt.path("a"))
    assert read(mnt.backing / "c") == b"one\n"


def test_mknod_regular_file_is_an_empty_stash(mnt):
    old = os.umask(0o022)
    try:
        os.mknod(mnt.path("n"), stat.S_IFREG | 0o666)
    finally:
        os.umask(old)
    st = os.stat(mnt.path("n"))
    assert stat.S_ISREG(st.st_mode) and st.st_size == 0
    assert stat.S_IMODE(st.st_mode) == 0o644
    assert (mnt.backing / "n").is_file()
    with pytest.raises(FileExistsError):
        os.mknod(mnt.path("n"), stat.S_IFREG | 0o644)
    mnt.sh("echo filled >> n")
    assert mnt.sh("cat n").stdout == "filled\n"
    # Every other node type stays refused.
    for kind in (stat.S_IFIFO, stat.S_IFSOCK, stat.S_IFCHR):
        with pytest.raises(PermissionError):
            os.mknod(mnt.path("s"), kind | 0o644, os.makedev(1, 3))
    r = mnt.sh("mkfifo fifo", check=False)
    assert r.returncode != 0 and "not permitted" in r.stderr
    assert sorted(os.listdir(mnt.path(""))) == ["n", "schemas", "streams"]


def test_truncate_to_the_same_size_moves_mtime(mnt):
    mnt.sh("echo data > f; : > e; touch -d '2001-01-01' f e")
    before = os.stat(mnt.path("f")).st_mtime_ns
    os.truncate(mnt.path("f"), 5)           # the same size, as ext4: mtime moves
    assert os.stat(mnt.path("f")).st_mtime_ns > before
    assert os.stat(mnt.backing / "f").st_mtime_ns > before
    before = os.stat(mnt.path("e")).st_mtime_ns
    mnt.sh(": > e")                         # O_TRUNC of an empty file
    assert os.stat(mnt.path("e")).st_mtime_ns > before
    assert read(mnt.path("f")) == b"data\n"


def test_ftruncate_of_a_new_writer(mnt):
    # Extending an empty pending write went through memcpy with a NULL
    # pointer (UBSan, caught by the harness in the sanitizer build).
    fd = os.open(mnt.path("t"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.ftruncate(fd, 10)
    os.write(fd, b"ab")
    os.close(fd)
    assert read(mnt.path("t")) == b"ab" + b"\0" * 8
    assert read(mnt.backing / "t") == b"ab" + b"\0" * 8


def test_repeated_refusals_do_not_flood_the_log(env):
    d = env.mount(opts=["max_size=10"])
    tries = 2000
    r = env.sh("printf '%0100d' 0 > p", check=False)
    assert r.returncode != 0 and "too large" in r.stderr
    for _ in range(tries - 1):
        with pytest.raises(OSError) as e:
            with open(env.path("p"), "w") as f:
                f.write("0" * 100)
        assert e.value.errno == errno.EFBIG
    env.sh("echo ok > q")       # other messages still get through
    d.stop()
    lines = d.read_log().splitlines()
    refusals = [l for l in lines if "refused" in l]
    assert 1 <= len(refusals) <= 4, "\n".join(refusals[:10])
    summaries = [l for l in lines if "stashfs: repeated " in l]
    assert summaries, "\n".join(lines[:20])
    held = sum(int(l.split("repeated ")[1].split()[0]) for l in summaries)
    assert held >= tries - 1


def test_control_characters_in_names_are_escaped_in_the_log(env):
    """A name is the user's: one holding a newline must not forge a line."""
    d = env.mount(opts=["max_size=10"])
    name = "p\nstashfs: forged line\x1b[2J"
    with pytest.raises(OSError) as e:
        with open(env.path(name), "w") as f:
            f.write("0" * 100)
    assert e.value.errno == errno.EFBIG
    d.stop()
    lines = d.read_log().splitlines()
    assert not [l for l in lines if l.startswith("stashfs: forged")], lines
    refused = [l for l in lines if "refused" in l]
    assert refused and "p\\x0astashfs: forged line\\x1b[2J" in refused[0], lines


def test_a_name_being_created_is_taken(mnt):
    """The create made the name, as on ext4: mkdir, mknod, symlink and link
    of it fail with EEXIST while its first writer is open, and the writer's
    close commits its data."""
    mnt.sh("echo t > other")
    fd = os.open(mnt.path("n"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, b"first\n")
        r = mnt.sh("mkdir n; mknod n p; ln -s other n; ln other n; mkdir -p n/sub",
                   check=False)
        assert r.stderr.count("File exists") == 5, r.stderr
        assert not os.path.exists(mnt.backing / "n")
    finally:
        os.close(fd)
    assert read(mnt.path("n")) == b"first\n"
    assert read(mnt.backing / "n") == b"first\n"
    assert sorted(os.listdir(str(mnt.backing))) == [".stashfs", "n", "other", "schemas",
                                                     "streams"]


def test_rsync_xattrs_onto_the_store_and_back(mnt, tmp_path):
    """rsync -aX copies every user.* attribute both ways: the store's own
    (version, sha256) are read-only, yet setting or removing them succeeds
    and changes nothing, so a copy onto the store and a restore of a copy
    of the store both go through."""
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "a").write_bytes(b"alpha\n")
    (src / "sub" / "b").write_bytes(b"beta\n")
    os.setxattr(src / "a", "user.note", b"hi")
    run = lambda *a: subprocess.run(["rsync", "-aX"] + [str(x) for x in a],
                                    capture_output=True, text=True)
    r = run(str(src) + "/", mnt.mnt)
    assert r.returncode == 0, r.stderr
    assert read(mnt.path("sub/b")) == b"beta\n" and read(mnt.backing / "a") == b"alpha\n"
    assert os.getxattr(mnt.path("a"), "user.note") == b"hi"
    backup = tmp_path / "backup"
    r = run(str(mnt.mnt) + "/", backup)
    assert r.returncode == 0, r.stderr
    assert os.getxattr(backup / "a", "user.stash.version") == b"1"
    with open(backup / "a", "ab") as f:
        f.write(b"more\n")
    r = run(str(backup) + "/", mnt.mnt)
    assert r.returncode == 0, r.stderr
    assert read(mnt.path("a")) == b"alpha\nmore\n"
    assert os.getxattr(mnt.path("a"), "user.note") == b"hi"
    version = os.getxattr(mnt.path("a"), "user.stash.version")
    digest = os.getxattr(mnt.path("a"), "user.stash.sha256")
    assert digest == hashlib.sha256(b"alpha\nmore\n").hexdigest().encode()
    mnt.sh("setfattr -n user.stash.version -v 99 a && setfattr -x user.stash.sha256 a")
    assert os.getxattr(mnt.path("a"), "user.stash.version") == version
    assert os.getxattr(mnt.path("a"), "user.stash.sha256") == digest
    assert "user.stash.error" not in os.listxattr(mnt.path("a"))


def test_listings_start_with_dot_and_dotdot(mnt, tmp_path):
    """`ls -a` shows "." and ".." as on ext4, with the inode numbers stat
    gives, and a listing read in several calls loses no entry."""
    plain = tmp_path / "plain"
    for top in (plain, mnt.path("")):
        os.makedirs(os.path.join(top, "d", "sub"), exist_ok=True)
        for i in range(300):
            with open(os.path.join(top, "d", "f%03d" % i), "w") as f:
                f.write("%d\n" % i)
    env = dict(os.environ, LC_ALL="C")
    ls = lambda *a: subprocess.run(["ls", *a], env=env, check=True, capture_output=True,
                                   text=True).stdout.split("\n")
    for d in ("d", "d/sub"):
        assert ls("-a1", mnt.path(d)) == ls("-a1", str(plain / d)), d
    for d in ("d", "d/sub", ""):
        lines = ls("-ai1", mnt.path(d))
        inos = {l.split()[1]: int(l.split()[0]) for l in lines[:2]}
        assert inos["."] == os.stat(mnt.path(d)).st_ino, d
        assert inos[".."] == os.stat(os.path.join(mnt.path(d), "..")).st_ino, d
