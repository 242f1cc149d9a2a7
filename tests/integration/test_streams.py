# SPDX-License-Identifier: MIT
"""Streams: append-only files, and linked streams as audit trails (DESIGN 2.4)."""
import errno
import json
import os
import random
import subprocess
import sys
import time

import pytest


def read(p):
    with open(p, "rb") as f:
        return f.read()


def records(mnt, name):
    return [json.loads(l) for l in read(mnt.path("streams/" + name)).splitlines()]


def test_append_only(mnt):
    mnt.sh("touch streams/log && echo one >> streams/log && echo two >> streams/log")
    assert read(mnt.path("streams/log")) == b"one\ntwo\n"
    # A positional write still lands at the end.
    fd = os.open(mnt.path("streams/log"), os.O_WRONLY)
    os.pwrite(fd, b"three\n", 0)
    os.close(fd)
    assert read(mnt.path("streams/log")) == b"one\ntwo\nthree\n"
    for cmd in ("truncate -s 0 streams/log", "echo x > streams/log"):
        r = mnt.sh(cmd, check=False)
        assert r.returncode != 0 and "not permitted" in r.stderr, cmd
    assert read(mnt.path("streams/log")) == b"one\ntwo\nthree\n"
    mnt.sh("echo first > streams/new")           # > creates an empty stream
    assert read(mnt.path("streams/new")) == b"first\n"
    mnt.sh("rm streams/new")
    assert not os.path.exists(mnt.backing / "streams/new")


def test_concurrent_appenders_never_interleave(mnt):
    script = r'''
import os, sys
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
for i in range(500):
    line = ("%s-%04d-" % (sys.argv[2], i)).encode()
    os.write(fd, line + b"x" * (2047 - len(line)) + b"\n")
os.close(fd)
'''
    path = mnt.path("streams/busy")
    procs = [subprocess.Popen([sys.executable, "-c", script, path, "p%d" % n]) for n in range(4)]
    assert all(p.wait() == 0 for p in procs)
    lines = read(path).split(b"\n")[:-1]
    assert len(lines) == 2000
    seen = {}
    for l in lines:
        assert len(l) == 2047 and l.endswith(b"x"), l[:30]
        who, i = l.split(b"-")[:2]
        assert seen.get(who, -1) < int(i)       # each writer's records in order
        seen[who] = int(i)


def test_linked_stream_records_every_change(mnt):
    mnt.sh("touch streams/audit && setfattr -n user.stash.linked_stash -v p streams/audit")
    mnt.sh("""echo '{"task":"t"}' > p""")                # linked before p existed
    for i in range(10):
        mnt.sh("""echo '{"step":%d}' > p.json""" % i)
    r = mnt.sh("""echo '{bad' > p.json""", check=False)   # refused: no record
    assert r.returncode != 0
    mnt.sh("rm p")
    recs = records(mnt, "audit")
    ops = [r["op"] for r in recs]
    assert ops[-12:] == ["put"] + ["merge"] * 10 + ["delete"], ops
    assert [r["seq"] for r in recs] == list(range(1, len(recs) + 1))
    put = recs[-12]
    assert put["data"] == {"task": "t"} and put["stash"] == "p"
    assert [r["data"] for r in recs[-11:-1]] == [{"step": i} for i in range(10)]
    versions = [r["version"] for r in recs[-12:-1]]
    assert versions == sorted(versions) and len(set(versions)) == 11
    for r in recs:
        assert r["uid"] == os.getuid() and r["pid"] > 0 and r["comm"]
        assert r["time"].endswith("Z") and "T" in r["time"]
    # Large or binary content is recorded by size and hash.
    mnt.sh("touch streams/a2 && setfattr -n user.stash.linked_stash -v bin streams/a2")
    mnt.sh("head -c 10000 /dev/urandom > bin")
    rec = records(mnt, "a2")[-1]
    assert rec["data"]["size"] == 10000 and len(rec["data"]["sha256"]) == 64
    import hashlib
    assert rec["data"]["sha256"] == hashlib.sha256(read(mnt.path("bin"))).hexdigest()


def test_link_validation_and_rename(mnt):
    mnt.sh("touch streams/s")
    for bad in ("../etc", "/abs", "a/../b", "streams/s"):
        r = mnt.sh("setfattr -n user.stash.linked_stash -v '%s' streams/s" % bad, check=False)
        assert r.returncode != 0, bad
    r = mnt.sh("touch plain && setfattr -n user.stash.linked_stash -v p plain", check=False)
    assert r.returncode != 0
    mnt.sh("setfattr -n user.stash.linked_stash -v ns/q streams/s && mkdir ns")
    mnt.sh("echo 1 > ns/q && mv ns/q ns/r && echo 2 > ns/other && mv ns/other ns/q")
    recs = records(mnt, "s")
    # One record per creation: the name appears with its content.
    assert [r["op"] for r in recs] == ["put", "rename", "rename"]
    assert recs[1]["data"] == {"to": "ns/r"} and recs[2]["data"] == {"from": "ns/other"}
    # Several streams on one stash; relinking stops the old records.
    mnt.sh("touch streams/t && setfattr -n user.stash.linked_stash -v ns/q streams/t")
    mnt.sh("setfattr -n user.stash.linked_stash -v elsewhere streams/s")
    mnt.sh("echo 3 > ns/q")
    assert len(records(mnt, "s")) == 3 and len(records(mnt, "t")) == 1


