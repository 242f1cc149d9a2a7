# SPDX-License-Identifier: MIT
"""Persistence, TTL and the xattr interface (DESIGN 2.5)."""
import errno
import hashlib
import json
import os
import time

import pytest


def read(p):
    with open(p, "rb") as f:
        return f.read()


def xget(mnt, name, attr):
    return os.getxattr(mnt.path(name), attr).decode()


def wait_gone(path, limit):
    start = time.monotonic()
    while os.path.exists(path) and time.monotonic() - start < limit:
        time.sleep(0.05)
    return time.monotonic() - start


def test_version_and_sha256_change_exactly_on_commits(mnt):
    mnt.sh("echo one > p")
    v1, h1 = int(xget(mnt, "p", "user.stash.version")), xget(mnt, "p", "user.stash.sha256")
    assert h1 == hashlib.sha256(b"one\n").hexdigest()
    mnt.sh("echo two > p")
    v2 = int(xget(mnt, "p", "user.stash.version"))
    assert v2 == v1 + 1 and xget(mnt, "p", "user.stash.sha256") == hashlib.sha256(b"two\n").hexdigest()
    # A refused write commits nothing: same version, same hash.
    mnt.sh("echo '{}' > schemas/obj && echo '{\"type\":\"object\"}' > schemas/obj")
    mnt.sh("echo '{}' > j && setfattr -n user.stash.schema -v obj j")
    vj = xget(mnt, "j", "user.stash.version")
    r = mnt.sh("echo '[1]' > j", check=False)
    assert r.returncode != 0
    assert xget(mnt, "j", "user.stash.version") == vj
    # Read-only ones: setting or removing them (rsync -X does) changes nothing.
    for attr in ("user.stash.version", "user.stash.sha256", "user.stash.expires", "user.stash.error"):
        os.setxattr(mnt.path("p"), attr, b"1")
        os.removexattr(mnt.path("p"), attr)
    assert int(xget(mnt, "p", "user.stash.version")) == v2
    assert xget(mnt, "p", "user.stash.sha256") == hashlib.sha256(b"two\n").hexdigest()
    assert sorted(os.listxattr(mnt.path("p"))) == ["user.stash.sha256", "user.stash.version"]


def test_values_validated(mnt):
    mnt.sh("echo x > p")
    bad = [("user.stash.ttl", b"soon"), ("user.stash.ttl", b"-5"), ("user.stash.ttl", b""),
           ("user.stash.persistent", b"yes"), ("user.stash.bogus", b"1"),
           ("user.stash.schema", b"../x"), ("user.other", b"x" * 5000)]
    for attr, value in bad:
        with pytest.raises(OSError) as e:
            os.setxattr(mnt.path("p"), attr, value)
        assert e.value.errno == errno.EINVAL, (attr, value)
    r = mnt.sh("setfattr -n user.stash.ttl -v abc p", check=False)
    assert r.returncode != 0 and "Invalid argument" in r.stderr


def test_listxattr_and_plain_user_xattrs(mnt):
    mnt.sh("echo x > p && setfattr -n user.note -v hello p && setfattr -n user.stash.ttl -v 3600 p")
    names = os.listxattr(mnt.path("p"))
    for n in ("user.note", "user.stash.version", "user.stash.sha256", "user.stash.ttl",
              "user.stash.expires"):
        assert n in names, names
    assert "user.stash.session" not in names
    # Plain user.* xattrs survive commits and renames.
    mnt.sh("echo y > p && mv p q")
    assert xget(mnt, "q", "user.note") == "hello"
    exp = xget(mnt, "q", "user.stash.expires")
    assert exp.endswith("Z") and time.strptime(exp, "%Y-%m-%dT%H:%M:%SZ")
    out = mnt.sh("getfattr -d -m - q").stdout
    assert "user.stash.ttl=\"3600\"" in out


def test_only_user_xattrs_are_kept(mnt):
    """Commits keep user.* attributes only, so only those can be set; the
    others are refused with a clear error and never listed."""
    mnt.sh("echo x > p")
    for name in ("trusted.note", "security.note"):
        with pytest.raises(OSError) as e:
            os.setxattr(mnt.path("p"), name, b"v")
        assert e.value.errno == errno.EOPNOTSUPP
    for name in ("security.capability", "trusted.note", "security.selinux"):
        with pytest.raises(OSError) as e:
            os.getxattr(mnt.path("p"), name)
        assert e.value.errno == errno.ENODATA
    r = mnt.sh("setfattr -n trusted.note -v v p", check=False)
    assert r.returncode != 0 and "not supported" in r.stderr
    # Set on the backing file behind the daemon: not shown, gone at the next commit.
    os.setxattr(mnt.backing / "p", "trusted.behind", b"1")
    assert all(n.startswith("user.") for n in os.listxattr(mnt.path("p")))
    mnt.sh("echo y > p")
    assert "trusted.behind" not in os.listxattr(mnt.backing / "p")


