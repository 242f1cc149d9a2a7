# SPDX-License-Identifier: MIT
"""Big reads and the request counters: a big stash read through the mount is
the backing file byte for byte, whatever the read size; a reader keeps its
snapshot while the stash is replaced under it; the daemon counts requests by
operation and shows the counts as user.stash.requests on the mount root; a
1 MiB read() costs at most two READ requests (requests sized to what the
daemon can splice, instead of 128 KiB ones or a copy).  Big writes land
byte for byte at their offsets through every path (replace, pwrite out of
order, append, a view's patch, a bound document: content in memory, then
spilled to its temp file), and a refusal at the size limit leaves the
daemon's next requests whole."""
import errno
import hashlib
import json
import os
import subprocess

import pytest

MIB = 1 << 20


def counts(env):
    return json.loads(os.getxattr(str(env.mnt), "user.stash.requests"))


def backing_file(env, name):
    """The committed content of stash @name in the backing directory."""
    for dirpath, _dirs, files in os.walk(str(env.backing)):
        if name in files and os.path.relpath(dirpath, str(env.backing)) == ".":
            with open(os.path.join(dirpath, name), "rb") as f:
                return f.read()
    raise AssertionError("no backing file for %s" % name)


@pytest.fixture
def big(env):
    env.mount(opts=["max_size=256M"])
    return env


def test_64mib_read_equals_backing_file(big):
    data = os.urandom(MIB) * 32 + os.urandom(32 * MIB + 12345)
    with open(big.path("big"), "wb") as f:
        for off in range(0, len(data), MIB):
            f.write(data[off:off + MIB])
    assert backing_file(big, "big") == data
    # cat reads in 128 KiB pieces, Python in 1 MiB ones, dd in 3 MiB ones.
    cat = subprocess.run(["cat", big.path("big")], capture_output=True, check=True).stdout
    assert cat == data
    with open(big.path("big"), "rb", buffering=0) as f:
        pieces = []
        while True:
            b = f.read(MIB)
            if not b:
                break
            pieces.append(b)
    assert b"".join(pieces) == data
    r = big.sh("dd if=big bs=3M status=none | sha256sum")
    assert r.stdout.split()[0] == hashlib.sha256(data).hexdigest()


def test_read_keeps_its_snapshot_while_replaced(big):
    old = os.urandom(16 * MIB)
    new = os.urandom(8 * MIB)
    with open(big.path("s"), "wb") as f:
        f.write(old)
    got = []
    with open(big.path("s"), "rb", buffering=0) as r:
        got.append(r.read(3 * MIB + 7))
        # Replaced by a shell in the middle of the read.
        with open(big.path("new"), "wb") as f:
            f.write(new)
        big.sh("cat new > s")
        while True:
            b = r.read(MIB)
            if not b:
                break
            got.append(b)
    assert b"".join(got) == old
    with open(big.path("s"), "rb") as f:
        assert f.read() == new
    assert backing_file(big, "s") == new


def test_requests_counted_by_operation(mnt):
    before = counts(mnt)
    assert before.get("init") == 1
    mnt.sh("echo hello > a; cat a; cat a > /dev/null")
    after = counts(mnt)
    # One open per cat and one for the shell's >, one getxattr: the read of the counts.
    assert after["open"] - before.get("open", 0) + after.get("create", 0) - \
        before.get("create", 0) == 3
    assert after["getxattr"] - before["getxattr"] >= 1
    assert after["read"] - before.get("read", 0) >= 2
    assert after["write"] - before.get("write", 0) == 1
    # Read-only: set and remove refused like other read-only xattrs.
    for call in (lambda: os.setxattr(str(mnt.mnt), "user.stash.requests", b"{}"),
                 lambda: os.removexattr(str(mnt.mnt), "user.stash.requests")):
        with pytest.raises(OSError) as e:
            call()
        assert e.value.errno == errno.EPERM
    # Only on the root, and not listed.
    assert "user.stash.requests" not in os.listxattr(str(mnt.mnt))
    with pytest.raises(OSError):
        os.getxattr(mnt.path("a"), "user.stash.requests")
    r = subprocess.run(["getfattr", "--only-values", "-n", "user.stash.requests",
                        str(mnt.mnt)], capture_output=True, text=True, check=True)
    assert json.loads(r.stdout)["getxattr"] > after["getxattr"]


def test_mib_read_is_at_most_two_requests(big):
    with open(big.path("big"), "wb") as f:
        f.write(os.urandom(16 * MIB))
    buf = bytearray(MIB)
    with open(big.path("big"), "rb", buffering=0) as f:
        before = counts(big).get("read", 0)
        calls = 1
        while f.readinto(buf):
            calls += 1
        after = counts(big)["read"]
    # 16 MiB in 1 MiB read() calls, and one more that sees the end of the file.
    assert calls == 17
    assert after - before <= 2 * calls


