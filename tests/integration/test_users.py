# SPDX-License-Identifier: MIT
"""Containers and users: other mount namespaces, other uids, allow_other.

A container is a mount namespace: `unshare -m` stands in for one here, a
bind mount for `docker run -v`.  Other users are played by `setpriv` with
uid/gid 65534 (nobody).  The daemon runs as root, as the harness starts it.
"""
import json
import os
import shutil
import subprocess
import tempfile

import pytest

from conftest import mounted

NOBODY = 65534

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (namespaces, setpriv)")


def need(tool):
    if not shutil.which(tool):
        pytest.skip("%s not installed (util-linux)" % tool)


def need_namespaces():
    """A mount namespace whose root can become a slave: not inside a plain
    chroot, where "/" is no mount point and the kernel refuses."""
    need("unshare")
    r = subprocess.run(["unshare", "-m", "--propagation", "slave", "true"],
                       capture_output=True, text=True, timeout=30)
    if r.returncode != 0:
        pytest.skip("no mount namespace here (%s)" % r.stderr.strip())


@pytest.fixture
def public_dir():
    """A directory every uid can traverse (pytest's tmp dirs are 0700).  Ask for
    it before `env`, so that the daemons are stopped before it goes."""
    d = tempfile.mkdtemp(prefix="stashfs-users-", dir="/tmp")
    os.chmod(d, 0o755)
    yield d
    for _ in range(3):
        busy = [p for p in (os.path.join(d, e) for e in os.listdir(d)) if mounted(p)]
        for p in busy:
            subprocess.run(["umount", "-l", p], stderr=subprocess.DEVNULL)
    shutil.rmtree(d, ignore_errors=True)


def as_nobody(script, cwd="/"):
    need("setpriv")
    return subprocess.run(["setpriv", "--reuid", str(NOBODY), "--regid", str(NOBODY),
                           "--clear-groups", "sh", "-c", script],
                          cwd=cwd, capture_output=True, text=True, timeout=60)


# ---- (a) another mount namespace -----------------------------------------

