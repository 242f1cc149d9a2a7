# SPDX-License-Identifier: MIT
"""Mount harness for the integration tests.

Every test gets a fresh backing directory and mount point under a temporary
directory, a stashfs started in the foreground, and a teardown that
unmounts, requires exit status 0 and fails on sanitizer or error lines in
the daemon's stderr.  Only processes started here are ever stopped.
"""
import os
import signal
import subprocess
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def stashfs_bin():
    path = os.environ.get("STASHFS_BIN")
    if path:
        return path
    for build in ("build", "build-asan"):
        cand = os.path.join(ROOT, build, "fs", "stashfs")
        if os.path.exists(cand):
            return cand
    raise RuntimeError("set STASHFS_BIN or build into ./build")


def mounted(path):
    """Is anything mounted on @path (also a dead FUSE mount, which stat can't see)?"""
    path = os.path.realpath(path)
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == path for line in f)


BAD_LINES = ("AddressSanitizer", "LeakSanitizer", "runtime error:", "Segmentation fault")


class Daemon:
    """One stashfs process serving `backing` on `mnt`."""

    def __init__(self, backing, mnt, logpath, opts=(), args=()):
        self.backing = str(backing)
        self.mnt = str(mnt)
        self.logpath = str(logpath)
        self.opts = list(opts)
        self.args = list(args)
        self.proc = None

    def start(self, timeout=10):
        cmd = [stashfs_bin(), "-f"] + self.args
        if self.opts:
            cmd += ["-o", ",".join(self.opts)]
        cmd += [self.backing, self.mnt]
        self.log = open(self.logpath, "ab")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=self.log,
                                     stdin=subprocess.DEVNULL)
        deadline = time.time() + timeout
        while not os.path.ismount(self.mnt):
            if self.proc.poll() is not None:
                raise RuntimeError("stashfs exited with %d:\n%s"
                                   % (self.proc.returncode, self.read_log()))
            if time.time() > deadline:
                self.kill()
                raise RuntimeError("stashfs did not mount:\n" + self.read_log())
            time.sleep(0.02)
        return self

    def read_log(self):
        with open(self.logpath, "rb") as f:
            return f.read().decode(errors="replace")

    def stop(self, timeout=30):
        """Unmount cleanly; the daemon must exit 0."""
        if self.proc is None:
            return 0
        if mounted(self.mnt):
            subprocess.run(["fusermount3", "-u", self.mnt], check=False,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            rc = -9
        self.proc = None
        self.log.close()
        return rc

    def kill(self):
        """SIGKILL the daemon (crash), then clear the dead mount."""
        if self.proc is None:
            return
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self.proc = None
        self.log.close()
        # auto_unmount clears the dead mount soon; help it along.
        for _ in range(200):
            if not mounted(self.mnt):
                break
            subprocess.run(["fusermount3", "-u", "-z", self.mnt], check=False,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(0.05)

    def bad_lines(self):
        return [l for l in self.read_log().splitlines()
                if any(b in l for b in BAD_LINES)]

    def pid(self):
        return self.proc.pid


class Env:
    """What a test sees: the mount, the backing directory, helpers."""

    def __init__(self, tmp_path):
        self.tmp = tmp_path
        self.backing = tmp_path / "backing"
        self.mnt = tmp_path / "mnt"
        self.mnt.mkdir()
        self.daemons = []

    def mount(self, opts=(), mnt=None, backing=None, args=()):
        mnt = mnt or self.mnt
        os.makedirs(mnt, exist_ok=True)
        d = Daemon(backing or self.backing, mnt,
                   self.tmp / ("daemon%d.log" % len(self.daemons)), opts, args)
        self.daemons.append(d)
        return d.start()

    def path(self, name):
        return os.path.join(str(self.mnt), name)

    def sh(self, script, check=True, **kw):
        """Run a shell snippet in the mount, as a user would."""
        return subprocess.run(["bash", "-c", script], cwd=str(self.mnt), check=check,
                              capture_output=True, text=True, **kw)


@pytest.fixture
def env(tmp_path):
    e = Env(tmp_path)
    yield e
    problems = []
    for d in e.daemons:
        running = d.proc is not None
        rc = d.stop()
        if running and rc != 0:
            problems.append("daemon exited with %d" % rc)
        problems += d.bad_lines()
    assert not problems, "\n".join(problems) + "\n" + "\n".join(d.read_log() for d in e.daemons)


@pytest.fixture
def mnt(env):
    """A mounted store with default options."""
    env.mount()
    return env
