# SPDX-License-Identifier: MIT
"""GlusterFS for the multi-daemon tests (test_gluster.py).

One replica-2 volume per test module: two bricks in a temporary directory on
this host, served by glusterd over the loopback interface, mounted twice with
`mount -t glusterfs`.  Each test gets a fresh directory of the volume, seen
through both client mounts, to use as the shared backing directory of two
stashfs daemons (-o shared).

The volume is made coherent between its two clients, as a deployment that
shares one stash store between hosts must make it: the kernel's entry and
attribute caches of the client mounts are off (entry-timeout=0, ...), and so
are the client-side caching translators (md-cache, quick-read, io-cache,
read-ahead, open-behind, write-behind, readdir-ahead).  With the defaults a
client keeps serving a name's old file for up to a second after the other
client renamed a new one over it, which stashfs sees as ESTALE.  And AFR's
eager lock is released at once after a write (cluster.post-op-delay-secs=0):
with the default of 1 s, appends to one stream through both clients, each
under stashfs's stream lock, wait about a second per hand-off.

Nothing is installed here: tools/deps.sh --test (which tools/run-tests.sh
runs) installs glusterfs-server and glusterfs-client.  What is started here
and torn down again:
  - glusterd, started with -p PIDFILE when none runs, and stopped by that PID
    (a glusterd that was already running is used and left running);
  - the volume (unique name), whose brick and self-heal processes glusterd
    starts for it: `volume stop` and `volume delete`, then any of them still
    alive is killed by PID (only processes whose command line names the
    volume);
  - the two client mounts: unmounted, their glusterfs processes waited for
    and killed by PID if they linger.

Whenever the kernel, the packages or the system make Gluster impossible (no
root, no /dev/fuse, GlusterFS not installed, glusterd will not start, the
volume can't be created or mounted), the tests are skipped with the reason.
Set STASHFS_GLUSTER=0 to skip them on purpose.
"""
import fcntl
import itertools
import os
import random
import shutil
import signal
import socket
import subprocess
import time

import pytest

PACKAGES = ("glusterfs-server", "glusterfs-client")
SBIN = "/usr/sbin:/sbin:/usr/bin:/bin"
VOL_PREFIX = "stashfs_t"
# One test run at a time uses Gluster on this host: glusterd is shared, and
# the run that started it stops it.
LOCK_PATH = "/run/lock/stashfs-gluster.lock"
LOCK_WAIT = float(os.environ.get("STASHFS_GLUSTER_LOCK_WAIT", "900"))

# Client-side caches that make one client serve stale names or stale
# metadata after the other client changed them.
COHERENT = (
    ("performance.stat-prefetch", "off"),      # md-cache
    ("performance.quick-read", "off"),
    ("performance.io-cache", "off"),
    ("performance.read-ahead", "off"),
    ("performance.open-behind", "off"),
    ("performance.write-behind", "off"),
    ("performance.readdir-ahead", "off"),
    # AFR keeps a client's eager lock on a file for post-op-delay-secs (1)
    # after its last write: two clients appending to one stream under
    # stashfs's stream lock then wait a second per hand-off.
    ("cluster.post-op-delay-secs", "0"),
)
MOUNT_OPTS = "entry-timeout=0,attribute-timeout=0,negative-timeout=0"


class Impossible(Exception):
    """Gluster can't run here; the message says why."""


def _env():
    e = dict(os.environ)
    e["PATH"] = SBIN + ":" + e.get("PATH", "")
    return e


def run(cmd, timeout=60, check=False):
    """Run @cmd, return (returncode, stdout+stderr); a timeout is rc 124."""
    try:
        r = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, timeout=timeout, env=_env())
        out = (r.returncode, r.stdout.strip())
    except subprocess.TimeoutExpired as e:
        out = (124, "timed out after %ds: %s" % (timeout, (e.stdout or b"")[-500:]))
    except OSError as e:
        out = (127, str(e))
    if check and out[0] != 0:
        raise Impossible("%s failed (%d): %s" % (" ".join(cmd), out[0], out[1][-800:]))
    return out


def gcli(*args, timeout=60, check=False):
    return run(["gluster", "--mode=script"] + list(args), timeout=timeout, check=check)


# ---- processes, by PID only ------------------------------------------------

def cmdline(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
    except OSError:
        return None


def alive(pid):
    """Running (a zombie nobody reaps counts as gone)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def pids_matching(pred):
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            argv = cmdline(int(d))
            if argv and pred(argv):
                out.append(int(d))
    return out


def stop_pid(pid, owner, timeout=10.0):
    """SIGTERM then SIGKILL @pid, if it is still the process @owner(argv) says."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        argv = cmdline(pid)
        if not alive(pid) or argv is None or not owner(argv):
            return
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.time() + timeout
        while alive(pid) and time.time() < deadline:
            time.sleep(0.05)


def wait_gone(pids, timeout):
    deadline = time.time() + timeout
    while any(alive(p) for p in pids) and time.time() < deadline:
        time.sleep(0.05)


def mounted(path):
    path = os.path.realpath(path)
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == path for line in f)


