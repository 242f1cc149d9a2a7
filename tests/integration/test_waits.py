# SPDX-License-Identifier: MIT
"""Waiting reads (README "Waiting for a version"): reading NAME@V for a
version not committed yet, or NAME@next, blocks until it is, then prints
exactly that version; an interrupted wait ends with EINTR and prints
nothing, a removed or expired stash ends it with ENOENT; a commit by
another daemon over the same backing directory wakes it within about a
second; parked waits hold no daemon thread."""
import errno
import os
import signal
import subprocess
import threading
import time

import pytest


def start_cat(path):
    return subprocess.Popen(["cat", str(path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def still_waiting(p, secs=0.4):
    try:
        p.wait(timeout=secs)
    except subprocess.TimeoutExpired:
        return True
    return False


def test_wait_for_a_numbered_version(mnt):
    mnt.sh("echo one > p")
    cat3 = start_cat(mnt.path("p@3"))
    cat2 = start_cat(mnt.path("p@2"))
    assert still_waiting(cat3) and still_waiting(cat2, 0.1)
    # Its attributes say what it is: read-only, nothing yet.
    st = os.stat(mnt.path("p@3"))
    assert st.st_size == 0 and not st.st_mode & 0o222
    mnt.sh("echo two > p")
    assert cat2.communicate(timeout=10) == ("two\n", "") and cat2.returncode == 0
    assert still_waiting(cat3)
    # Versions 3 and 4 back to back: the waiter of 3 gets exactly 3.
    mnt.sh("echo three > p; echo four > p")
    assert cat3.communicate(timeout=10) == ("three\n", "") and cat3.returncode == 0
    # Past and current versions read at once, as before.
    assert mnt.sh("cat p@1 p@4").stdout == "one\nfour\n"


def test_wait_for_next(mnt):
    mnt.sh("""echo '{"a":1}' > p""")
    nxt = start_cat(mnt.path("p@next"))
    assert still_waiting(nxt)
    mnt.sh("""echo '{"b":2}' > p.json""")       # a merge is a commit too
    out, err = nxt.communicate(timeout=10)
    assert nxt.returncode == 0 and err == ""
    assert out == mnt.sh("cat p@2").stdout and '"b": 2' in out
    # A shell loop that reacts to every change, with no polling.
    loop = subprocess.Popen(["bash", "-c", "for i in 1 2; do cat p@next; done"],
                            cwd=str(mnt.mnt), stdout=subprocess.PIPE, text=True)
    for word in ("x", "y"):
        time.sleep(0.5)
        mnt.sh("echo %s > p" % word)
    assert loop.communicate(timeout=10)[0] == "x\ny\n"
    # O_NONBLOCK does not wait.
    with pytest.raises(OSError) as e:
        os.open(mnt.path("p@next"), os.O_RDONLY | os.O_NONBLOCK)
    assert e.value.errno == errno.EAGAIN
    # A missing stash has nothing to wait for.
    r = mnt.sh("cat nothere@next", check=False)
    assert r.returncode != 0 and "No such file" in r.stderr


def test_interrupted_wait(mnt):
    mnt.sh("echo one > p")
    t = time.monotonic()
    r = mnt.sh("timeout 2 cat p@next", check=False)
    took = time.monotonic() - t
    assert r.returncode == 124 and r.stdout == "" and took < 4, (r, took)
    # Ctrl-C: SIGINT ends the wait at once.
    cat = start_cat(mnt.path("p@7"))
    assert still_waiting(cat)
    t = time.monotonic()
    cat.send_signal(signal.SIGINT)
    assert cat.communicate(timeout=5)[0] == "" and cat.returncode == -signal.SIGINT
    assert time.monotonic() - t < 2
    # A program that handles the signal sees the open fail with EINTR.
    prog = r'''
import errno, os, signal, sys
def stop(sig, frame):
    raise InterruptedError(errno.EINTR, "interrupted")
signal.signal(signal.SIGALRM, stop)
signal.alarm(1)
try:
    os.open(sys.argv[1], os.O_RDONLY)
    print("opened")
except InterruptedError as e:
    print("EINTR", e.errno == errno.EINTR)
'''
    r = subprocess.run(["/usr/bin/python3", "-c", prog, mnt.path("p@next")],
                       capture_output=True, text=True, timeout=10)
    assert r.stdout == "EINTR True\n", r
    # The interrupted waits are gone: a commit wakes only the new waiter.
    nxt = start_cat(mnt.path("p@next"))
    assert still_waiting(nxt)
    mnt.sh("echo two > p")
    assert nxt.communicate(timeout=10)[0] == "two\n"


def test_removal_and_expiry_end_waits(mnt):
    mnt.sh("echo one > p; echo one > q")
    waits = [start_cat(mnt.path(n)) for n in ("p@next", "p@5")]
    assert still_waiting(waits[0])
    mnt.sh("rm p")
    for w in waits:
        out, err = w.communicate(timeout=5)
        assert w.returncode != 0 and out == "" and "No such file" in err
    # A ttl that runs out ends a wait too.
    w = start_cat(mnt.path("q@next"))
    assert still_waiting(w)
    mnt.sh("setfattr -n user.stash.ttl -v 1 q")
    out, err = w.communicate(timeout=10)
    assert w.returncode != 0 and "No such file" in err
    assert not os.path.exists(os.path.join(str(mnt.backing), "q"))


def test_shared_daemons_wake_each_other(env, tmp_path):
    env.mount(opts=["shared"])
    other = tmp_path / "mnt2"
    env.mount(opts=["shared"], mnt=other)
    env.sh("echo one > p")
    w = start_cat(os.path.join(str(env.mnt), "p@next"))
    w3 = start_cat(os.path.join(str(env.mnt), "p@3"))
    assert still_waiting(w)
    t = time.monotonic()
    with open(os.path.join(str(other), "p"), "w") as f:
        f.write("two\n")
    assert w.communicate(timeout=10)[0] == "two\n"
    took = time.monotonic() - t
    assert took < 1.5, took
    with open(os.path.join(str(other), "p"), "w") as f:
        f.write("three\n")
    assert w3.communicate(timeout=10)[0] == "three\n"
    # And the other way round, a merge from the first daemon.
    w = start_cat(os.path.join(str(other), "p@next"))
    assert still_waiting(w)
    env.sh("echo four > p")
    assert w.communicate(timeout=10)[0] == "four\n"
    print("woken %.2f s after another daemon's commit" % took)


def ops_per_second(mnt, secs=1.5):
    """Replace and read back another stash for @secs: rounds per second."""
    n = 0
    path = mnt.path("busy")
    end = time.monotonic() + secs
    while time.monotonic() < end:
        with open(path, "w") as f:
            f.write("round %d\n" % n)
        with open(path) as f:
            assert f.read() == "round %d\n" % n
        os.stat(path)
        n += 1
    return n / secs


def daemon_threads(pid):
    with open("/proc/%d/status" % pid) as f:
        return int(next(l.split()[1] for l in f if l.startswith("Threads:")))


def test_thousand_waiters_cost_nothing(mnt):
    """1,000 parked waiters hold no daemon thread each, and other operations
    go on meanwhile.  Their speed beside the waiters is printed, not
    asserted (a shared machine's timings make no test)."""
    mnt.sh("echo zero > p; echo 0 > busy")
    pid = mnt.daemons[0].pid()
    before = ops_per_second(mnt)
    threads_alone = daemon_threads(pid)
    got = []
    lock = threading.Lock()

    def waiter():
        with open(mnt.path("p@next")) as f:
            text = f.read()
        with lock:
            got.append(text)

    threads = [threading.Thread(target=waiter) for _ in range(1000)]
    for t in threads:
        t.start()
    # Let them all park (each open is one request the daemon holds).
    time.sleep(2)
    assert not got
    threads_parked = daemon_threads(pid)
    during = ops_per_second(mnt)
    assert during > 0, "nothing else was served while 1000 waiters were parked"
    mnt.sh("echo one > p")
    for t in threads:
        t.join(timeout=30)
    assert len(got) == 1000 and set(got) == {"one\n"}
    after = ops_per_second(mnt)
    print("daemon threads: %d alone, %d with 1000 parked waiters; replace+read+stat"
          " rounds/s: %.0f / %.0f alone (before / after), %.0f with them (ratio %.2f)"
          % (threads_alone, threads_parked, before, after, during, during / min(before, after)))
    # No thread per waiter: libfuse's pool may grow by its few workers, not by 1000.
    assert threads_parked < threads_alone + 100, (threads_alone, threads_parked)
