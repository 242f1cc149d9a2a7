# SPDX-License-Identifier: MIT
"""Daemons on one backing directory know of each other; start-up options and
messages (ttl in seconds, no libfuse noise at start)."""
import os
import subprocess

from conftest import mounted, stashfs_bin

REMEDY = "only when every one of them runs with -o shared"


def second_daemon(env, opts, name):
    """Start another daemon on env's backing dir; it must refuse at once."""
    mnt = env.tmp / name
    mnt.mkdir()
    cmd = [stashfs_bin(), "-f"] + (["-o", ",".join(opts)] if opts else [])
    r = subprocess.run(cmd + [str(env.backing), str(mnt)], capture_output=True, text=True,
                       timeout=30, stdin=subprocess.DEVNULL)
    assert not mounted(mnt)
    return r


def test_alone_then_shared_refused(env):
    env.mount()
    env.sh("echo one > a")
    r = second_daemon(env, ["shared"], "m2")
    assert r.returncode != 0
    assert str(env.backing) in r.stderr and REMEDY in r.stderr
    # The first daemon's temp files are its own: still serving.
    env.sh("echo two > b; cat a b")
    assert (env.backing / "b").read_text() == "two\n"


def test_shared_then_alone_refused(env):
    env.mount(opts=["shared"])
    r = second_daemon(env, [], "m2")
    assert r.returncode != 0 and REMEDY in r.stderr
    r = second_daemon(env, ["persistent=1"], "m3")
    assert r.returncode != 0 and REMEDY in r.stderr


def test_alone_then_alone_refused(env):
    env.mount()
    r = second_daemon(env, [], "m2")
    assert r.returncode != 0 and REMEDY in r.stderr


def test_shared_daemons_start_together(env):
    env.mount(opts=["shared"])
    m2 = env.tmp / "m2"
    env.mount(opts=["shared"], mnt=m2)
    env.sh("echo hi > a")
    assert open(os.path.join(m2, "a")).read() == "hi\n"


def test_dead_daemon_does_not_block(env):
    d = env.mount()
    env.sh("echo kept > a")
    d.kill()
    # A daemon killed with SIGKILL leaves its lock file behind; its lock is gone.
    d = env.mount()
    assert env.sh("cat a").stdout == "kept\n"
    d.stop()
    d = env.mount(opts=["shared"])
    d.kill()
    env.mount()
    assert env.sh("cat a").stdout == "kept\n"


def test_ttl_option_takes_seconds_only(tmp_path):
    for bad in ("1k", "10M", "-1", "1.5", "x", "+5", "", "3153600001"):
        r = subprocess.run([stashfs_bin(), "-f", "-o", "ttl=" + bad, str(tmp_path / "b"),
                            str(tmp_path)], capture_output=True, text=True, timeout=30)
        assert r.returncode != 0, bad
        assert "ttl must be a whole number of seconds" in r.stderr, bad
    assert not mounted(tmp_path)


def test_start_logs_no_libfuse_complaint(env):
    d = env.mount()
    env.sh("echo x > a; cat a")
    d.stop()
    log = d.read_log()
    assert "serving" in log
    assert "Ignoring invalid" not in log and "max threads" not in log, log


def test_ttl_option_in_seconds_reaches_new_objects(env):
    env.mount(opts=["ttl=3153600000"])          # 100 years, the longest
    env.sh("echo x > p")
    assert os.getxattr(env.path("p"), "user.stash.ttl") == b"3153600000"