# ---- the volume -------------------------------------------------------------

class Volume:
    """A replica-2 volume on two local bricks, mounted twice."""

    def __init__(self, tmp):
        self.tmp = str(tmp)
        self.name = "%s%d_%06x" % (VOL_PREFIX, os.getpid(), random.getrandbits(24))
        self.bricks = [os.path.join(self.tmp, "brick%d" % i) for i in (1, 2)]
        self.mounts = [os.path.join(self.tmp, "client%d" % i) for i in (1, 2)]
        self.glusterd_pid = None            # set only when we started it
        self.created = False
        self.server_pids = []               # bricks and self-heal daemon of our volume
        self.client_pids = []
        self.host = None
        self.lock_fd = None
        self.setup_seconds = None

    # -- setup --

    def setup(self):
        t0 = time.time()
        if os.environ.get("STASHFS_GLUSTER", "1") == "0":
            raise Impossible("disabled by STASHFS_GLUSTER=0")
        if os.geteuid() != 0:
            raise Impossible("needs root (glusterd, mount -t glusterfs)")
        if not os.path.exists("/dev/fuse"):
            raise Impossible("no /dev/fuse: the kernel offers no FUSE to this system")
        with open("/proc/filesystems") as f:
            if "fuse" not in f.read().split():
                raise Impossible("the kernel has no fuse filesystem (modprobe fuse)")
        self.take_lock()
        self.require_installed()
        self.start_glusterd()
        self.drop_orphans()
        self.create()
        self.mount_clients()
        self.setup_seconds = time.time() - t0

    def require_installed(self):
        def have():
            return all(shutil.which(b, path=SBIN) for b in
                       ("glusterd", "gluster", "glusterfs", "mount.glusterfs"))
        if have():
            return
        raise Impossible("GlusterFS is not installed: run tools/deps.sh --test, or as root: "
                         "apt-get install %s" % " ".join(PACKAGES))

    def take_lock(self):
        """Wait until no other test run uses Gluster on this host."""
        os.makedirs(os.path.dirname(LOCK_PATH), exist_ok=True)
        self.lock_fd = os.open(LOCK_PATH, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        deadline = time.time() + LOCK_WAIT
        while True:
            try:
                fcntl.flock(self.lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.time() > deadline:
                    raise Impossible("another test run has held %s for more than %ds"
                                     % (LOCK_PATH, LOCK_WAIT))
                time.sleep(0.5)

    def start_glusterd(self):
        rc, _ = gcli("pool", "list", timeout=20)
        if rc == 0:
            return                      # a glusterd runs already: use it, leave it
        pidfile = os.path.join(self.tmp, "glusterd.pid")
        rc, out = run(["glusterd", "-p", pidfile, "-l", os.path.join(self.tmp, "glusterd.log")],
                      timeout=60)
        try:
            with open(pidfile) as f:
                self.glusterd_pid = int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            pass
        if rc != 0:
            raise Impossible("glusterd did not start (%d): %s%s" % (rc, out, self.log_tail("glusterd.log")))
        deadline = time.time() + 30
        while True:
            rc, out = gcli("pool", "list", timeout=20)
            if rc == 0:
                break
            if time.time() > deadline or (self.glusterd_pid and not alive(self.glusterd_pid)):
                raise Impossible("glusterd does not answer: %s%s" % (out, self.log_tail("glusterd.log")))
            time.sleep(0.2)

    def drop_orphans(self):
        """Delete volumes that an earlier, killed run of this fixture left."""
        rc, out = gcli("volume", "list", timeout=30)
        if rc != 0:
            return
        for vol in out.split():
            if not vol.startswith(VOL_PREFIX):
                continue
            try:
                owner = int(vol[len(VOL_PREFIX):].split("_")[0])
            except ValueError:
                continue
            if owner != os.getpid() and not alive(owner):
                gcli("volume", "stop", vol, "force", timeout=60)
                gcli("volume", "delete", vol, timeout=60)

    def hosts(self):
        """Names of this host that glusterd takes for a brick (not 127.0.0.1)."""
        names = [socket.gethostname()]
        rc, out = run(["hostname", "-I"], timeout=10)
        if rc == 0:
            names += [a for a in out.split() if ":" not in a]
        return list(dict.fromkeys(n for n in names if n))

    def create(self):
        for b in self.bricks:
            os.makedirs(b, exist_ok=True)
        errors = []
        for host in self.hosts():
            # force: the bricks are on the root filesystem; --mode=script
            # answers the replica-2 split-brain question.
            rc, out = gcli("volume", "create", self.name, "replica", "2",
                           *["%s:%s" % (host, b) for b in self.bricks], "force", timeout=120)
            if rc == 0:
                self.host = host
                self.created = True
                break
            errors.append("%s: %s" % (host, out))
        if not self.created:
            raise Impossible("cannot create a replica-2 volume: " + " | ".join(errors))
        for key, value in COHERENT:
            gcli("volume", "set", self.name, key, value, timeout=60, check=True)
        gcli("volume", "start", self.name, timeout=120, check=True)
        self.server_pids = self.our_server_pids()
        deadline = time.time() + 30
        while True:
            rc, out = gcli("volume", "status", self.name, "detail", timeout=30)
            if rc == 0 and out.count("Online") >= 2 and "Online               : N" not in out:
                break
            if time.time() > deadline:
                raise Impossible("bricks of %s not online: %s" % (self.name, out[-800:]))
            time.sleep(0.2)

    def our_server_pids(self):
        """glusterfsd/glusterfs processes glusterd runs for our volume."""
        def ours(argv):
            return os.path.basename(argv[0]) in ("glusterfsd", "glusterfs") and \
                any(a == self.name or a.startswith(self.name + ".") or a == "shd/" + self.name
                    for a in argv)
        return pids_matching(ours)

    def mount_clients(self):
        for i, m in enumerate(self.mounts):
            os.makedirs(m, exist_ok=True)
            opts = MOUNT_OPTS + ",log-file=" + os.path.join(self.tmp, "client%d.log" % (i + 1))
            rc, out = run(["mount", "-t", "glusterfs", "-o", opts,
                           "%s:/%s" % (self.host, self.name), m], timeout=120)
            self.client_pids += self.our_client_pids(m)
            if rc != 0 or not mounted(m):
                raise Impossible("mount -t glusterfs failed (%d): %s%s"
                                 % (rc, out, self.log_tail("client%d.log" % (i + 1))))
        # Both clients see the same volume, with user xattrs.
        probe = os.path.join(self.mounts[0], ".probe")
        with open(probe, "w") as f:
            f.write("x")
        try:
            os.setxattr(probe, "user.probe", b"1")
            other = os.path.join(self.mounts[1], ".probe")
            if os.getxattr(other, "user.probe") != b"1":
                raise Impossible("the two client mounts do not share xattrs")
        except OSError as e:
            raise Impossible("user xattrs on the gluster mount: %s" % e)
        finally:
            os.unlink(probe)

    def our_client_pids(self, mnt):
        mnt = os.path.realpath(mnt)
        return pids_matching(lambda argv: os.path.basename(argv[0]) == "glusterfs"
                             and argv[-1] == mnt and "--process-name" in argv)

    def log_tail(self, name, n=15):
        try:
            with open(os.path.join(self.tmp, name), errors="replace") as f:
                return "\n" + "".join(f.readlines()[-n:])
        except OSError:
            return ""

    # -- teardown --

    def teardown(self):
        """Undo what setup did, stopping only what it started.  Returns problems."""
        problems = []
        for m in self.mounts:
            if not mounted(m):
                continue
            for _ in range(50):
                rc, out = run(["umount", m], timeout=60)
                if rc == 0 or not mounted(m):
                    break
                time.sleep(0.1)
            else:
                problems.append("umount %s: %s; lazy unmount" % (m, out))
                run(["umount", "-l", m], timeout=60)
        wait_gone(self.client_pids, 10)
        for pid in self.client_pids:
            stop_pid(pid, lambda argv: os.path.basename(argv[0]) == "glusterfs")
        if self.created:
            rc, out = gcli("volume", "stop", self.name, "force", timeout=120)
            if rc != 0:
                problems.append("volume stop: " + out)
            rc, out = gcli("volume", "delete", self.name, timeout=120)
            if rc != 0:
                problems.append("volume delete: " + out)
        servers = set(self.server_pids) | set(self.our_server_pids())
        wait_gone(servers, 10)
        for pid in servers:
            stop_pid(pid, lambda argv: any(self.name in a for a in argv))
        if self.glusterd_pid:
            stop_pid(self.glusterd_pid, lambda argv: os.path.basename(argv[0]) == "glusterd")
        for b in self.bricks:
            shutil.rmtree(b, ignore_errors=True)
        if self.lock_fd is not None:
            os.close(self.lock_fd)          # releases the flock
            self.lock_fd = None
        return problems


_serial = itertools.count(1)


@pytest.fixture(scope="module")
def gluster_volume(tmp_path_factory):
    """The module's volume (a Volume), or the tests skip with the reason."""
    vol = Volume(tmp_path_factory.mktemp("gluster"))
    try:
        vol.setup()
    except Impossible as e:
        vol.teardown()
        pytest.skip("GlusterFS impossible here: %s" % e)
    except BaseException:
        vol.teardown()
        raise
    yield vol
    problems = vol.teardown()
    assert not problems, "\n".join(problems)


@pytest.fixture
def gluster(gluster_volume):
    """(a, b): one fresh directory of the volume, through client mount 1 and 2."""
    name = "t%03d" % next(_serial)
    a, b = (os.path.join(m, name) for m in gluster_volume.mounts)
    os.mkdir(a)
    deadline = time.time() + 5
    while not os.path.isdir(b):
        if time.time() > deadline:
            pytest.fail("%s made through client 1 is not seen through client 2" % name)
        time.sleep(0.05)
    yield a, b