def test_stash_expires_on_time_with_record(mnt):
    mnt.sh("touch streams/log && setfattr -n user.stash.linked_stash -v p streams/log")
    mnt.sh("echo data > p && setfattr -n user.stash.ttl -v 2 p")
    deadline = time.time() + 2
    with open(mnt.path("p")) as held:
        assert "p" in os.listdir(str(mnt.mnt))
        waited = wait_gone(mnt.path("p"), 5)
        assert time.time() >= deadline - 0.05
        assert time.time() - deadline < 1.5, waited
        assert "p" not in os.listdir(str(mnt.mnt))         # no ghost entry
        r = mnt.sh("cat p", check=False)
        assert "No such file" in r.stderr
        assert held.read() == "data\n"                    # open handles keep their snapshot
    time.sleep(0.3)
    assert not (mnt.backing / "p").exists()                # swept from the backing directory
    recs = [json.loads(l) for l in read(mnt.path("streams/log")).splitlines()]
    assert recs[-1]["op"] == "expire" and recs[-1]["stash"] == "p"
    assert sum(1 for r in recs if r["op"] == "expire") == 1


def test_expires_on_time_below_a_moved_directory(mnt):
    # The deadline was queued under a/p; after `mv a b` the sweeper must
    # remove b/p on time, once, and nothing comes back at a/p.
    mnt.sh("touch streams/log && setfattr -n user.stash.linked_stash -v b/p streams/log")
    mnt.sh("mkdir a && echo data > a/p && setfattr -n user.stash.ttl -v 2 a/p")
    mnt.sh("echo q > q && setfattr -n user.stash.ttl -v 2 q")
    deadline = time.time() + 2
    mnt.sh("mv a b && mv q r")
    assert read(mnt.path("b/p")) == b"data\n"
    time.sleep(max(0, deadline - time.time()) + 1.5)
    assert not (mnt.backing / "b" / "p").exists()          # swept, not only hidden
    assert not (mnt.backing / "r").exists()                # a moved stash too
    assert not os.path.exists(mnt.path("b/p")) and not os.path.exists(mnt.path("a"))
    recs = [json.loads(l) for l in read(mnt.path("streams/log")).splitlines()]
    assert [r["stash"] for r in recs if r["op"] == "expire"] == ["b/p"]
    # A new b/p is a new stash with no deadline of the old one's.
    mnt.sh("echo new > b/p")
    time.sleep(1.2)
    assert read(mnt.path("b/p")) == b"new\n"


def test_ttl_slides_with_changes(mnt):
    mnt.sh("echo 1 > p && setfattr -n user.stash.ttl -v 2 p")
    for i in range(4):
        time.sleep(0.8)
        mnt.sh("echo %d > p" % i)          # each change pushes the deadline
    assert os.path.exists(mnt.path("p"))
    assert wait_gone(mnt.path("p"), 5) < 3.5


def test_stream_and_directory_default_expire(mnt):
    mnt.sh("mkdir short && setfattr -n user.stash.ttl -v 1 short")
    mnt.sh("echo a > short/x && echo '{\"k\":1}' > short/y.json")
    mnt.sh("touch streams/s && setfattr -n user.stash.ttl -v 1 streams/s")
    assert xget(mnt, "short/x", "user.stash.ttl") == "1"
    for p in ("short/x", "short/y", "streams/s"):
        assert wait_gone(mnt.path(p), 4) < 3, p
    assert os.listdir(mnt.path("short")) == []
    assert os.path.isdir(mnt.path("short"))        # the directory holds only the default


def test_ephemeral_gone_after_restart_and_crash(env):
    env.mount()
    env.sh("echo keep > durable && echo tmp > eph && setfattr -n user.stash.persistent -v 0 eph")
    env.sh("mkdir scratch && setfattr -n user.stash.persistent -v 0 scratch && echo s > scratch/a")
    assert env.sh("cat eph scratch/a").stdout == "tmp\ns\n"
    env.daemons[-1].stop()
    assert not (env.backing / "eph").exists() and not (env.backing / "scratch/a").exists()
    env.mount()
    assert env.sh("cat durable").stdout == "keep\n"
    assert not os.path.exists(env.path("eph"))
    # After SIGKILL nothing ephemeral comes back either, even before the sweep.
    env.sh("echo tmp2 > eph2 && setfattr -n user.stash.persistent -v 0 eph2")
    env.daemons[-1].kill()
    env.mount()
    assert not os.path.exists(env.path("eph2"))
    assert "eph2" not in os.listdir(str(env.mnt))
    assert env.sh("cat durable").stdout == "keep\n"