def test_second_namespace_through_a_bind_mount(mnt, tmp_path):
    """Like `docker run -v MNT:/stash`: a bind mount in a private namespace."""
    need_namespaces()
    view = tmp_path / "view"
    view.mkdir()
    mnt.sh("echo '{\"from\":\"host\"}' > p")
    script = """
set -e
mount --bind "$1" "$2"
cat "$2/p"
echo '{"from":"container","n":1}' > "$2/p.json"
echo written-in-ns > "$2/q"
mkdir -p "$2/team"
echo '{"k":2}' > "$2/team/r.json"
cat "$2/team/r"
"""
    r = subprocess.run(["unshare", "-m", "--propagation", "slave", "sh", "-c", script, "ns",
                        str(mnt.mnt), str(view)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert '"from":"host"' in r.stdout and '"k": 2' in r.stdout
    # The bind mount stayed inside the namespace ...
    assert not mounted(view)
    # ... and what it wrote is in the store.
    assert json.loads((mnt.mnt / "p").read_text()) == {"from": "container", "n": 1}
    assert (mnt.mnt / "q").read_text() == "written-in-ns\n"
    assert (mnt.backing / "team" / "r").exists()


def test_mount_made_later_propagates_into_a_slave_namespace(env, tmp_path):
    """Like `-v /mnt/stash:/stash:rslave`: the store is mounted after the container
    started, and a restarted daemon's new mount reaches it too."""
    need_namespaces()
    shared = tmp_path / "shared"
    shared.mkdir()
    subprocess.run(["mount", "--bind", str(shared), str(shared)], check=True)
    subprocess.run(["mount", "--make-shared", str(shared)], check=True)
    mnt = shared / "stash"
    mnt.mkdir()
    ready, go = tmp_path / "ready", tmp_path / "go"
    script = """
touch "$2"
while [ ! -e "$3" ]; do sleep 0.05; done
cat "$1/p" && echo x > "$1/from-ns"
"""
    ns = subprocess.Popen(["unshare", "-m", "--propagation", "slave", "sh", "-c", script,
                           "ns", str(mnt), str(ready), str(go)],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for _ in range(200):
            if ready.exists():
                break
            subprocess.run(["sleep", "0.05"])
        assert ready.exists()
        # The namespace exists before the store is mounted.
        d = env.mount(mnt=mnt)
        (mnt / "p").write_text("mounted after the namespace\n")
        go.touch()
        out, err = ns.communicate(timeout=60)
        assert ns.returncode == 0, err
        assert out == "mounted after the namespace\n"
        assert (mnt / "from-ns").read_text() == "x\n"
        assert d.stop() == 0
    finally:
        if ns.poll() is None:
            ns.kill()
            ns.wait()
        for d in env.daemons:
            d.stop()
        subprocess.run(["umount", "-l", str(shared)], check=False)


# ---- (b) allow_other, default_permissions --------------------------------

def test_allow_other_respects_modes(public_dir, env):
    mnt = os.path.join(public_dir, "mnt")
    env.mount(opts=["allow_other", "default_permissions"], mnt=mnt)
    for name, mode in (("ro", 0o644), ("rw", 0o666)):
        with open(os.path.join(mnt, name), "w") as f:
            f.write('{"owner":"root"}\n')
        os.chmod(os.path.join(mnt, name), mode)

    r = as_nobody("cat ro", cwd=mnt)
    assert r.returncode == 0 and r.stdout == '{"owner":"root"}\n'
    r = as_nobody("echo '{\"x\":1}' > ro", cwd=mnt)
    assert r.returncode != 0 and "Permission denied" in r.stderr
    r = as_nobody("echo '{\"x\":1}' > ro.json", cwd=mnt)      # nor through the view
    assert r.returncode != 0 and "Permission denied" in r.stderr
    r = as_nobody("setfattr -n user.stash.ttl -v 5 ro", cwd=mnt)
    assert r.returncode != 0
    with open(os.path.join(mnt, "ro")) as f:
        assert f.read() == '{"owner":"root"}\n'

    r = as_nobody("echo '{\"x\":1}' > rw.json && cat rw", cwd=mnt)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == {"owner": "root", "x": 1}
    # Replaced by somebody else, the stash keeps its owner and mode.
    st = os.stat(os.path.join(mnt, "rw"))
    assert (st.st_uid, st.st_gid, st.st_mode & 0o7777) == (0, 0, 0o666)
    r = as_nobody("rm rw", cwd=mnt)              # the directory is root's 0755
    assert r.returncode != 0 and "Permission denied" in r.stderr


def test_new_objects_belong_to_their_creator(public_dir, env):
    mnt = os.path.join(public_dir, "mnt")
    env.mount(opts=["allow_other", "default_permissions"], mnt=mnt)
    os.mkdir(os.path.join(mnt, "drop"))
    os.chmod(os.path.join(mnt, "drop"), 0o777)
    r = as_nobody("umask 022; echo mine > drop/mine && mkdir drop/sub && "
                  "echo '{\"a\":1}' > drop/sub/doc && stat -c '%u:%g %a' drop/mine "
                  "drop/sub drop/sub/doc", cwd=mnt)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split("\n")[:3] == ["%d:%d 644" % (NOBODY, NOBODY),
                                        "%d:%d 755" % (NOBODY, NOBODY),
                                        "%d:%d 644" % (NOBODY, NOBODY)]
    # The backing files say the same, so ownership survives a restart.
    for rel in ("drop/mine", "drop/sub", "drop/sub/doc"):
        st = os.stat(env.backing / rel)
        assert (st.st_uid, st.st_gid) == (NOBODY, NOBODY), rel
    # Theirs to change, not root's files beside them.
    with open(os.path.join(mnt, "drop", "roots"), "w") as f:
        f.write("root's\n")
    os.chmod(os.path.join(mnt, "drop", "roots"), 0o644)
    r = as_nobody("echo more >> drop/mine && cat drop/mine && echo no > drop/roots", cwd=mnt)
    assert r.stdout == "mine\nmore\n" and "Permission denied" in r.stderr


def test_view_creates_a_stash_with_default_permissions(public_dir, env):
    mnt = os.path.join(public_dir, "mnt")
    env.mount(opts=["allow_other", "default_permissions"], mnt=mnt)
    os.chmod(mnt, 0o777)
    r = as_nobody("echo '{\"a\":1}' > new.json && stat -c '%u' new", cwd=mnt)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "%d\n" % NOBODY


def test_view_merges_into_an_existing_stash_with_default_permissions(public_dir, env):
    """The workaround for the bug above: create the stash, then merge."""
    mnt = os.path.join(public_dir, "mnt")
    env.mount(opts=["allow_other", "default_permissions"], mnt=mnt)
    os.chmod(mnt, 0o777)
    r = as_nobody(": > p && echo '{\"a\":1}' > p.json && echo '{\"b\":2}' > p.json && cat p",
                  cwd=mnt)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == {"a": 1, "b": 2}


# ---- (c) without allow_other ---------------------------------------------

def test_other_uid_is_refused_without_allow_other(public_dir, env):
    mnt = os.path.join(public_dir, "mnt")
    env.mount(mnt=mnt)
    with open(os.path.join(mnt, "p"), "w") as f:
        f.write("secret")
    os.chmod(os.path.join(mnt, "p"), 0o666)
    for cmd in ("stat %s", "ls %s", "cat %s/p", "echo x > %s/q"):
        r = as_nobody(cmd % mnt)
        assert r.returncode != 0, cmd
        assert "Permission denied" in r.stderr, (cmd, r.stderr)
    assert not os.path.exists(os.path.join(mnt, "q"))
    # The daemon refuses allow_other without default_permissions.
    r = subprocess.run([env.daemons[0].proc.args[0], "-f", "-o", "allow_other",
                        str(env.tmp / "b2"), str(env.tmp)], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode != 0 and "default_permissions" in r.stderr


def test_owner_mapping_options(public_dir, env):
    """uid=, gid=, umask= show one owner and mask (containers with other uids)."""
    mnt = os.path.join(public_dir, "mnt")
    env.mount(opts=["uid=1234", "gid=4321", "umask=027", "allow_other", "default_permissions"],
              mnt=mnt)
    subprocess.run(["sh", "-c", "echo x > f && mkdir d"], cwd=mnt, check=True)
    for name in ("f", "d"):
        st = os.stat(os.path.join(mnt, name))
        assert (st.st_uid, st.st_gid) == (1234, 4321)
        assert st.st_mode & 0o027 == 0
    assert os.stat(env.backing / "f").st_uid == os.getuid()     # stored owner untouched
    # The mapped uid can write what it is shown to own.
    f = os.path.join(mnt, "f")
    r = subprocess.run(["setpriv", "--reuid", "1234", "--regid", "4321", "--clear-groups",
                        "sh", "-c", "echo mine > %s && cat %s" % (f, f)],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and r.stdout == "mine\n", r.stderr
