# SPDX-License-Identifier: MIT
"""SIGKILL the daemon during a stream of commits: every stash must hold a
complete old or new version after a remount, and no temp file may show."""
import hashlib
import os
import random
import subprocess
import sys
import time

WRITER = r'''
import hashlib, os, random, sys
mnt, seed = sys.argv[1], int(sys.argv[2])
rng = random.Random(seed)
n = 0
while True:
    n += 1
    name = "s%d" % rng.randrange(8)
    body = os.urandom(rng.choice([10, 1000, 50000, 300000, 2000000]))
    head = b"v=%d len=%d sha=%s\n" % (n, len(body), hashlib.sha256(body).hexdigest().encode())
    path = os.path.join(mnt, "crash", name)
    try:
        if rng.random() < 0.2:
            with open(path, "ab") as f:          # >> keeps the old header valid
                f.write(b"")
        with open(path, "wb") as f:
            f.write(head)
            for i in range(0, len(body), 65536):
                f.write(body[i:i + 65536])
    except OSError:
        sys.exit(0)
'''

ROUNDS = int(os.environ.get("STASHFS_CRASH_ROUNDS", "20"))


def valid(data):
    if not data:
        return True        # created, never written: empty is a committed version
    head, _, body = data.partition(b"\n")
    fields = dict(kv.split(b"=") for kv in head.split())
    return int(fields[b"len"]) == len(body) and \
        hashlib.sha256(body).hexdigest().encode() == fields[b"sha"]


def test_sigkill_during_commits(env):
    rng = random.Random(1234)
    env.mount()
    os.mkdir(env.path("crash"))
    checked = 0
    for rnd in range(ROUNDS):
        d = env.daemons[-1]
        w = subprocess.Popen([sys.executable, "-c", WRITER, str(env.mnt), str(rnd)])
        time.sleep(rng.uniform(0.05, 0.6))
        d.kill()
        w.wait(timeout=30)
        env.mount()
        names = os.listdir(env.path("crash"))
        assert all(n.startswith("s") for n in names), names
        for n in names:
            with open(env.path("crash/" + n), "rb") as f:
                data = f.read()
            assert valid(data), "round %d: %s is torn (%d bytes)" % (rnd, n, len(data))
            checked += 1
        # Nothing but stashes in the backing directory's stash folder either.
        assert sorted(os.listdir(env.backing / "crash")) == sorted(names)
    assert checked >= ROUNDS
    print("crash rounds: %d, stash versions checked: %d" % (ROUNDS, checked))
