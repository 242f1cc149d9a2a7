# SPDX-License-Identifier: MIT
"""The podman recipe of the README ("Deploying"), run as written, with a real
engine.

The section "Step by step with podman" is read from README.md: its
containers.conf and its sh blocks (each named by its first comment line) run
with /mnt/stash, /srv/stash-backing and /var/tmp/agent-root replaced by
temporary directories.  The daemon line runs through the harness (in the
foreground, exit status 0, no sanitizer lines).  The agent image is built
once per run of this module from a debootstrap minbase root; images and
containers live in a storage under the temporary directory
(CONTAINERS_STORAGE_CONF), removed at the end.

Skipped, with the reason, only where podman cannot run: not root, podman,
runc or debootstrap missing (tools/deps.sh --test installs them), a plain
chroot, debootstrap cannot reach the Debian archive, or a trivial container
fails.
STASHFS_CONTAINERS=0 skips it on purpose.
"""
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import time

import pytest

from conftest import Daemon, mounted
from stashctl_util import readme_section

SBIN = "/usr/sbin:/usr/bin:/sbin:/bin"


def recipe():
    """{first comment line: block} of the README's podman section."""
    section = readme_section("Step by step with podman")
    named = {}
    for body in re.findall(r"^```\w+\n(.*?)^```", section, re.S | re.M):
        first = body.splitlines()[0]
        if first.startswith("# "):
            named[first[2:].split(" (")[0]] = body
    return named


class Podman:
    """The recipe's commands against a temporary store, mount and backing dir."""

    def __init__(self, tmp):
        self.tmp = tmp
        self.steps = recipe()
        self.rootfs = tmp / "agent-root"
        (tmp / "containers.conf").write_text(self.steps["/etc/containers/containers.conf"])
        (tmp / "storage.conf").write_text(
            '[storage]\ndriver = "overlay"\ngraphroot = "%s"\nrunroot = "%s"\n'
            % (tmp / "graph", tmp / "run"))
        self.env = dict(os.environ, PATH=SBIN + ":" + os.environ.get("PATH", ""),
                        CONTAINERS_CONF=str(tmp / "containers.conf"),
                        CONTAINERS_STORAGE_CONF=str(tmp / "storage.conf"))
        self.mnt = self.backing = None

    def script(self, step):
        s = self.steps[step].replace("/var/tmp/agent-root", str(self.rootfs))
        if self.mnt:
            s = s.replace("/mnt/stash", str(self.mnt))
            s = s.replace("/srv/stash-backing", str(self.backing))
        return s

    def run(self, step, timeout=120):
        return subprocess.run(["sh", "-ec", self.script(step)], capture_output=True, text=True,
                              env=self.env, timeout=timeout, stdin=subprocess.DEVNULL)

    def podman(self, *args, timeout=120):
        return subprocess.run(["podman"] + list(args), capture_output=True, text=True,
                              env=self.env, timeout=timeout, stdin=subprocess.DEVNULL)

    def cleanup(self):
        self.podman("rm", "--all", "--force", timeout=300)
        self.podman("rmi", "--all", "--force", timeout=300)
        graph = str(self.tmp / "graph") + "/"
        with open("/proc/self/mountinfo") as f:
            left = [l.split()[4] for l in f if l.split()[4].startswith(graph)]
        for path in sorted(left, reverse=True):
            subprocess.run(["umount", "-l", path], check=False)


def last_lines(text, n=3):
    """The end of a command's output, on one line (a skip reason is one line)."""
    return " / ".join(l.strip() for l in text.strip().splitlines()[-n:])[-500:]


@pytest.fixture(scope="module")
def podman(tmp_path_factory):
    if os.environ.get("STASHFS_CONTAINERS") == "0":
        pytest.skip("STASHFS_CONTAINERS=0")
    if os.geteuid() != 0:
        pytest.skip("podman with runc needs root here")
    missing = [t for t in ("podman", "runc", "debootstrap") if not shutil.which(t, path=SBIN)]
    if missing:
        pytest.skip("%s not installed (tools/deps.sh --test, or as root: apt-get install "
                    "podman runc debootstrap)" % " ".join(missing))
    if not mounted("/"):
        pytest.skip("podman cannot run in a plain chroot: it remounts / to unpack images, "
                    "and / is no mount point here")
    p = Podman(tmp_path_factory.mktemp("containers"))
    try:
        t0 = time.time()
        r = p.run("image", timeout=900)
        if r.returncode != 0:
            pytest.skip("cannot build the agent image (debootstrap needs the Debian archive): "
                        + last_lines(r.stdout + r.stderr))
        r = p.podman("--runtime", "/usr/sbin/runc", "run", "--rm", "--network", "none",
                     "--ulimit", "host", "agent-image", "true")
        if r.returncode != 0:
            pytest.skip("podman cannot run a container here: " + last_lines(r.stderr))
        p.image_seconds = time.time() - t0
        yield p
    finally:
        p.cleanup()