def test_ephemeral_means_the_whole_subtree(env):
    """Directories made under a persistent=0 directory (or on a persistent=0
    mount) go with their daemon, at a clean stop and after a crash."""
    env.mount()
    env.sh("mkdir scratch && setfattr -n user.stash.persistent -v 0 scratch && "
           "mkdir -p scratch/a/b scratch/c && echo x > scratch/a/b/f && "
           "mkdir scratch/kept && echo keep > scratch/kept/doc && "
           "setfattr -n user.stash.persistent -v 1 scratch/kept/doc")
    # The directories made inside are ephemeral, shown as such.
    assert xget(env, "scratch/a/b", "user.stash.persistent") == "0"
    env.daemons[-1].stop()
    # The directory that holds the default stays; what was made in it goes,
    # except the directory that still holds something persistent.
    assert sorted(os.listdir(env.backing / "scratch")) == ["kept"]
    assert (env.backing / "scratch" / "kept" / "doc").read_text() == "keep\n"
    env.mount()
    assert sorted(os.listdir(env.path("scratch"))) == ["kept"]
    # After SIGKILL the next start's scan removes them.
    env.sh("mkdir -p scratch/d/e && echo y > scratch/d/e/f && mkdir scratch/empty")
    env.daemons[-1].kill()
    assert (env.backing / "scratch" / "d" / "e").is_dir()
    env.mount()
    deadline = time.time() + 10
    while time.time() < deadline and sorted(os.listdir(env.backing / "scratch")) != ["kept"]:
        time.sleep(0.05)
    assert sorted(os.listdir(env.backing / "scratch")) == ["kept"]
    assert sorted(os.listdir(env.path("scratch"))) == ["kept"]
    # Made persistent, an ephemeral directory stays.
    env.sh("mkdir scratch/mine && setfattr -n user.stash.persistent -v 1 scratch/mine")
    env.daemons[-1].stop()
    assert sorted(os.listdir(env.backing / "scratch")) == ["kept", "mine"]


def test_ephemeral_mount_removes_its_directories(env):
    env.mount(opts=["persistent=0"])
    env.sh("mkdir -p t/u && echo v > t/u/w")
    env.daemons[-1].stop()
    assert sorted(os.listdir(env.backing)) == [".stashfs", "schemas", "streams"]


def test_getfattr_gives_effective_persistence_and_ttl(env):
    """getfattr -n answers persistent and ttl for every object, set or not;
    getfattr -d lists only what was set."""
    env.mount(opts=["ttl=3000"])
    env.sh("echo x > plain && setfattr -n user.stash.ttl -v 0 plain && "
           "mkdir d && setfattr -n user.stash.ttl -v 60 d && mkdir -p d/sub/deeper")

    def get(path, name):
        return env.sh("getfattr --only-values -n user.stash.%s %s" % (name, path)).stdout

    def listed(path):
        return env.sh("getfattr -d -m - %s" % path).stdout

    # A stash created before any default: persistent, with the ttl it was given.
    assert get("plain", "persistent") == "1" and get("plain", "ttl") == "0"
    assert "user.stash.persistent" not in listed("plain")
    # Directories pass on their nearest ancestor's default, else the mount's.
    assert get("d/sub/deeper", "ttl") == "60"
    assert get("d/sub/deeper", "persistent") == "1"
    assert get(".", "ttl") == "3000" and get(".", "persistent") == "1"
    for path in ("d/sub/deeper", "."):
        assert "user.stash.ttl" not in listed(path) and "persistent" not in listed(path)
    assert 'user.stash.ttl="60"' in listed("d")
    # What the view says is what a new object there gets.
    env.sh("echo y > d/sub/deeper/new")
    assert get("d/sub/deeper/new", "ttl") == "60"
    doc = json.loads(read(env.path(".stashfs-meta/d/sub/deeper/.stashfs-dir")))
    assert (doc["ttl"], doc["persistent"]) == (60, 1)
    # A stream never given either, on a mount with defaults off.
    env.daemons[-1].stop()
    env.mount(opts=["persistent=0"])
    assert get(".", "persistent") == "0" and get(".", "ttl") == "0"
    assert get("plain", "persistent") == "1"
    r = env.sh("getfattr -n user.stash.schema plain", check=False)
    assert r.returncode != 0                # the others still have no value


