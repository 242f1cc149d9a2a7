# SPDX-License-Identifier: MIT
"""A stream is never a window onto a stash its readers cannot read, and a
binding never onto a schema its binder cannot read.

Two real uids under allow_other,default_permissions: the daemon and root's
files run as root, user nobody (65534) is played by setpriv, as in
test_users.py.
"""
import hashlib
import json
import os
import shutil
import subprocess

import pytest

from stashctl_util import stashctl_bin
from test_users import NOBODY, as_nobody, public_dir  # noqa: F401 (a fixture)

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (setpriv, chown)")


# Write a metadata document and print the errno's name, as Python sees it.
META_WRITE = """python3 -c 'import errno, os, sys
try:
    with open(sys.argv[1], "w") as f:
        f.write(sys.argv[2])
except OSError as e:
    print(errno.errorcode[e.errno])' %s '%s'"""


def shared_store(env, public_dir):  # noqa: F811
    mnt = os.path.join(public_dir, "mnt")
    env.mount(opts=["allow_other", "default_permissions"], mnt=mnt)
    os.chmod(os.path.join(mnt, "streams"), 0o1777)      # as the README's "Deploying" suggests
    return mnt


def nobody_stashctl(public_dir):  # noqa: F811
    """stashctl where uid nobody can run it: the build may sit in a directory
    other users can't enter (a clone in /root is the usual case)."""
    path = os.path.join(public_dir, "stashctl")
    if not os.path.exists(path):
        shutil.copy(stashctl_bin(), path)
        os.chmod(path, 0o755)
    return path


def put(path, text, mode=None):
    with open(path, "w") as f:
        f.write(text)
    if mode is not None:
        os.chmod(path, mode)


def records(path):
    with open(path) as f:
        return [json.loads(line) for line in f]


def error_of(path):
    return os.getxattr(path, "user.stash.error").decode()


def test_link_needs_read_permission(env, public_dir):  # noqa: F811
    mnt = shared_store(env, public_dir)
    put(os.path.join(mnt, "rootdoc"), '{"secret":1}\n', 0o600)
    os.mkdir(os.path.join(mnt, "vault"), 0o700)
    put(os.path.join(mnt, "vault", "doc"), '{"secret":2}\n', 0o644)
    put(os.path.join(mnt, "pub"), '{"open":1}\n', 0o644)

    r = as_nobody("touch streams/spy && setfattr -n user.stash.linked_stash -v rootdoc streams/spy",
                  cwd=mnt)
    assert r.returncode != 0 and "Permission denied" in r.stderr
    assert "uid %d may not read rootdoc: no read permission" % NOBODY in \
        error_of(os.path.join(mnt, "streams", "spy"))
    r = as_nobody("setfattr -n user.stash.linked_stash -v vault/doc streams/spy", cwd=mnt)
    assert r.returncode != 0 and "Permission denied" in r.stderr
    assert "no search permission on directory vault" in \
        error_of(os.path.join(mnt, "streams", "spy"))
    # The metadata view and stashctl set are held to the same rule.
    os.removexattr(env.backing / "streams" / "spy", "user.stash.error")  # behind the daemon
    r = as_nobody("echo '{\"linked_stash\":\"rootdoc\"}' > .stashfs-meta/streams/spy", cwd=mnt)
    assert r.returncode != 0      # dash's echo says "I/O error" for any failed write
    assert "may not read rootdoc" in error_of(os.path.join(mnt, "streams", "spy"))
    r = as_nobody(META_WRITE % (".stashfs-meta/streams/spy", '{"linked_stash":"rootdoc"}'),
                  cwd=mnt)
    assert r.stdout == "EACCES\n", r.stderr
    r = as_nobody("%s set streams/spy link=vault/doc" % nobody_stashctl(public_dir), cwd=mnt)
    assert r.returncode != 0 and "no search permission on directory vault" in r.stderr
    assert "user.stash.linked_stash" not in os.listxattr(env.backing / "streams" / "spy")

    # Nothing of the secrets reaches the stream when they change.
    put(os.path.join(mnt, "rootdoc"), '{"secret":3}\n')
    put(os.path.join(mnt, "vault", "doc"), '{"secret":4}\n')
    assert open(os.path.join(mnt, "streams", "spy")).read() == ""

    # What nobody may read, nobody may link, and root links anything.
    r = as_nobody("setfattr -n user.stash.linked_stash -v pub streams/spy", cwd=mnt)
    assert r.returncode == 0, r.stderr
    put(os.path.join(mnt, "pub"), '{"open":2}\n')
    r = as_nobody("cat streams/spy", cwd=mnt)
    assert json.loads(r.stdout)["data"] == {"open": 2}
    os.setxattr(os.path.join(mnt, "streams", "spy"), "user.stash.linked_stash", b"rootdoc")
    assert "may not read rootdoc" in "".join(d.read_log() for d in env.daemons)