def write_chunks(path, data, chunk=MIB, flags=os.O_WRONLY | os.O_CREAT | os.O_TRUNC):
    fd = os.open(path, flags, 0o644)
    try:
        for off in range(0, len(data), chunk):
            assert os.write(fd, data[off:off + chunk]) == len(data[off:off + chunk])
    finally:
        os.close(fd)


def test_big_writes_land_at_their_offsets(big):
    first = os.urandom(20 * MIB + 4097)
    write_chunks(big.path("w"), first)
    assert backing_file(big, "w") == first
    # Replaced whole by a shell, then written out of order: the last MiB
    # first, a hole left, the start last (in memory, then spilled).
    second = os.urandom(12 * MIB)
    with open(big.path("src"), "wb") as f:
        f.write(second)
    big.sh("cat src > w")
    assert backing_file(big, "w") == second
    fd = os.open(big.path("w"), os.O_WRONLY | os.O_TRUNC)
    try:
        for off in (9 * MIB, 3 * MIB + 5, 0):
            assert os.pwrite(fd, second[off:off + 2 * MIB], off) == 2 * MIB
    finally:
        os.close(fd)
    want = bytearray(11 * MIB)
    for off in (9 * MIB, 3 * MIB + 5, 0):
        want[off:off + 2 * MIB] = second[off:off + 2 * MIB]
    assert backing_file(big, "w") == bytes(want)
    # Appended to, by >> and by O_APPEND in 1 MiB writes.
    tail = os.urandom(5 * MIB + 13)
    with open(big.path("tail"), "wb") as f:
        f.write(tail)
    big.sh("cat tail >> w")
    write_chunks(big.path("w"), tail, flags=os.O_WRONLY | os.O_APPEND)
    assert backing_file(big, "w") == bytes(want) + tail + tail
    with open(big.path("w"), "rb") as f:
        assert hashlib.sha256(f.read()).digest() == \
            hashlib.sha256(bytes(want) + tail + tail).digest()


def test_big_patch_and_bound_document_through_memory(big):
    big.sh("""echo '{"keep": 1}' > doc""")
    pad = "p" * (3 * MIB)
    write_chunks(big.path("doc.json"), json.dumps({"pad": pad}).encode(),
                 flags=os.O_WRONLY)
    with open(big.path("doc"), "rb") as f:
        assert json.loads(f.read()) == {"keep": 1, "pad": pad}
    schema = {"type": "object", "required": ["items"],
              "properties": {"items": {"type": "array", "items": {"type": "string"}}}}
    with open(big.path("schemas/list"), "w") as f:
        json.dump(schema, f)
    big.sh("""echo '{"items": []}' > l && setfattr -n user.stash.schema -v list l""")
    good = {"items": ["%07d" % i + "x" * 100 for i in range(30000)]}
    text = json.dumps(good).encode()
    assert len(text) > 3 * MIB
    write_chunks(big.path("l"), text)
    assert backing_file(big, "l") == text
    # The same size with one item that is not a string: refused, kept.
    bad = text.replace(b'"0029999', b'29999', 1)
    fd = os.open(big.path("l"), os.O_WRONLY | os.O_TRUNC)
    with pytest.raises(OSError) as e:
        try:
            for off in range(0, len(bad), MIB):
                os.write(fd, bad[off:off + MIB])
        finally:
            os.close(fd)
    assert e.value.errno == errno.EINVAL
    assert backing_file(big, "l") == text


def test_big_write_over_size_limit_refused_and_next_whole(env):
    env.mount(opts=["max_size=8M"])
    old = os.urandom(6 * MIB)
    write_chunks(env.path("s"), old)
    fd = os.open(env.path("s"), os.O_WRONLY | os.O_TRUNC)
    try:
        for i in range(8):
            assert os.write(fd, old[:MIB]) == MIB
        with pytest.raises(OSError) as e:
            os.write(fd, old[:MIB])
        assert e.value.errno == errno.EFBIG
    finally:
        try:
            os.close(fd)
        except OSError:
            pass
    assert backing_file(env, "s") == old
    # The refused request's bytes are gone from the daemon's pipe: the next
    # writes, big and small, are their own bytes.
    new = os.urandom(7 * MIB + 99)
    write_chunks(env.path("t"), new)
    env.sh("echo small > u")
    assert backing_file(env, "t") == new
    assert env.sh("cat u").stdout == "small\n"