def test_persistence_switch_keeps_content(env):
    env.mount(opts=["persistent=0"])
    env.sh("echo v > p && echo w > q")
    assert xget(env, "p", "user.stash.persistent") == "0"
    env.sh("setfattr -n user.stash.persistent -v 1 p")
    assert env.sh("cat p").stdout == "v\n"
    env.daemons[-1].stop()
    env.mount()
    assert env.sh("cat p").stdout == "v\n"
    assert not os.path.exists(env.path("q"))


def test_default_ttl_option(env):
    env.mount(opts=["ttl=1"])
    env.sh("echo x > p")
    assert xget(env, "p", "user.stash.ttl") == "1"
    assert wait_gone(env.path("p"), 4) < 3


def test_metadata_view_without_xattr_tools(mnt):
    """.stashfs-meta/PATH: read every piece of metadata, write a merge patch."""
    mnt.sh("mkdir -p ns && echo '{\"a\":1}' > ns/p && setfattr -n user.note -v hi ns/p")
    doc = json.loads(read(mnt.path(".stashfs-meta/ns/p")))
    assert doc["kind"] == "stash" and doc["path"] == "ns/p" and doc["size"] == len(read(mnt.path("ns/p")))
    assert doc["version"] == int(xget(mnt, "ns/p", "user.stash.version"))
    assert doc["sha256"] == xget(mnt, "ns/p", "user.stash.sha256")
    assert doc["persistent"] == 1 and doc["ttl"] == 0 and doc["expires"] is None
    assert doc["xattrs"] == {"user.note": "hi"}
    assert os.stat(mnt.path(".stashfs-meta/ns/p")).st_size == len(read(mnt.path(".stashfs-meta/ns/p")))
    # Write a patch with plain shell tools.
    mnt.sh("""echo '{"ttl": 3600, "xattrs": {"user.note": null, "user.owner": "me"}}' > .stashfs-meta/ns/p""")
    assert xget(mnt, "ns/p", "user.stash.ttl") == "3600"
    assert "user.note" not in os.listxattr(mnt.path("ns/p"))
    assert xget(mnt, "ns/p", "user.owner") == "me"
    # A document read, edited and written back works (read-only fields unchanged).
    doc = json.loads(read(mnt.path(".stashfs-meta/ns/p")))
    doc["ttl"] = 0
    with open(mnt.path(".stashfs-meta/ns/p"), "w") as f:
        json.dump(doc, f)
    assert xget(mnt, "ns/p", "user.stash.ttl") == "0"
    # Refusals are reported at write().
    for patch, err in (('{"version": 99}', "not permitted"), ('{"ttl": "soon"}', "Invalid argument"),
                       ('{"colour": 1}', "Invalid argument"), ('[1]', "Invalid argument")):
        r = mnt.sh("echo '%s' > .stashfs-meta/ns/p" % patch, check=False)
        assert r.returncode != 0 and err in r.stderr, (patch, r.stderr)
    # Directories: their own metadata, and defaults set through the view.
    assert sorted(os.listdir(mnt.path(".stashfs-meta/ns"))) == [".stashfs-dir", "p"]
    mnt.sh("""echo '{"persistent": 0}' > .stashfs-meta/ns/.stashfs-dir""")
    assert xget(mnt, "ns", "user.stash.persistent") == "0"
    assert json.loads(read(mnt.path(".stashfs-meta/.stashfs-dir")))["kind"] == "directory"
    # Streams show their link and sequence.
    mnt.sh("""touch streams/l && echo '{"linked_stash": "ns/p"}' > .stashfs-meta/streams/l""")
    mnt.sh("""echo '{"b":2}' > ns/p.json""")
    sdoc = json.loads(read(mnt.path(".stashfs-meta/streams/l")))
    assert sdoc["kind"] == "stream" and sdoc["linked_stash"] == "ns/p" and sdoc["seq"] == 1
    # The view is not listed and takes no new files.
    assert ".stashfs-meta" not in os.listdir(str(mnt.mnt))
    r = mnt.sh("echo x > .stashfs-meta/newfile", check=False)
    assert r.returncode != 0


def test_two_daemons_expire_once(env):
    """Two daemons sharing a backing directory: both stop showing an expired
    stash, and its stream gets one expire record."""
    env.mount(opts=["shared"])
    m2 = env.tmp / "mnt2"
    env.mount(opts=["shared"], mnt=m2)
    env.sh("touch streams/ex && setfattr -n user.stash.linked_stash -v t streams/ex")
    env.sh("echo data > t && setfattr -n user.stash.ttl -v 1 t")
    assert os.path.exists(m2 / "t")
    assert wait_gone(str(m2 / "t"), 5) < 3
    assert not os.path.exists(env.path("t"))
    time.sleep(1.5)
    recs = [json.loads(l) for l in read(m2 / "streams/ex").splitlines()]
    assert [r["op"] for r in recs].count("expire") == 1, recs