def test_a_sticky_directorys_attributes_are_its_owners(env, public_dir):  # noqa: F811
    """As setxattr(2) on ext4: in a sticky directory (`chmod 1777 streams`)
    only its owner changes the directory's own attributes, through the
    metadata view and stashctl too, while everyone still makes streams there."""
    mnt = shared_store(env, public_dir)
    r = as_nobody("setfattr -n user.stash.ttl -v 5 streams", cwd=mnt)
    assert r.returncode != 0 and "Operation not permitted" in r.stderr
    r = as_nobody(META_WRITE % (".stashfs-meta/streams/.stashfs-dir", '{"ttl":5}'), cwd=mnt)
    assert r.stdout == "EACCES\n", r.stderr
    r = as_nobody("%s set streams ttl=5" % nobody_stashctl(public_dir), cwd=mnt)
    assert r.returncode != 0
    assert "user.stash.ttl" not in os.listxattr(env.backing / "streams")
    assert as_nobody("touch streams/mine", cwd=mnt).returncode == 0
    # The owner does, as before.
    put(os.path.join(mnt, ".stashfs-meta", "streams", ".stashfs-dir"), '{"ttl":7}')
    assert os.getxattr(env.backing / "streams", "user.stash.ttl") == b"7"


def test_records_withhold_data_once_the_stash_is_closed(env, public_dir):  # noqa: F811
    mnt = shared_store(env, public_dir)
    os.mkdir(os.path.join(mnt, "box"), 0o755)
    doc = os.path.join(mnt, "box", "doc")
    put(doc, '{"v":0}\n', 0o644)
    r = as_nobody("touch streams/spy && setfattr -n user.stash.linked_stash -v box/doc streams/spy",
                  cwd=mnt)
    assert r.returncode == 0, r.stderr
    spy = os.path.join(mnt, "streams", "spy")

    put(doc, '{"v":1}\n')
    os.chmod(doc, 0o600)                        # closed to nobody: no more data
    put(doc, '{"v":2}\n')
    with open(doc + ".json", "w") as f:
        f.write('{"pin":"1234"}')
    os.chmod(doc, 0o644)                        # open again, but its directory closes
    os.chmod(os.path.join(mnt, "box"), 0o700)
    put(doc, '{"v":3}\n')
    os.chmod(os.path.join(mnt, "box"), 0o755)   # open again: data again
    put(doc, '{"v":4}\n')

    r = as_nobody("cat streams/spy", cwd=mnt)
    assert r.returncode == 0, r.stderr
    recs = [json.loads(line) for line in r.stdout.splitlines()]
    assert [x["op"] for x in recs] == ["put", "put", "merge", "put", "put"]
    assert recs[0]["data"] == {"v": 1} and recs[4]["data"] == {"v": 4}
    v2 = b'{"v":2}\n'
    assert recs[1]["data"] == {"size": len(v2), "sha256": hashlib.sha256(v2).hexdigest()}
    patch = b'{"pin":"1234"}'
    assert recs[2]["data"] == {"size": len(patch), "sha256": hashlib.sha256(patch).hexdigest()}
    assert set(recs[3]["data"]) == {"size", "sha256"}
    assert '"pin"' not in r.stdout and '"v":2' not in r.stdout and '"v":3' not in r.stdout
    # The backing file holds exactly what the mount showed.
    assert open(env.backing / "streams" / "spy").read() == r.stdout


def test_private_stream_of_a_private_stash_keeps_data(env, public_dir):  # noqa: F811
    mnt = shared_store(env, public_dir)
    doc = os.path.join(mnt, "doc")
    put(doc, '{"v":0}\n', 0o600)
    put(os.path.join(mnt, "streams", "mine"), "", 0o600)
    os.setxattr(os.path.join(mnt, "streams", "mine"), "user.stash.linked_stash", b"doc")
    put(doc, '{"v":1}\n')
    # Only root reads either: nothing to withhold.
    assert records(os.path.join(mnt, "streams", "mine"))[0]["data"] == {"v": 1}
    # Opened to everyone, the stream stops carrying the data.
    os.chmod(os.path.join(mnt, "streams", "mine"), 0o644)
    put(doc, '{"v":2}\n')
    assert set(records(os.path.join(mnt, "streams", "mine"))[1]["data"]) == {"size", "sha256"}


