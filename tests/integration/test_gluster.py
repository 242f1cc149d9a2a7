# SPDX-License-Identifier: MIT
"""Two stashfs daemons sharing one backing directory on GlusterFS (DESIGN 2.2,
2.4, 3): a replica-2 volume mounted twice on this host (gluster.py), one
stashfs -o shared on each client mount, and users of both mounts at once.

Skipped, with the reason, where Gluster can't run (see gluster.py)."""
import errno
import json
import os
import random
import subprocess
import sys
import threading
import time

import pytest

from conftest import mounted
from gluster import gluster, gluster_volume  # noqa: F401,F811  (fixtures)

SCHEMA = {
    "type": "object",
    "properties": {"status": {"enum": ["active", "done"]}, "n": {"type": "integer"}},
    "required": ["status"],
}


class Two:
    """Two daemons on one shared backing directory, seen through both clients."""

    def __init__(self, env, backings):
        self.env = env
        self.backing = list(backings)
        self.mnt = [str(env.tmp / "s1"), str(env.tmp / "s2")]
        self.daemons = [None, None]
        for i in (0, 1):
            self.start(i)

    def start(self, i):
        self.daemons[i] = self.env.mount(opts=["shared"], mnt=self.mnt[i],
                                         backing=self.backing[i])
        return self.daemons[i]

    def path(self, i, name):
        return os.path.join(self.mnt[i], name)

    def sh(self, i, script, check=True):
        return subprocess.run(["bash", "-c", script], cwd=self.mnt[i], check=check,
                              capture_output=True, text=True, timeout=60)


@pytest.fixture
def two(env, gluster):
    return Two(env, gluster)


def read(p):
    with open(p, "rb") as f:
        return f.read()


def doc(p):
    return json.loads(read(p))


def records(p):
    return [json.loads(l) for l in read(p).splitlines()]


def version(p):
    return int(os.getxattr(p, "user.stash.version"))


def merge(path, patch):
    """One merge through a view, as `echo '{...}' > NAME.json` does."""
    with open(path, "w") as f:
        f.write(json.dumps(patch))


