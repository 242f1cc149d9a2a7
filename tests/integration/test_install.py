# SPDX-License-Identifier: MIT
"""`meson install` puts the daemon, stashctl, the man pages and the systemd
unit where a system looks for them, and what it installs works.

The tree is built afresh with --prefix=/usr and installed with --destdir
into a temporary directory: nothing outside it is touched.  systemd is not
running here, so the unit is checked with `systemd-analyze verify` and its
commands are run the way systemd would run them.
"""
import os
import re
import shlex
import shutil
import signal
import subprocess
import time

import pytest

from conftest import mounted
from stashctl_util import readme_section, source_root

ROOT = source_root()
PREFIX = "/usr"
UNIT = "lib/systemd/system/stashfs@.service"
# Each manual page sits beside the program it describes.
MAN_SOURCE = {"stashfs.1": "fs", "stashctl.1": "tools"}


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    if not shutil.which("meson") or not shutil.which("ninja"):
        pytest.skip("meson and ninja are needed to install")
    tmp = tmp_path_factory.mktemp("install")
    build, dest = tmp / "build", tmp / "dest"
    r = subprocess.run(["meson", "setup", "--prefix=" + PREFIX, str(build), ROOT],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    r = subprocess.run(["meson", "install", "-C", str(build), "--destdir", str(dest)],
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout + r.stderr
    return dest


def inst(dest, rel):
    return dest / PREFIX.lstrip("/") / rel


def test_files_land(installed):
    for rel in ("bin/stashfs", "bin/stashctl"):
        path = inst(installed, rel)
        assert path.is_file() and os.access(path, os.X_OK), rel
    for rel in ("share/man/man1/stashfs.1", "share/man/man1/stashctl.1", UNIT):
        assert inst(installed, rel).is_file(), rel
    r = subprocess.run([str(inst(installed, "bin/stashfs")), "--version"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and r.stdout.startswith("stashfs ")
    r = subprocess.run([str(inst(installed, "bin/stashctl")), "--version"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and r.stdout.startswith("stashctl ")
    # The unit runs the daemon from where it was installed.
    unit = inst(installed, UNIT).read_text()
    assert re.search(r"^ExecStart=%s/bin/stashfs -f " % PREFIX, unit, re.M)
    assert not re.search(r"^Type=notify", unit, re.M)    # libfuse 3.14 has no sd_notify
    # Nothing else escapes the prefix.
    assert sorted(os.listdir(installed)) == [PREFIX.strip("/")]


def need(tool, package):
    if not shutil.which(tool):
        pytest.skip("%s not installed (apt-get install %s)" % (tool, package))


@pytest.mark.parametrize("page", ["stashfs.1", "stashctl.1"])
def test_man_page_renders_without_warnings(page, installed):
    need("man", "man-db")
    need("groff", "groff-base")
    for path in (os.path.join(ROOT, MAN_SOURCE[page], page),
                 str(inst(installed, "share/man/man1/" + page))):
        r = subprocess.run(["man", "--warnings", "-l", path], capture_output=True, text=True,
                           timeout=60, env=dict(os.environ, MANWIDTH="80", LC_ALL="C.UTF-8"))
        assert r.returncode == 0
        assert r.stderr == "", r.stderr
        name = page.split(".")[0]
        assert r.stdout.startswith(name.upper() + "(1)")
        for section in ("NAME", "SYNOPSIS", "DESCRIPTION", "EXIT STATUS", "SEE ALSO"):
            assert re.search(r"^%s$" % section, r.stdout, re.M), section
    # man finds the installed pages by name.
    r = subprocess.run(["man", "-w", page.split(".")[0]], capture_output=True, text=True,
                       env=dict(os.environ, MANPATH=str(inst(installed, "share/man"))))
    assert r.returncode == 0 and r.stdout.strip().startswith(str(installed))


def test_man_page_lists_every_daemon_option(installed):
    """Every -o option of `stashfs --help` is documented in stashfs(1)."""
    need("man", "man-db")
    help_text = subprocess.run([str(inst(installed, "bin/stashfs")), "--help"],
                               capture_output=True, text=True, timeout=30).stdout
    opts = set(re.findall(r"^\s+-o ([a-z_]+)", help_text, re.M))
    assert {"persistent", "sync", "max_size", "json_indent", "allow_other"} <= opts
    page = subprocess.run(["man", "-l", os.path.join(ROOT, "fs", "stashfs.1")],
                          capture_output=True, text=True, timeout=60,
                          env=dict(os.environ, MANWIDTH="200", LC_ALL="C.UTF-8")).stdout
    missing = [o for o in sorted(opts) if not re.search(r"-o %s\b" % o, page)]
    assert not missing, "undocumented options: %s" % missing
    for xattr in ("persistent", "ttl", "expires", "schema", "linked_stash", "version",
                  "sha256", "error"):
        assert "user.stash." + xattr in page


def escape_path(path):
    return subprocess.run(["systemd-escape", "-p", path], capture_output=True, text=True,
                          check=True).stdout.strip()


def test_unit_verifies(installed, tmp_path):
    need("systemd-analyze", "systemd")
    # verify checks that ExecStart= exists: point it at the installed copy.
    text = inst(installed, UNIT).read_text().replace(
        PREFIX + "/bin/stashfs", str(inst(installed, "bin/stashfs")))
    (tmp_path / "stashfs@.service").write_text(text)
    name = "stashfs@%s.service" % escape_path("/mnt/stash")
    r = subprocess.run(["systemd-analyze", "verify", "./" + name], cwd=str(tmp_path),
                       capture_output=True, text=True, timeout=60,
                       env=dict(os.environ, MANPATH=str(inst(installed, "share/man")) + ":",
                                SYSTEMD_LOG_LEVEL="notice"))
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout + r.stderr == ""


def test_deployment_mount_unit_verifies(tmp_path):
    """The .mount unit of the README's "Deploying" is a valid unit under its own name."""
    need("systemd-analyze", "systemd")
    blocks = re.findall(r"^```ini\n(.*?)^```", readme_section("Deploying"), re.S | re.M)
    units = [b for b in blocks if b.startswith("# /etc/systemd/system/")]
    assert units
    for b in units:
        name = b.splitlines()[0].rsplit("/", 1)[1]
        (tmp_path / name).write_text(b)
        r = subprocess.run(["systemd-analyze", "verify", "--man=no", "./" + name],
                           cwd=str(tmp_path), capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stdout + r.stderr


def unit_commands(text, specifiers, environ):
    """ExecStartPre/ExecStart/ExecStartPost of @text as argv lists, expanded as systemd does."""
    env = {}
    cmds = {"ExecStartPre": [], "ExecStart": [], "ExecStartPost": [], "ExecStop": []}
    for line in text.splitlines():
        if "=" not in line or line.startswith("#"):
            continue
        key, value = line.split("=", 1)
        for spec, repl in specifiers.items():
            value = value.replace(spec, repl)
        if key == "Environment":
            k, v = value.split("=", 1)
            env[k] = v
        elif key in cmds:
            cmds[key].append(value)
    env.update(environ)                  # what /etc/stashfs/<instance>.conf would set

    def expand(word):
        if re.fullmatch(r"\$[A-Za-z_]\w*", word):          # $VAR: split into words
            return env.get(word[1:], "").split()
        word = re.sub(r"\$\{([A-Za-z_]\w*)\}", lambda m: env.get(m.group(1), ""), word)
        return [word.replace("$$", "$")]

    return {k: [[w for word in shlex.split(c) for w in expand(word)] for c in v]
            for k, v in cmds.items()}


def test_unit_commands_work(installed, tmp_path):
    """Run the unit's commands like systemd: pre, start, wait for the mount, stop."""
    need("systemd-escape", "systemd")
    mnt = str(tmp_path / "srv" / "stash")             # ExecStartPre creates it
    backing = str(tmp_path / "backing")
    inst_name = escape_path(mnt)
    text = inst(installed, UNIT).read_text().replace(
        PREFIX + "/bin/stashfs", str(inst(installed, "bin/stashfs")))
    env = {"STASHFS_BACKING": backing, "STASHFS_OPTIONS": "-o json_indent=0"}
    cmds = unit_commands(text, {"%f": mnt, "%i": inst_name, "%%": "%"}, env)
    assert len(cmds["ExecStart"]) == 1 and len(cmds["ExecStop"]) == 1
    for argv in cmds["ExecStartPre"]:
        subprocess.run(argv, check=True, timeout=30)
    assert os.path.isdir(mnt)
    log = open(tmp_path / "daemon.log", "wb")
    proc = subprocess.Popen(cmds["ExecStart"][0], stdout=log, stderr=log,
                            stdin=subprocess.DEVNULL)
    try:
        for argv in cmds["ExecStartPost"]:
            r = subprocess.run(argv, capture_output=True, text=True, timeout=30)
            assert r.returncode == 0, r.stderr
        assert mounted(mnt)                # started = mounted, as ExecStartPost promises
        with open(os.path.join(mnt, "p.json"), "w") as f:
            f.write('{"via":"unit"}')
        with open(os.path.join(mnt, "p")) as f:
            assert f.read() == '{"via":"unit"}\n'        # json_indent=0 reached the daemon
        # systemctl stop: ExecStop with $MAINPID; systemd reaps the daemon meanwhile.
        env["MAINPID"] = str(proc.pid)
        stop = unit_commands(text, {"%f": mnt, "%i": inst_name, "%%": "%"}, env)["ExecStop"][0]
        stopper = subprocess.Popen(stop, stderr=subprocess.PIPE, text=True)
        assert proc.wait(timeout=30) == 0
        assert stopper.wait(timeout=30) == 0, stopper.stderr.read()
        for _ in range(100):
            if not mounted(mnt):
                break
            time.sleep(0.05)
        assert not mounted(mnt)
        assert open(os.path.join(backing, "p")).read() == '{"via":"unit"}\n'
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if mounted(mnt):
            subprocess.run(["fusermount3", "-u", "-z", mnt])
        log.close()


def test_sigterm_is_a_clean_stop(env):
    env.mount()
    env.sh("echo x > p")
    d = env.daemons[-1]
    d.proc.send_signal(signal.SIGTERM)
    rc = d.proc.wait(timeout=30)
    d.proc = None
    d.log.close()
    for _ in range(100):
        if not mounted(env.mnt):
            break
        time.sleep(0.05)
    assert not mounted(env.mnt)      # this part works: the mount is gone
    assert rc == 0