def fuse_mounted(path):
    with open("/proc/self/mountinfo") as f:
        return any(l.split()[4] == str(path) and " - fuse" in l for l in f)


def running_containers(p):
    r = p.podman("ps", "--quiet")
    return r.stdout.split()


def test_podman_recipe(podman, tmp_path):
    p = podman
    p.mnt, p.backing = tmp_path / "mnt" / "stash", tmp_path / "srv" / "stash-backing"
    r = p.run("shared mount point")
    assert r.returncode == 0, r.stderr
    early = daemon = None
    try:
        # Started before the store is mounted: it must see the store appear.
        early = subprocess.Popen(["sh", "-ec", p.script("early agent")], env=p.env,
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                 stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.time() + 60
        while not running_containers(p):
            assert early.poll() is None, early.stdout.read()
            assert time.time() < deadline, "the early container did not start"
            time.sleep(0.2)

        argv = shlex.split(p.script("daemon"), comments=True)
        assert argv[0] == "stashfs" and argv[1] == "-o" and argv[3:] == [str(p.backing),
                                                                          str(p.mnt)]
        daemon = Daemon(p.backing, p.mnt, tmp_path / "daemon.log", opts=argv[2].split(","))
        daemon.start()             # the bind mount already counts as a mount point
        for _ in range(200):
            if fuse_mounted(p.mnt):
                break
            time.sleep(0.05)
        assert fuse_mounted(p.mnt), daemon.read_log()
        out, _ = early.communicate(timeout=60)
        assert early.returncode == 0 and out.strip().endswith("the store is here"), out

        r = p.run("agent as root")
        assert r.returncode == 0, r.stdout + r.stderr
        lines = r.stdout.splitlines()
        assert lines[0] == "fresh start"
        assert lines[1] == "refused, exit status 1"          # the shell saw echo fail
        doc_end = lines.index("}")
        assert json.loads("\n".join(lines[2:doc_end + 1])) == {
            "task": "research", "status": "active", "next_step": "read sources"}
        records = [json.loads(l) for l in lines[doc_end + 1:]]
        assert [(x["op"], x["data"], x["uid"]) for x in records] == [
            ("merge", {"next_step": "read sources"}, 0)]
        with open(p.mnt / ".stashfs-meta" / "research-progress") as f:
            assert "is not one of the enum" in json.load(f)["error"]
        # The backing directory holds what the container committed.
        stash = p.backing / "research-progress"
        assert json.loads(stash.read_text())["next_step"] == "read sources"
        assert os.getxattr(stash, "user.stash.schema") == b"research-progress"
        assert len((p.backing / "streams" / "research-log").read_text().splitlines()) == 1

        r = p.run("agent as uid 1000")
        assert r.returncode == 0, r.stdout + r.stderr
        lines = r.stdout.splitlines()
        doc_end = lines.index("}")
        # It resumes from the first container's merges.
        assert json.loads("\n".join(lines[:doc_end + 1]))["next_step"] == "read sources"
        assert lines[doc_end + 1] == "fresh start"
        notes_end = lines.index("}", doc_end + 1)
        assert json.loads("\n".join(lines[doc_end + 2:notes_end + 1])) == {
            "owner": "agent-1000", "step": 2}
        assert lines[notes_end + 1:] == ["refused, exit status 2"]
        assert "Permission denied" in r.stderr
        notes = p.backing / "team" / "notes"
        assert (notes.stat().st_uid, notes.stat().st_gid) == (1000, 1000)
        assert json.loads(stash.read_text())["status"] == "active"
    finally:
        if early and early.poll() is None:
            os.killpg(early.pid, signal.SIGKILL)        # its own group: sh and podman
            early.wait()
        if daemon:
            rc = daemon.stop()
            assert rc == 0, daemon.read_log()
            assert not daemon.bad_lines(), daemon.read_log()
        subprocess.run(["umount", "-l", str(p.mnt)], check=False)
