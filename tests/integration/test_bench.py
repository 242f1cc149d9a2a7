# SPDX-License-Identifier: MIT
"""Smoke test of tools/bench: every workload runs to completion on a stashfs
mount and on a plain directory, prints parseable JSON with a positive rate,
and concurrent merges into one stash lose nothing.  No timing assertions:
this checks the benchmark works, not how fast anything is."""
import json
import os
import subprocess

import pytest

from conftest import ROOT, stashfs_bin

WORKLOADS = ["read", "read-changed", "stat", "replace", "replace-fsync", "append",
             "create-unlink", "create-new", "merge", "merge-shared"]


def bench_bin():
    path = os.path.join(os.environ.get("STASHFS_BUILD", os.path.join(ROOT, "build")),
                        "tools", "bench")
    if not os.path.exists(path):
        pytest.skip("bench not built: %s" % path)
    return path


def bench(directory, workload, *extra):
    r = subprocess.run([bench_bin(), "--dir", str(directory), "--workload", workload,
                        "--ops", "20" if "--size" in extra else "200", "--json"] + list(extra),
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert len(lines) == 1, r.stdout
    return json.loads(lines[0])


@pytest.mark.parametrize("workload", WORKLOADS)
def test_bench_stashfs(mnt, workload):
    for threads in ("1", "2"):
        out = bench(mnt.mnt, workload, "--threads", threads, "--label", "smoke")
        assert out["mode"] == "stashfs" and out["fstype"] == "fuse.stashfs"
        assert out["workload"] == workload and out["label"] == "smoke"
        assert out["ok"] is True
        assert out["ops"] == 200 and out["ops_per_s"] > 0
        assert 0 < out["p50_us"] <= out["p90_us"] <= out["p99_us"] <= out["max_us"]
        if workload == "merge-shared":
            assert out["keys"] == 200 and out["lost"] == 0


@pytest.mark.parametrize("workload", WORKLOADS)
def test_bench_plain(tmp_path, workload):
    d = tmp_path / "plain"
    d.mkdir()
    for threads in ("1", "2"):
        out = bench(d, workload, "--threads", threads)
        assert out["mode"] == "plain" and out["ok"] is True
        assert out["ops"] == 200 and out["ops_per_s"] > 0
        if workload == "merge-shared":
            # One writer loses nothing even on a plain directory; two may
            # overwrite each other's keys there, never more than they wrote.
            assert out["keys"] == 200
            assert out["lost"] == 0 if threads == "1" else 0 <= out["lost"] <= out["keys"]


def test_bench_merge_shared_eight_threads(mnt):
    out = bench(mnt.mnt, "merge-shared", "--threads", "8")
    assert out["lost"] == 0 and out["keys"] == 200
    # the stash holds every unique key, as a user reading it sees
    with open(mnt.path("shared")) as f:
        doc = json.load(f)
    assert sum(1 for k in doc if k.startswith("u")) == 200


def test_bench_workloads_keep_to_their_own_documents(mnt):
    """A schema bound or a stream linked by one run must not weigh on the
    documents of another workload run later on the same mount."""
    for wl in ("merge-schema", "merge-stream", "merge", "merge-shared"):
        bench(mnt.mnt, wl)
    for name in ("doc", "shared"):
        attrs = os.listxattr(mnt.path(name))
        assert "user.stash.schema" not in attrs, name
    assert "user.stash.schema" in os.listxattr(mnt.path("sdoc"))


def test_bench_text_output_and_mode_override(mnt, tmp_path):
    r = subprocess.run([bench_bin(), "--dir", str(mnt.mnt), "--workload", "replace",
                        "--seconds", "0.2"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("replace stashfs threads=1 ") and "ops/s=" in r.stdout
    # the careful client's protocol also works on the mount when asked for
    out = bench(mnt.mnt, "replace", "--mode", "plain")
    assert out["mode"] == "plain" and out["fstype"] == "fuse.stashfs"


def test_bench_hooks(mnt, tmp_path):
    # On stashfs the hooks run or say "unsupported"; on a plain dir they
    # have nothing to hook into.  Either way: exit 0, one JSON line.
    for wl in ("merge-schema", "merge-stream"):
        out = bench(mnt.mnt, wl)
        assert out.get("unsupported") or (out["ops"] == 200 and out["ok"] is True)
        if wl == "merge-schema" and not out.get("unsupported"):
            assert isinstance(out["schema_enforced"], bool)
        if wl == "merge-stream" and not out.get("unsupported"):
            # every merge of the linked stash appended its record
            assert out["stream_bytes"] > 0
        d = tmp_path / wl
        d.mkdir()
        assert bench(d, wl)["unsupported"] is True


def test_bench_usage_errors(tmp_path):
    for args in ([], ["--dir", str(tmp_path)], ["--dir", str(tmp_path), "--workload", "nope"],
                 ["--dir", str(tmp_path), "--workload", "read", "--ops", "5", "--seconds", "1"]):
        r = subprocess.run([bench_bin()] + args, capture_output=True, text=True, timeout=30)
        assert r.returncode != 0


def test_ab_bench_runs_two_builds(tmp_path):
    """tools/ab-bench.sh mounts each build in turn, runs bench and prints one
    table row per cell, leaving no mount and no daemon behind."""
    from conftest import stashfs_bin
    env = dict(os.environ, WORKLOADS="read replace", THREADS="1", ROUNDS="1",
               BENCH_SECONDS="0.2", BENCH=bench_bin(), BENCH_TMP=str(tmp_path))
    r = subprocess.run(["bash", os.path.join(ROOT, "tools", "ab-bench.sh"),
                        "old=" + stashfs_bin(), "new=" + stashfs_bin()],
                       capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 0, r.stderr
    rows = [l for l in r.stdout.splitlines() if l.startswith("| read |") or
            l.startswith("| replace |")]
    assert len(rows) == 2 and all(l.count("µs") == 2 for l in rows), r.stdout
    assert list(tmp_path.iterdir()) == []        # its temp dir is gone


def test_bench_counts_requests_per_op(mnt):
    """Every stashfs run reports the daemon's requests per op, read from
    user.stash.requests: open, read and release for a 4 KiB read."""
    out = bench(mnt.mnt, "read")
    req = out["requests"]
    assert req["open"] == req["read"] == req["release"] == 1.0
    # At most a lookup or two of the file bench made in its setup.
    assert set(req) <= {"open", "read", "release", "lookup"} and req.get("lookup", 0) <= 0.01
    assert 3.0 <= out["requests_per_op"] <= 3.01
    rt = bench(mnt.mnt, "roundtrip")
    assert rt["ok"] and rt["requests"] == {"getxattr": 1.0}


def test_bench_roundtrip_needs_stashfs(tmp_path):
    r = subprocess.run([bench_bin(), "--dir", str(tmp_path), "--workload", "roundtrip",
                        "--ops", "10", "--json"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["unsupported"] is True and "counters" in out["reason"]


@pytest.mark.parametrize("workload", ["read-big", "replace-big"])
def test_bench_big_files(mnt, tmp_path, workload):
    plain = tmp_path / "plain"
    plain.mkdir()
    for d in (mnt.mnt, plain):
        out = bench(d, workload, "--size", "4M")
        assert out["ok"] and out["bytes"] == 4 << 20 and out["mib_per_s"] > 0
    # The file the runs read and replace is whole on both sides.
    assert os.path.getsize(mnt.path("big-0")) == 4 << 20
    assert os.path.getsize(plain / "big-0") == 4 << 20


def test_bench_create_new_makes_new_names_and_removes_them(mnt, tmp_path):
    """create-new is `echo > NAME` for a new NAME each op: on stashfs one
    CREATE per op (no name reused), on a plain directory the careful
    client's temp file renamed to the new name; after the run nothing it
    made is left, in the mount or behind it."""
    out = bench(mnt.mnt, "create-new")
    assert out["requests"]["create"] == 1.0 and out["requests"]["flush"] == 1.0
    assert [n for n in os.listdir(str(mnt.mnt)) if n.startswith(("new-", ".bench"))] == []
    assert [n for n in os.listdir(str(mnt.backing)) if n.startswith("new-")] == []
    plain = tmp_path / "plain"
    plain.mkdir()
    out = bench(plain, "create-new", "--threads", "2")
    assert out["mode"] == "plain" and out["ops"] == 200
    assert list(plain.iterdir()) == []
