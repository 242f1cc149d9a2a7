# SPDX-License-Identifier: MIT
"""Big reads and the request counters: a big stash read through the mount is
the backing file byte for byte, whatever the read size; a reader keeps its
snapshot while the stash is replaced under it; the daemon counts requests by
operation and shows the counts as user.stash.requests on the mount root; a
1 MiB read() costs at most two READ requests (requests sized to what the
daemon can splice, instead of 128 KiB ones or a copy)."""
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