def merge_concurrently(jobs, threads_per_mount=8):
    """jobs: [(view path, patch)].  Runs them from 2*threads_per_mount threads
    at once (each thread on one mount); returns the errors."""
    errors, lock = [], threading.Lock()
    by_view = {}
    for view, patch in jobs:
        by_view.setdefault(view, []).append(patch)
    start = threading.Barrier(threads_per_mount * len(by_view))

    def worker(view, patches):
        start.wait()
        for patch in patches:
            try:
                merge(view, patch)
            except OSError as e:
                with lock:
                    errors.append((view, patch, e))
    ts = [threading.Thread(target=worker, args=(view, patches[t::threads_per_mount]))
          for view, patches in by_view.items() for t in range(threads_per_mount)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(timeout=300)
    assert not any(t.is_alive() for t in ts), "merges hang"
    return errors


def assert_clean_tmp(backing):
    """No temp file or journal left by a live instance that is idle."""
    tmp = os.path.join(backing, ".stashfs", "tmp")
    for entry in os.listdir(tmp):
        full = os.path.join(tmp, entry)
        if os.path.isdir(full):
            assert os.listdir(full) == [], "leftovers in %s: %s" % (full, os.listdir(full))


# ---- merges ---------------------------------------------------------------

def test_merges_from_two_daemons(two):
    """2 daemons x 200 concurrent merges of different keys into one stash."""
    jobs = [(two.path(d, "p.json"), {"d%d_%03d" % (d, i): i}) for d in (0, 1) for i in range(200)]
    random.Random(1).shuffle(jobs)
    t0 = time.time()
    errors = merge_concurrently(jobs)
    took = time.time() - t0
    assert not errors, errors[:5]
    want = {"d%d_%03d" % (d, i): i for d in (0, 1) for i in range(200)}
    for i in (0, 1):
        assert doc(two.path(i, "p")) == want, "through daemon %d" % (i + 1)
        assert version(two.path(i, "p")) == 400
    assert doc(os.path.join(two.backing[0], "p")) == want     # the plain backing file
    assert_clean_tmp(two.backing[0])
    print("400 merges over 2 daemons: %.1f s, %.0f merges/s" % (took, 400 / took))


# ---- streams --------------------------------------------------------------

APPENDER = r'''
import os, sys
path, tag, n, size = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
fd = os.open(path, os.O_WRONLY | os.O_APPEND)
for i in range(n):
    head = ("%s-%04d-" % (tag, i)).encode()
    assert os.write(fd, head + b"x" * (size - 1 - len(head)) + b"\n") == size
os.close(fd)
'''


def test_stream_appends_from_two_daemons(two):
    """2 daemons x 4 processes x 300 appends to one stream: all whole, in order."""
    n, size = 300, 1024
    two.sh(0, "touch streams/busy")
    procs = [subprocess.Popen([sys.executable, "-c", APPENDER, two.path(d, "streams/busy"),
                               "d%dp%d" % (d, p), str(n), str(size)])
             for p in range(4) for d in (0, 1)]
    t0 = time.time()
    assert all(p.wait(timeout=300) == 0 for p in procs)
    took = time.time() - t0
    data = read(two.path(0, "streams/busy"))
    assert data == read(two.path(1, "streams/busy"))
    assert data == read(os.path.join(two.backing[1], "streams/busy"))
    lines = data.split(b"\n")
    assert lines[-1] == b""
    lines = lines[:-1]
    assert len(lines) == 8 * n
    seen = {}
    for l in lines:
        assert len(l) == size - 1 and l.endswith(b"x" * 100), l[:40]
        who, i = l.split(b"-")[:2]
        assert seen.get(who, -1) + 1 == int(i), (who, i)   # each writer's, in order, no gap
        seen[who] = int(i)
    assert sorted(seen.values()) == [n - 1] * 8
    print("2400 appends over 2 daemons: %.1f s, %.0f appends/s" % (took, 8 * n / took))


def test_linked_stream_records_each_change_once(two):
    """Every committed change from either daemon is in the stream exactly once."""
    two.sh(0, "touch streams/audit && setfattr -n user.stash.linked_stash -v p streams/audit")
    # Linked through daemon 1, seen through daemon 2.
    assert two.sh(1, "getfattr --only-values -n user.stash.linked_stash streams/audit").stdout == "p"
    jobs = [(two.path(d, "p.json"), {"d%d_%03d" % (d, i): i}) for d in (0, 1) for i in range(100)]
    random.Random(2).shuffle(jobs)
    errors = merge_concurrently(jobs, threads_per_mount=4)
    assert not errors, errors[:5]
    # Refused changes are never recorded.
    for d in (0, 1):
        r = two.sh(d, "echo '{bad' > p.json", check=False)
        assert r.returncode != 0
    two.sh(1, """printf '%s' '{"final":true}' > p""")           # a put through daemon 2
    two.sh(0, "mv p q")                                          # a rename through daemon 1
    recs = records(two.path(1, "streams/audit"))
    assert recs == records(two.path(0, "streams/audit"))
    assert [r["seq"] for r in recs] == list(range(1, len(recs) + 1))
    assert [r["op"] for r in recs] == ["merge"] * 200 + ["put", "rename"], [r["op"] for r in recs]
    assert [r["version"] for r in recs[:201]] == list(range(1, 202))
    patches = {}
    for r in recs[:200]:
        assert r["stash"] == "p" and len(r["data"]) == 1
        patches.update(r["data"])
    assert patches == {"d%d_%03d" % (d, i): i for d in (0, 1) for i in range(100)}
    assert recs[200]["data"] == {"final": True}
    assert recs[201]["data"] == {"to": "q"}


# ---- schemas --------------------------------------------------------------

def refused(two, d, script):
    r = two.sh(d, script, check=False)
    return r.returncode != 0 and "Invalid argument" in r.stderr


def test_schema_refusal_from_both_sides(two):
    with open(two.path(0, "schemas/task"), "w") as f:          # schema through daemon 1
        json.dump(SCHEMA, f)
    two.sh(0, """echo '{"status":"active"}' > p""")
    two.sh(1, "setfattr -n user.stash.schema -v task p")        # bound through daemon 2
    assert two.sh(0, "getfattr --only-values -n user.stash.schema p").stdout == "task"
    before = read(two.path(0, "p"))
    for d in (0, 1):
        assert refused(two, d, """echo '{"status":"bogus"}' > p.json"""), d
        assert refused(two, d, """echo '{"n":"x"}' > p.json"""), d
        assert refused(two, d, """echo '{"n":1}' > p"""), d      # replace without "status"
        assert refused(two, d, """echo '{"extra":1}' >> p"""), d  # append: not JSON any more
        with pytest.raises(OSError) as e:
            merge(two.path(d, "p.json"), {"status": None})
        assert e.value.errno == errno.EINVAL
        assert "status" in os.getxattr(two.path(d, "p"), "user.stash.error").decode()
        for i in (0, 1):
            assert read(two.path(i, "p")) == before
    # Valid changes pass from both sides.
    two.sh(0, """echo '{"n":1}' > p.json""")
    two.sh(1, """echo '{"status":"done"}' > p.json""")
    assert doc(two.path(0, "p")) == {"status": "done", "n": 1}
    # Binding a stash whose content fails is refused on the other side too.
    two.sh(0, """echo '{"status":"nope"}' > q""")
    assert refused(two, 1, "setfattr -n user.stash.schema -v task q")
    # A directory default set through one daemon binds what the other creates.
    two.sh(0, "mkdir team && setfattr -n user.stash.schema -v task team")
    assert refused(two, 1, """echo '{"n":2}' > team/r""")
    two.sh(1, """echo '{"status":"active","n":2}' > team/r""")
    assert two.sh(0, "getfattr --only-values -n user.stash.schema team/r").stdout == "task"


def test_schema_change_seen_by_other_daemon(two):
    """A schema replaced or removed through one daemon governs the other's writes."""
    with open(two.path(0, "schemas/task"), "w") as f:
        json.dump(SCHEMA, f)
    two.sh(0, """echo '{"status":"active"}' > p && setfattr -n user.stash.schema -v task p""")
    two.sh(1, """echo '{"n":1}' > p.json""")                    # daemon 2 uses the schema
    stricter = dict(SCHEMA, properties=dict(SCHEMA["properties"], n={"type": "integer", "maximum": 5}))
    with open(two.path(0, "schemas/task"), "w") as f:
        json.dump(stricter, f)
    assert refused(two, 1, """echo '{"n":6}' > p.json"""), "daemon 2 used the old schema"
    assert doc(two.path(1, "p")) == {"status": "active", "n": 1}
    os.unlink(two.path(0, "schemas/task"))
    r = two.sh(1, """echo '{"n":2}' > p.json""", check=False)    # fail closed
    assert r.returncode != 0, "daemon 2 wrote a stash whose schema is gone"


# ---- a daemon dies -----------------------------------------------------------

# The view is opened beneath the mount's root directory, opened while the
# daemon served it (fd argv[1]): once the daemon is killed, every open fails
# (ENOTCONN), also after the dead mount was cleared.  A plain path would
# then name the empty directory underneath, where `open(.., "w")` succeeds:
# a writer the kill caught between two merges, or that started only after
# it (under load), acknowledged every merge it went on writing there.
WRITER = r'''
import os, sys
root, view, tag, stop = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
i = 0
while not os.path.exists(stop):
    try:
        fd = os.open(view, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644, dir_fd=root)
        with open(fd, "w") as f:
            f.write('{"%s_%d": %d}' % (tag, i, i))
    except OSError as e:
        print("ERR %d %s" % (i, e), flush=True)
        sys.exit(3)
    print(i, flush=True)
    i += 1
'''


class Writers:
    """Merge-writer processes, each acknowledging every merge that closed OK."""

    def __init__(self, two, stop, prefix, per_daemon=3):
        self.stop = stop
        self.prefix = prefix
        self.procs = {}
        self.roots = []
        for d in (0, 1):
            assert os.path.ismount(two.mnt[d])
            self.roots.append(os.open(two.mnt[d], os.O_RDONLY | os.O_DIRECTORY))
        for d in (0, 1):
            for w in range(per_daemon):
                self.spawn(d, "w%d" % w)

    def spawn(self, d, name):
        """One more writer through daemon @d's mount (as it was at __init__)."""
        tag = "%sd%d%s" % (self.prefix, d, name)
        self.procs[tag] = (d, subprocess.Popen(
            [sys.executable, "-c", WRITER, str(self.roots[d]), "p.json", tag, self.stop],
            stdout=subprocess.PIPE, text=True, pass_fds=(self.roots[d],)))
        return tag

    def finish(self, acked, in_flight):
        """Stop the writers; add what they acknowledged (and the merge each had
        in flight) to the sets; return {daemon: {tag: (returncode, n acked, errors)}}."""
        with open(self.stop, "w"):
            pass
        out = {0: {}, 1: {}}
        for tag, (d, p) in self.procs.items():
            text, _ = p.communicate(timeout=120)
            n = [int(l) for l in text.splitlines() if l.strip().isdigit()]
            assert n == list(range(len(n))), tag
            acked.update("%s_%d" % (tag, i) for i in n)
            in_flight.add("%s_%d" % (tag, len(n)))
            out[d][tag] = (p.returncode, len(n), [l for l in text.splitlines() if l.startswith("ERR")])
        for fd in self.roots:
            os.close(fd)
        return out


def per_writer(keys):
    """{writer tag: how many of @keys it wrote}."""
    n = {}
    for k in keys:
        tag = k.rsplit("_", 1)[0]
        n[tag] = n.get(tag, 0) + 1
    return dict(sorted(n.items()))


def check_consistent(path, acked, in_flight):
    """Every acknowledged merge is in the document; nothing else is but a
    merge that was in flight; each key came with exactly one version."""
    got = doc(path)
    assert acked <= set(got), "acknowledged, missing (per writer, of acked): %s %s; first: %s" \
        % (per_writer(acked - set(got)), per_writer(acked), sorted(acked - set(got))[:5])
    assert set(got) <= acked | in_flight, sorted(set(got) - acked - in_flight)[:10]
    assert version(path) == len(got)
    return got


def kill_during_merges(two, tmp_path, rnd, per_daemon, acked, in_flight, rng):
    """One round: writers on both daemons, SIGKILL daemon 1, daemon 2 alone
    for a while, stop.  Daemon 2's writers must never fail and must go on."""
    ws = Writers(two, str(tmp_path / ("stop%d" % rnd)), "r%d" % rnd, per_daemon)
    time.sleep(rng.uniform(0.8, 1.5))
    two.daemons[0].kill()
    late = ws.spawn(0, "late")          # as a writer starved until after the kill
    time.sleep(0.3)
    before = len(doc(two.path(1, "p")))
    time.sleep(1.5)                                  # daemon 2 alone
    after = len(doc(two.path(1, "p")))
    res = ws.finish(acked, in_flight)
    for rc, n, errs in res[1].values():
        assert rc == 0 and not errs and n > 0, (rnd, rc, n, errs)
    assert res[0][late][1] == 0, (rnd, res[0])
    # Nothing landed beside the store, in the dead mount's directory.
    assert mounted(two.mnt[0]) or os.listdir(two.mnt[0]) == [], (rnd, res[0])
    assert after > before, "daemon 2 stopped merging when daemon 1 died"
    return res


def test_sigkill_one_daemon_during_merges(two, tmp_path):
    """SIGKILL daemon 1 while both serve merges: daemon 2 keeps serving, the
    stash stays consistent, daemon 1 restarts on the same backing directory."""
    rng = random.Random(3)
    acked, in_flight = set(), set()
    for rnd in range(3):
        kill_during_merges(two, tmp_path, rnd, 3, acked, in_flight, rng)
        got = check_consistent(two.path(1, "p"), acked, in_flight)
        assert doc(os.path.join(two.backing[1], "p")) == got
        two.sh(1, """echo '{"after%d":1}' > p.json""" % rnd)   # still serves
        acked.add("after%d" % rnd)
        # Daemon 1 comes back on the same directory and sees the same store.
        two.start(0)
        assert doc(two.path(0, "p")) == doc(two.path(1, "p"))
        check_consistent(two.path(0, "p"), acked, in_flight)
        assert_clean_tmp(two.backing[0])
        tmp = sorted(os.listdir(os.path.join(two.backing[0], ".stashfs", "tmp")))
        assert len(tmp) == 4, tmp        # two live instances: a dir and a lock each


@pytest.mark.parametrize("other_commits_first", [False, True])
def test_sigkill_between_commit_and_records(two, other_commits_first):
    """SIGKILL daemon 1 after its merge committed but before the records of the
    change reached all linked streams; restart it (after daemon 2 changed the
    stash too, or not): every stream has each committed change exactly once."""
    streams = ["audit%02d" % i for i in range(40)]     # a long window to hit
    two.sh(0, "; ".join("touch streams/%s && setfattr -n user.stash.linked_stash -v p streams/%s"
                        % (s, s) for s in streams))
    merge(two.path(0, "p.json"), {"k": 0})
    raw = lambda s: os.path.join(two.backing[1], "streams", s)
    for attempt in range(1, 6):
        sizes = {s: os.stat(raw(s)).st_size for s in streams}
        v = version(two.path(1, "p")) + 1
        t = threading.Thread(target=lambda: subprocess.run(
            ["sh", "-c", """echo '{"k":%d}' > p.json""" % attempt], cwd=two.mnt[0],
            capture_output=True))
        t.start()
        deadline = time.time() + 30
        while os.stat(raw(streams[0])).st_size == sizes[streams[0]]:
            time.sleep(0.001)
            assert time.time() < deadline, "daemon 1 never recorded its merge"
        two.daemons[0].kill()
        t.join(timeout=30)
        lacking = [s for s in streams if os.stat(raw(s)).st_size == sizes[s]]
        if lacking:
            break
        two.start(0)                # too late: all records were in; again
    else:
        pytest.fail("could not kill daemon 1 between its commit and its records")
    assert version(two.path(1, "p")) == v and doc(two.path(1, "p"))["k"] == attempt
    if other_commits_first:
        merge(two.path(1, "p.json"), {"other": 1})
    two.start(0)                    # replays the journal the killed instance left
    final = version(two.path(0, "p"))
    for s in streams:
        recs = records(two.path(0, "streams/" + s))
        seqs = [r["seq"] for r in recs]
        assert all(a < b for a, b in zip(seqs, seqs[1:])), (s, "seq reused")
        versions = sorted(r["version"] for r in recs)
        assert versions == list(range(1, final + 1)), \
            "streams/%s (%s when daemon 1 died): versions %s, want 1..%d" \
            % (s, "lacking" if s in lacking else "recorded", versions, final)
    assert_clean_tmp(two.backing[0])


def test_expiry_seen_from_both_sides_once(two):
    """A ttl set through daemon 1 expires for daemon 2 too, and the linked
    stream gets exactly one expire record, whichever daemon sweeps."""
    two.sh(0, "touch streams/ex && setfattr -n user.stash.linked_stash -v t streams/ex")
    two.sh(1, "echo data > t")
    two.sh(0, "setfattr -n user.stash.ttl -v 2 t")
    assert os.path.exists(two.path(1, "t"))
    deadline = time.time() + 8
    while time.time() < deadline and (os.path.exists(two.path(0, "t")) or
                                      os.path.exists(two.path(1, "t"))):
        time.sleep(0.1)
    assert not os.path.exists(two.path(0, "t")) and not os.path.exists(two.path(1, "t"))
    time.sleep(1.5)          # both sweepers have had their turn
    recs = records(two.path(1, "streams/ex"))
    assert [r["op"] for r in recs].count("expire") == 1, recs
