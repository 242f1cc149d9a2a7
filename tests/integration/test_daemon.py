# SPDX-License-Identifier: MIT
"""The daemon's command line, default backing directory and mount helper."""
import os
import shutil
import subprocess
import time

from conftest import Daemon, mounted, stashfs_bin


def run(*args, **kw):
    return subprocess.run([stashfs_bin()] + list(args), capture_output=True, text=True,
                          timeout=30, **kw)


def test_help_and_version():
    r = run("--help")
    assert r.returncode == 0
    for opt in ("persistent=", "sync=", "max_size=", "json_indent=", "BACKING", "MOUNTPOINT"):
        assert opt in r.stdout
    r = run("--version")
    assert r.returncode == 0 and r.stdout.startswith("stashfs ")


def test_usage_errors(tmp_path):
    r = run()
    assert r.returncode != 0 and "usage" in r.stderr
    r = run("-o", "allow_other", str(tmp_path / "b"), str(tmp_path))
    assert r.returncode != 0 and "default_permissions" in r.stderr
    r = run("-o", "sync=sometimes", str(tmp_path / "b"), str(tmp_path))
    assert r.returncode != 0 and "sync" in r.stderr


def test_default_backing_is_xdg_data_home(tmp_path):
    mnt = tmp_path / "m"
    mnt.mkdir()
    env = dict(os.environ, XDG_DATA_HOME=str(tmp_path / "xdg"))
    p = subprocess.Popen([stashfs_bin(), "-f", str(mnt)], env=env,
                         stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    try:
        for _ in range(250):
            if os.path.ismount(mnt):
                break
            assert p.poll() is None, p.stderr.read()
            time.sleep(0.02)
        (mnt / "hello").write_text("world")
        assert (tmp_path / "xdg" / "stashfs" / "hello").read_text() == "world"
    finally:
        subprocess.run(["fusermount3", "-u", str(mnt)])
        assert p.wait(timeout=20) == 0


def test_refuses_backing_without_user_xattrs(tmp_path):
    # ramfs takes no user xattrs: the daemon must say so, not mount.
    mnt, ram = tmp_path / "m", tmp_path / "ram"
    mnt.mkdir()
    ram.mkdir()
    subprocess.run(["mount", "-t", "ramfs", "none", str(ram)], check=True)
    try:
        r = run("-f", str(ram), str(mnt))
    finally:
        subprocess.run(["umount", str(ram)], check=True)
    assert r.returncode != 0
    assert "does not take user xattrs" in r.stderr
    assert not os.path.ismount(mnt)


def daemons_serving(mnt):
    """PIDs of the stashfs daemons whose command line names @mnt (this
    test's own temporary directory, so only what the test started)."""
    pids = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            argv = open("/proc/%s/cmdline" % pid, "rb").read().split(b"\0")
        except OSError:
            continue
        if os.path.basename(argv[0]) == b"stashfs" and str(mnt).encode() in argv:
            pids.append(int(pid))
    return pids


def helper_mount(args, mnt):
    r = subprocess.run(["mount"] + args, capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    daemons = daemons_serving(mnt)
    try:
        assert os.path.ismount(mnt)
        assert len(daemons) == 1, daemons
        (mnt / "p").write_text("via mount(8)")
        assert (mnt / "p").read_text() == "via mount(8)"
        assert "json_indent" not in open("/proc/mounts").read()
    finally:
        subprocess.run(["umount", str(mnt)], check=True)
    assert not os.path.ismount(mnt)
    # The daemon forked into the background exits once unmounted.
    for _ in range(200):
        if not daemons_serving(mnt):
            break
        time.sleep(0.05)
    left = daemons_serving(mnt)
    for pid in left:
        os.kill(pid, 9)
    assert not left, "daemon still running after umount"


def test_mount_helper_program_path(tmp_path):
    """mount -t fuse 'PROGRAM#BACKING', with fstab-only options dropped."""
    backing, mnt = tmp_path / "b", tmp_path / "m"
    mnt.mkdir()
    helper_mount(["-t", "fuse", stashfs_bin() + "#" + str(backing), str(mnt),
                  "-o", "json_indent=4,nofail,_netdev,x-systemd.automount"], mnt)
    assert (backing / "p").read_text() == "via mount(8)"


def test_mount_helper_type(tmp_path):
    """mount -t fuse.stashfs BACKING MNT: mount(8) finds stashfs on the system PATH.

    Only where the user asked for the system install (STASHFS_SYSTEM_INSTALL=1
    tools/run-tests.sh runs `meson install` first): the tests never install
    behind the user's back, and a stashfs left on the PATH by an older install
    is not the one under test.
    """
    import pytest
    if os.environ.get("STASHFS_SYSTEM_INSTALL") != "1":
        pytest.skip("mount -t fuse.stashfs needs stashfs installed on the system, done only "
                    "when asked (STASHFS_SYSTEM_INSTALL=1 tools/run-tests.sh); "
                    "mount -t fuse 'PATH#BACKING' ran instead (test_mount_helper_program_path)")
    found = shutil.which("stashfs", path="/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin")
    assert found, "STASHFS_SYSTEM_INSTALL=1 but no stashfs on the system PATH"
    r = subprocess.run([found, "--version"], capture_output=True, text=True, timeout=30)
    built = subprocess.run([stashfs_bin(), "--version"], capture_output=True, text=True,
                           timeout=30)
    assert r.stdout == built.stdout, "%s is another version than the build under test" % found
    backing, mnt = tmp_path / "b", tmp_path / "m"
    backing.mkdir()
    mnt.mkdir()
    helper_mount(["-t", "fuse.stashfs", str(backing), str(mnt), "-o", "nofail,sync=never"], mnt)
    assert (backing / "p").read_text() == "via mount(8)"


def in_chroot():
    """Is "/" no mount point of ours (a plain chroot)?"""
    return not mounted("/")


def test_auto_unmount_after_crash(env):
    if in_chroot():
        import pytest
        pytest.skip("inside a chroot fusermount3 cannot match the mount it watches")
    d = env.mount()
    env.sh("echo x > f")
    d.proc.kill()
    d.proc.wait()
    for _ in range(600):
        if not mounted(env.mnt):
            break
        time.sleep(0.05)
    # auto_unmount: no "Transport endpoint is not connected" left behind
    # (a dead mount is invisible to stat, so ask the mount table).
    assert not mounted(env.mnt)
    assert os.listdir(env.mnt) == []
    d.proc = None
    d.log.close()