def test_binding_needs_read_permission_on_the_schema(env, public_dir):  # noqa: F811
    mnt = shared_store(env, public_dir)
    put(os.path.join(mnt, "schemas", "secret"),
        '{"type":"object","properties":{"pin":{"const":"1234"}}}', 0o600)
    put(os.path.join(mnt, "schemas", "open"), '{"type":"object"}', 0o644)
    os.mkdir(os.path.join(mnt, "drop"))
    os.chmod(os.path.join(mnt, "drop"), 0o777)
    r = as_nobody("echo '{}' > drop/mine && mkdir drop/sub && "
                  "setfattr -n user.stash.schema -v secret drop/mine", cwd=mnt)
    assert r.returncode != 0 and "Permission denied" in r.stderr
    assert "may not read schemas/secret" in error_of(os.path.join(mnt, "drop", "mine"))
    r = as_nobody("setfattr -n user.stash.schema -v secret drop/sub", cwd=mnt)
    assert r.returncode != 0 and "Permission denied" in r.stderr
    r = as_nobody(META_WRITE % (".stashfs-meta/drop/mine", '{"schema":"secret"}'), cwd=mnt)
    assert r.stdout == "EACCES\n", r.stderr
    r = as_nobody("%s set drop/mine schema=secret" % nobody_stashctl(public_dir), cwd=mnt)
    assert r.returncode != 0 and "may not read schemas/secret" in r.stderr
    for rel in ("drop/mine", "drop/sub"):
        assert "user.stash.schema" not in os.listxattr(env.backing / rel), rel
    # Nor through a schema of one's own that refers to it.
    os.chmod(os.path.join(mnt, "schemas"), 0o1777)
    os.removexattr(env.backing / "drop" / "mine", "user.stash.error")   # behind the daemon
    r = as_nobody("echo '{\"$ref\":\"secret\"}' > schemas/wrapper && "
                  "setfattr -n user.stash.schema -v wrapper drop/mine", cwd=mnt)
    assert r.returncode != 0 and "Permission denied" in r.stderr
    assert os.path.exists(os.path.join(mnt, "schemas", "wrapper"))
    assert "may not read schemas/secret" in error_of(os.path.join(mnt, "drop", "mine"))
    # A schema nobody can read binds as before.
    r = as_nobody("setfattr -n user.stash.schema -v open drop/mine && "
                  "getfattr -n user.stash.schema --only-values drop/mine", cwd=mnt)
    assert r.returncode == 0 and r.stdout == "open", r.stderr


def test_link_judges_supplementary_groups(env, public_dir):  # noqa: F811
    """A stash readable through a supplementary group may be linked by that
    group's members only (fuse_req_getgroups)."""
    mnt = shared_store(env, public_dir)
    doc = os.path.join(mnt, "team-doc")
    put(doc, '{"v":0}\n', 0o640)
    os.chown(doc, 0, 4242)
    link = "touch streams/s && setfattr -n user.stash.linked_stash -v team-doc streams/s"
    r = as_nobody(link, cwd=mnt)
    assert r.returncode != 0 and "Permission denied" in r.stderr
    r = subprocess.run(["setpriv", "--reuid", str(NOBODY), "--regid", str(NOBODY),
                        "--groups", "4242", "sh", "-c", link],
                       cwd=mnt, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert os.getxattr(env.backing / "streams" / "s", "user.stash.linked_stash") == b"team-doc"


def test_link_to_a_name_not_made_yet(env, public_dir):  # noqa: F811
    """A link may name a stash that does not exist yet; what is made there
    later is judged at each record like any other."""
    mnt = shared_store(env, public_dir)
    r = as_nobody("touch streams/early && "
                  "setfattr -n user.stash.linked_stash -v later streams/early", cwd=mnt)
    assert r.returncode == 0, r.stderr
    put(os.path.join(mnt, "secret"), '{"pin":"1234"}\n', 0o600)
    os.rename(os.path.join(mnt, "secret"), os.path.join(mnt, "later"))
    put(os.path.join(mnt, "later"), '{"pin":"5678"}\n')
    r = as_nobody("cat streams/early", cwd=mnt)
    recs = [json.loads(line) for line in r.stdout.splitlines()]
    assert [x["op"] for x in recs] == ["rename", "put"]
    assert '"pin"' not in r.stdout
    assert set(recs[1]["data"]) == {"size", "sha256"}


def test_a_private_new_file_stays_its_creators(env, public_dir):  # noqa: F811
    """Root writes a private new file (0600) in a shared directory; before
    its first close another user makes the same name (a new stash is no
    name for others yet).  The close that comes last wins the content, as
    for two writers of one creation, but root's content keeps root's owner
    and mode: the other user can't read it, as on ext4 where its open of
    root's file would have been refused."""
    mnt = shared_store(env, public_dir)
    os.chmod(mnt, 0o1777)
    fd = os.open(os.path.join(mnt, "secret"), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, b"root's secret")
        r = as_nobody("umask 0; touch secret && chmod 666 secret", cwd=mnt)
        assert r.returncode == 0, r.stderr
    finally:
        os.close(fd)
    st = os.stat(os.path.join(mnt, "secret"))
    assert (st.st_uid, oct(st.st_mode & 0o7777)) == (0, "0o600")
    assert open(os.path.join(mnt, "secret")).read() == "root's secret"
    r = as_nobody("cat secret", cwd=mnt)
    assert r.returncode != 0 and "Permission denied" in r.stderr