def test_tail_follows(mnt):
    mnt.sh("touch streams/live && setfattr -n user.stash.linked_stash -v p streams/live")
    tail = subprocess.Popen(["tail", "-n", "0", "-f", mnt.path("streams/live")],
                            stdout=subprocess.PIPE)
    try:
        time.sleep(0.3)
        mnt.sh("""echo '{"x":1}' > p.json""")
        os.set_blocking(tail.stdout.fileno(), False)
        deadline, got = time.time() + 3, b""
        while time.time() < deadline and b"\n" not in got:
            got += tail.stdout.read() or b""
            time.sleep(0.05)
        assert b'"op":"merge"' in got
    finally:
        tail.kill()
        tail.wait()


def test_records_survive_remount(env):
    env.mount()
    env.sh("touch streams/log && setfattr -n user.stash.linked_stash -v p streams/log")
    env.sh("""echo '{"a":1}' > p.json; echo '{"b":1}' > p.json""")
    env.daemons[-1].stop()
    env.mount()
    env.sh("""echo '{"c":1}' > p.json""")
    recs = records(env, "log")
    assert [r["seq"] for r in recs] == [1, 2, 3]


def test_crash_during_merges_records_exactly_once(env):
    # Beneath the mount's root, opened while the daemon serves it: after the
    # kill every open fails, also once the dead mount is cleared (a plain
    # path would then name the empty directory underneath, where writes
    # succeed forever).
    writer = r'''
import os, sys
root, i = int(sys.argv[1]), 0
while True:
    i += 1
    try:
        fd = os.open("p.json", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644, dir_fd=root)
        with open(fd, "w") as f:
            f.write('{"k%d": %d}' % (i % 50, i))
    except OSError:
        sys.exit(0)
'''
    env.mount()
    env.sh("touch streams/log && setfattr -n user.stash.linked_stash -v p streams/log")
    rng = random.Random(7)
    for rnd in range(8):
        root = os.open(env.path(""), os.O_RDONLY | os.O_DIRECTORY)
        ws = [subprocess.Popen([sys.executable, "-c", writer, str(root)], pass_fds=(root,))
              for _ in range(2)]
        time.sleep(rng.uniform(0.1, 0.5))
        env.daemons[-1].kill()
        for w in ws:
            w.wait(timeout=30)
        os.close(root)
        assert os.listdir(env.path("")) == []   # nothing written beside the store
        env.mount()
        version = int(os.getxattr(env.path("p"), "user.stash.version"))
        versions = [r["version"] for r in records(env, "log")]
        assert sorted(versions) == list(range(1, version + 1)), (rnd, version, versions[-5:])
        seqs = [r["seq"] for r in records(env, "log")]
        assert all(a < b for a, b in zip(seqs, seqs[1:]))   # never reused


def test_stream_writes_keep_to_max_size(env):
    """max_size bounds what writers append to a stream, refused whole; the
    records of a linked stash's changes are appended whatever the size."""
    env.mount(opts=["max_size=1k"])
    env.sh("touch streams/log && echo '{}' > p && "
           "setfattr -n user.stash.linked_stash -v p streams/log")
    line = "x" * 99 + "\n"
    r = env.sh("for i in $(seq 20); do echo %s >> streams/log || exit 1; done" % line[:-1],
               check=False)
    assert r.returncode != 0 and "too large" in r.stderr
    size = os.path.getsize(env.path("streams/log"))
    assert size <= 1024 and size % 100 == 0            # whole writes only
    assert os.path.getsize(env.backing / "streams" / "log") == size
    assert "size limit" in os.getxattr(env.path("streams/log"), "user.stash.error").decode()
    # One write too large on its own lands nowhere either.
    fd = os.open(env.path("streams/log"), os.O_WRONLY | os.O_APPEND)
    try:
        with pytest.raises(OSError) as e:
            os.write(fd, b"y" * 2000)
        assert e.value.errno == errno.EFBIG
    finally:
        os.close(fd)
    assert os.path.getsize(env.path("streams/log")) == size
    # The audit record of a committed change is never dropped.
    env.sh("echo '{\"k\":1}' > p.json")
    recs = [json.loads(l) for l in open(env.path("streams/log")).read().splitlines()
            if l.startswith("{")]
    assert recs[-1]["op"] == "merge" and recs[-1]["data"] == {"k": 1}
