# SPDX-License-Identifier: MIT
"""stashctl: show/set/follow on a mount, validate offline, fsck on stopped backing dirs."""
import json
import os
import re
import signal
import subprocess
import time

import pytest

from stashctl_util import stashctl_bin


def ctl(*args, **kw):
    kw.setdefault("timeout", 60)
    return subprocess.run([stashctl_bin()] + [str(a) for a in args], capture_output=True,
                          text=True, **kw)


def field(text, name):
    """Value of an aligned `name  value` line of `stashctl show`."""
    m = re.search(r"^%s +(.*)$" % re.escape(name), text, re.M)
    assert m, "no %s in:\n%s" % (name, text)
    return m.group(1)


# ---- show ------------------------------------------------------------------

def test_show_stash_text_and_json(mnt):
    mnt.sh("echo '{\"a\":1}' > p; echo '{\"b\":2}' > p.json; setfattr -n user.note -v hi p")
    r = ctl("show", mnt.path("p"))
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert field(out, "path") == mnt.path("p")
    assert field(out, "mount") == str(mnt.mnt)
    assert field(out, "name") == "p"
    assert field(out, "kind") == "stash"
    assert field(out, "size") == str(os.stat(mnt.path("p")).st_size)
    assert field(out, "mode").startswith("0644 -rw-r--r--")
    assert field(out, "owner") == "0:0"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", field(out, "mtime"))
    assert field(out, "version") == os.getxattr(mnt.path("p"), "user.stash.version").decode()
    for absent in ("schema", "linked_stash", "error"):
        assert field(out, absent) == "-"
    assert field(out, "user.note") == "hi"

    r = ctl("show", "--json", mnt.path("p"))
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["kind"] == "stash" and doc["name"] == "p" and doc["mount"] == str(mnt.mnt)
    assert doc["version"] == int(os.getxattr(mnt.path("p"), "user.stash.version"))
    assert doc["size"] == os.stat(mnt.path("p")).st_size
    assert doc["mode"] == "0644" and doc["uid"] == 0
    for key in ("sha256", "schema", "ttl", "persistent", "expires", "linked_stash", "seq", "error"):
        assert key in doc
    assert doc["schema"] is None and doc["error"] is None
    assert doc["xattrs"]["user.note"] == "hi"
    assert doc["xattrs"]["user.stash.version"] == str(doc["version"])


def test_show_kinds_and_errors(mnt):
    mnt.sh("mkdir -p team/x; echo '{}' > team/x/p; touch streams/log; "
           "echo '{\"type\":\"object\"}' > schemas/s")
    kinds = {"team/x/p": "stash", "team/x/p.json": "view", "streams/log": "stream",
             "schemas/s": "schema", "team": "directory", "": "directory"}
    for name, kind in kinds.items():
        doc = json.loads(ctl("show", "--json", mnt.path(name)).stdout)
        assert doc["kind"] == kind, name
        assert doc["name"] == name
    # Relative paths resolve from the working directory.
    r = ctl("show", "--json", "x/p", cwd=mnt.path("team"))
    assert json.loads(r.stdout)["name"] == "team/x/p"
    # Off a mount (the backing file, /tmp): no store to answer, a clear failure.
    for off in (str(mnt.backing / "team" / "x" / "p"), "/tmp"):
        for args in (["show"], ["show", "--json"]):
            r = ctl(*args, off)
            assert r.returncode == 1 and r.stdout == "", off
            assert "not on a stashfs mount" in r.stderr and off in r.stderr, off
    r = ctl("show", mnt.path("missing"))
    assert r.returncode == 1 and "No such file or directory" in r.stderr
    assert ctl("show").returncode == 2


def test_show_error_after_refused_write(mnt):
    mnt.sh("echo '{\"a\":1}' > p")
    r = mnt.sh("echo '{bad' > p.json", check=False)
    assert r.returncode != 0
    doc = json.loads(ctl("show", "--json", mnt.path("p")).stdout)
    assert doc["error"] and "invalid JSON" in doc["error"]


# ---- set -------------------------------------------------------------------

def test_set_metadata(mnt):
    mnt.sh("echo '{\"a\":1}' > p; touch streams/log; "
           "echo '{\"type\":\"object\",\"required\":[\"a\"]}' > schemas/s")
    r = ctl("set", mnt.path("p"), "ttl=3600", "persistent=1", "schema=s", "user.owner=agent-7")
    assert r.returncode == 0, r.stderr
    x = lambda n, p="p": os.getxattr(mnt.path(p), n)
    assert x("user.stash.ttl") == b"3600"
    assert x("user.stash.persistent") == b"1"
    assert x("user.stash.schema") == b"s"
    assert x("user.owner") == b"agent-7"
    r = ctl("set", mnt.path("streams/log"), "link=p")
    assert r.returncode == 0, r.stderr
    assert x("user.stash.linked_stash", "streams/log") == b"p"
    # An empty value removes ttl, schema and link.
    assert ctl("set", mnt.path("p"), "ttl=", "schema=").returncode == 0
    assert ctl("set", mnt.path("streams/log"), "link=").returncode == 0
    names = os.listxattr(mnt.path("p")) + os.listxattr(mnt.path("streams/log"))
    for gone in ("user.stash.ttl", "user.stash.schema", "user.stash.linked_stash"):
        assert gone not in names
    mnt.sh("echo '{\"b\":2}' > p.json")
    assert (mnt.mnt / "streams" / "log").read_text() == ""


def test_set_refusals(mnt):
    mnt.sh("echo '{\"a\":1}' > p; echo '{\"type\":\"object\",\"required\":[\"z\"]}' > schemas/need-z")
    # Bad values are caught before anything changes: the whole command is refused.
    r = ctl("set", mnt.path("p"), "persistent=0", "ttl=soon")
    assert r.returncode == 2 and "ttl" in r.stderr
    assert "user.stash.persistent" not in os.listxattr(mnt.path("p"))
    assert ctl("set", mnt.path("p"), "persistent=yes").returncode == 2
    assert ctl("set", mnt.path("p"), "colour=blue").returncode == 2
    assert ctl("set", mnt.path("p"), "ttl").returncode == 2
    # The daemon's refusals: errno text and a hint.
    r = ctl("set", mnt.path("p"), "schema=missing")
    assert r.returncode == 1
    assert "Invalid argument" in r.stderr and "schema" in r.stderr
    r = ctl("set", mnt.path("p"), "schema=need-z")
    assert r.returncode == 1 and "Invalid argument" in r.stderr
    assert "user.stash.schema" not in os.listxattr(mnt.path("p"))
    # The store's own attributes: the daemon ignores them (copies carry
    # them), stashctl says they are read-only.
    for key in ("user.stash.version", "sha256"):
        r = ctl("set", mnt.path("p"), key + "=7")
        assert r.returncode == 2 and "read-only" in r.stderr, key
    assert os.getxattr(mnt.path("p"), "user.stash.version") == b"1"
    r = ctl("set", mnt.path("p"), "link=q")
    assert r.returncode == 1 and "streams/" in r.stderr
    r = ctl("set", mnt.path("nope"), "ttl=1")
    assert r.returncode == 1 and "No such file or directory" in r.stderr


def test_set_prints_reason_left_by_daemon(mnt):
    """When a refusal changes user.stash.error, set shows the new reason."""
    mnt.sh("echo '{\"type\":\"object\",\"required\":[\"z\"]}' > schemas/need-z")
    mnt.sh("echo '{\"z\":1}' > p")
    assert ctl("set", mnt.path("p"), "schema=need-z").returncode == 0
    r = mnt.sh("echo '{\"z\":null}' > p.json", check=False)
    assert r.returncode != 0
    reason = os.getxattr(mnt.path("p"), "user.stash.error").decode()
    assert "z" in reason
    doc = json.loads(ctl("show", "--json", mnt.path("p")).stdout)
    assert doc["error"] == reason and doc["schema"] == "need-z"


# ---- follow ----------------------------------------------------------------

def read_lines(proc, n, timeout=10):
    """n lines of proc's stdout, or fail after timeout."""
    lines, deadline = [], time.time() + timeout
    os.set_blocking(proc.stdout.fileno(), False)
    buf = b""
    while len(lines) < n:
        assert time.time() < deadline, "got only %r" % lines
        chunk = proc.stdout.read()
        if chunk:
            buf += chunk
            *done, buf = buf.split(b"\n")
            lines += [l.decode() for l in done]
        else:
            time.sleep(0.05)
    return lines


def test_follow_pretty_then_new_records(mnt):
    mnt.sh("echo '{}' > p; touch streams/log; setfattr -n user.stash.linked_stash -v p streams/log")
    for i in range(3):
        mnt.sh("echo '{\"k\":%d}' > p.json" % i)
    p = subprocess.Popen([stashctl_bin(), "follow", "-n", "2", mnt.path("streams/log")],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        first = read_lines(p, 2)
        assert first[0].startswith("#2 ") and first[1].startswith("#3 ")
        assert re.match(r"#3 \S+Z merge +p v\d+ uid 0 pid \d+ \(\S+\) \{\"k\":2\}$", first[1])
        mnt.sh("echo '{\"k\":3}' > p.json")
        mnt.sh("echo 'a note' >> streams/log")
        new = read_lines(p, 2)
        assert new[0].startswith("#4 ") and new[0].endswith('{"k":3}')
        assert new[1] == "a note"
    finally:
        p.send_signal(signal.SIGTERM)
        assert p.wait(timeout=10) == 0


def test_follow_shows_numbers_as_written(mnt):
    mnt.sh("echo '{}' > p; touch streams/log; setfattr -n user.stash.linked_stash -v p streams/log")
    mnt.sh("""echo '{"k":1E+2,"z":-0,"pi":3.141592653589793238462643}' > p.json""")
    data = '{"k":1E+2,"z":-0,"pi":3.141592653589793238462643}'
    with open(mnt.path("streams/log")) as f:
        assert ('"data":%s' % data) in f.read().splitlines()[-1]
    r = subprocess.run([stashctl_bin(), "follow", "-n", "1", "--timeout", "0.2",
                        mnt.path("streams/log")], capture_output=True, text=True, timeout=20)
    assert r.stdout.splitlines()[-1].endswith(" " + data), r.stdout


def test_follow_raw_and_timeout(mnt):
    mnt.sh("printf 'one\\ntwo\\nthree\\n' >> streams/s")
    r = ctl("follow", "--raw", "--timeout", "0", mnt.path("streams/s"))
    assert r.returncode == 0 and r.stdout == "one\ntwo\nthree\n"
    r = ctl("follow", "-n", "1", "-t", "0", "--raw", mnt.path("streams/s"))
    assert r.stdout == "three\n"
    r = ctl("follow", "-n", "0", "-t", "0", mnt.path("streams/s"))
    assert r.stdout == ""
    r = ctl("follow", "-n", "9", "-t", "0", mnt.path("streams/s"))
    assert r.stdout == "one\ntwo\nthree\n"
    t = time.time()
    r = ctl("follow", "-t", "0.5", mnt.path("streams/s"))
    assert r.returncode == 0 and 0.4 < time.time() - t < 5
    assert ctl("follow", "-t", "0", mnt.path("streams/none")).returncode == 1
    assert ctl("follow", "-t", "0", mnt.path("streams")).returncode == 1


# ---- validate --------------------------------------------------------------

def test_validate_offline(tmp_path):
    d = tmp_path / "schemas"
    d.mkdir()
    (d / "task").write_text('{"type":"object","properties":{"status":{"$ref":"status"}},'
                            '"required":["status"]}')
    (d / "status").write_text('{"enum":["active","completed"]}')
    (tmp_path / "good.json").write_text('{"status":"active"}')
    (tmp_path / "bad.json").write_text('{"status":"done"}')
    (tmp_path / "broken.json").write_text('{"status":')
    (tmp_path / "dup.json").write_text('{"status":"active","status":"active"}')
    r = ctl("validate", d / "task", tmp_path / "good.json")
    assert r.returncode == 0 and "valid" in r.stdout
    r = ctl("validate", d / "task", tmp_path / "bad.json")
    assert r.returncode == 1
    assert "/status" in r.stdout and "enum" in r.stdout and "invalid" in r.stdout
    r = ctl("validate", d / "task", tmp_path / "broken.json")
    assert r.returncode == 1 and "not JSON" in r.stdout
    # As strict as the daemon: duplicate keys are not JSON here.
    assert ctl("validate", d / "task", tmp_path / "dup.json").returncode == 1
    r = ctl("validate", d / "task", "-", input='{"status":"completed"}')
    assert r.returncode == 0
    # A schema that does not compile is an error, not a verdict.
    (d / "loop").write_text('{"$ref":"missing"}')
    r = ctl("validate", d / "loop", tmp_path / "good.json")
    assert r.returncode == 2 and "missing" in r.stderr
    # A reference to a schema not there yet stops only what reaches it.
    (d / "later").write_text('{"properties":{"n":{"$ref":"notyet"}}}')
    assert ctl("validate", d / "later", tmp_path / "good.json").returncode == 0
    r = ctl("validate", d / "later", "-", input='{"n":1}')
    assert r.returncode == 2 and "unresolved reference to schema notyet" in r.stderr
    (tmp_path / "notschema").write_text('{"type":"nope"}')
    assert ctl("validate", tmp_path / "notschema", tmp_path / "good.json").returncode == 2
    assert ctl("validate", d / "task").returncode == 2


def test_validate_resolves_names_like_the_mount(env):
    """A schema under BACKING/schemas/a/ refers to others by their store names."""
    env.mount()
    env.sh("mkdir -p schemas/a; echo '{\"enum\":[1,2]}' > schemas/a/n; "
           "echo '{\"type\":\"object\",\"properties\":{\"x\":{\"$ref\":\"n\"}}}' > schemas/a/t; "
           "echo '{\"$ref\":\"stashfs:///schemas/a/t\"}' > schemas/top")
    doc = env.tmp / "d.json"
    doc.write_text('{"x":3}')
    for schema in (env.mnt / "schemas" / "a" / "t", env.mnt / "schemas" / "top",
                   env.backing / "schemas" / "a" / "t", env.backing / "schemas" / "top"):
        r = ctl("validate", schema, doc)
        assert r.returncode == 1 and "/x" in r.stdout, (schema, r.stdout, r.stderr)
    doc.write_text('{"x":2}')
    assert ctl("validate", env.backing / "schemas" / "top", doc).returncode == 0


# ---- fsck ------------------------------------------------------------------

def stopped_store(env, script):
    """A backing directory filled through a mount, then the daemon stopped cleanly."""
    env.mount()
    env.sh(script)
    d = env.daemons[-1]
    assert d.stop() == 0
    return env.backing


def fsck(backing, *args):
    return ctl("fsck", *args, backing)


def test_fsck_clean_store(env):
    b = stopped_store(env, "echo '{\"a\":1}' > p; mkdir -p t/x; echo hi > t/x/q; "
                           "echo '{\"type\":\"object\"}' > schemas/s; "
                           "setfattr -n user.stash.schema -v s p; touch streams/log; "
                           "setfattr -n user.stash.linked_stash -v p streams/log; "
                           "echo '{\"b\":2}' > p.json")
    r = fsck(b)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "0 problems found" in r.stdout
    assert fsck(b, "--repair").returncode == 0


def test_fsck_dead_instance_temp_files(env):
    env.mount()
    env.sh("echo '{\"a\":1}' > p")
    env.daemons[-1].kill()       # a crash: its temp directory stays
    tmp = env.backing / ".stashfs" / "tmp"
    inst = [e for e in os.listdir(tmp) if not e.endswith(".lock")]
    assert len(inst) == 1
    (tmp / inst[0] / "t17").write_text("half a commit")
    (tmp / inst[0] / "t18").write_text("another")
    r = fsck(env.backing)
    assert r.returncode == 1
    assert re.search(r"problem +\.stashfs/tmp/%s: leftover temp directory of dead instance"
                     r" .*\(2 temp files\)" % re.escape(inst[0]), r.stdout)
    assert (tmp / inst[0] / "t17").exists()      # a check changes nothing
    r = fsck(env.backing, "--repair")
    assert r.returncode == 0, r.stdout
    assert "removed 2 temp files and the directory" in r.stdout
    assert os.listdir(tmp) == []
    r = fsck(env.backing)
    assert r.returncode == 0 and "0 problems found" in r.stdout
    env.mount()
    assert (env.mnt / "p").read_text() == '{"a":1}\n'


def test_fsck_keeps_journals_of_dead_instances(env):
    b = stopped_store(env, "echo x > p")
    tmp = b / ".stashfs" / "tmp"
    (tmp / "4242-dead").mkdir()
    (tmp / "4242-dead" / "j7").write_text('{"stash":"p","record":{},"streams":[]}')
    (tmp / "4242-dead" / "t8").write_text("temp")
    r = fsck(b)
    assert r.returncode == 1
    assert "stream journal" in r.stdout and "no 4242-dead.lock" in r.stdout
    r = fsck(b, "--repair")
    assert "removed 1 temp file" in r.stdout and "created 4242-dead.lock" in r.stdout
    assert r.returncode == 0, r.stdout
    # The journal stays for the daemon, which finds it through the lock file.
    assert sorted(os.listdir(tmp / "4242-dead")) == ["j7"]
    assert (tmp / "4242-dead.lock").exists()
    r = fsck(b)
    assert r.returncode == 0 and "note" in r.stdout


def test_fsck_live_daemon(env):
    env.mount()
    env.sh("echo x > p")
    r = fsck(env.backing)
    assert r.returncode == 0 and "is alive" in r.stdout
    r = fsck(env.backing, "--repair")
    assert r.returncode == 2 and "stop it" in r.stderr
    # Given the mount instead of the backing directory.
    r = fsck(env.mnt)
    assert r.returncode == 2 and "backing directory" in r.stderr
    assert fsck(env.tmp / "nowhere").returncode == 2


def test_fsck_bad_metadata(env):
    b = stopped_store(env, "echo '{\"a\":1}' > p; echo two > q; touch streams/log; echo x > r")
    os.setxattr(b / "p", "user.stash.version", b"12abc")
    os.setxattr(b / "q", "user.stash.version", b"banana")
    os.setxattr(b / "q", "user.stash.ttl", b"tomorrow")
    os.setxattr(b / "r", "user.stash.persistent", b"yes")
    os.setxattr(b / "streams" / "log", "user.stash.linked_stash", b"../../etc/passwd")
    os.setxattr(b / "r", "user.stash.linked_stash", b"p")
    r = fsck(b)
    assert r.returncode == 1
    out = r.stdout
    assert re.search(r'problem +p: user.stash.version "12abc" is not a decimal number', out)
    assert re.search(r'problem +q: user.stash.version "banana"', out)
    assert re.search(r'problem +q: user.stash.ttl "tomorrow"', out)
    assert re.search(r'problem +r: user.stash.persistent "yes"', out)
    assert re.search(r'problem +streams/log: user.stash.linked_stash "../../etc/passwd"', out)
    assert re.search(r"problem +r: user.stash.linked_stash on something that is not a stream", out)
    r = fsck(b, "--repair")
    assert r.returncode == 1        # the links are reported, not guessed
    assert os.getxattr(b / "p", "user.stash.version") == b"12"
    assert os.getxattr(b / "q", "user.stash.version") == b"1"
    assert "user.stash.ttl" not in os.listxattr(b / "q")
    assert os.getxattr(b / "r", "user.stash.persistent") == b"1"
    assert os.getxattr(b / "streams" / "log", "user.stash.linked_stash") == b"../../etc/passwd"
    assert (b / "p").read_text() == '{"a":1}\n' and (b / "q").read_text() == "two\n"
    # The daemon takes the repaired store; versions go on from the repaired number.
    env.mount()
    env.sh("echo '{\"b\":2}' > p.json")
    assert os.getxattr(env.path("p"), "user.stash.version") == b"13"


def test_fsck_bound_stash_that_no_longer_validates(env):
    b = stopped_store(env, "echo '{\"type\":\"object\"}' > schemas/doc; echo '{\"a\":1}' > p; "
                           "setfattr -n user.stash.schema -v doc p; "
                           "mkdir d; setfattr -n user.stash.schema -v doc d; "
                           "echo '{\"type\":\"object\"}' > schemas/gone; echo '{}' > q; "
                           "setfattr -n user.stash.schema -v gone q")
    # Behind the daemon's back: a stricter schema, a removed one, a broken one.
    (b / "schemas" / "doc").write_text('{"type":"object","required":["z"]}')
    os.unlink(b / "schemas" / "gone")
    (b / "schemas" / "broken").write_text('{"type":12}')
    (b / "schemas" / "notjson").write_text('{"type":')
    r = fsck(b)
    assert r.returncode == 1
    out = r.stdout
    assert re.search(r'problem +p: no longer validates against schema doc: .*"z"', out)
    assert re.search(r"problem +q: bound to schema gone, which is unusable", out)
    assert re.search(r"problem +schemas/broken: not a valid schema", out)
    assert re.search(r"problem +schemas/notjson: not a valid schema", out)
    assert not re.search(r"problem +d:", out)    # the directory's schema compiles
    r = fsck(b, "--repair")
    assert r.returncode == 1 and not re.search(r"^repaired", r.stdout, re.M)
    assert (b / "p").read_text() == '{"a":1}\n'
    assert os.getxattr(b / "p", "user.stash.schema") == b"doc"


def test_fsck_takes_the_names_the_daemon_takes(env):
    # stashctl judges schema names and link targets by core's one rule:
    # what the daemon accepted through the mount is no problem offline.
    b = stopped_store(env, "mkdir -p schemas/team; echo '{\"type\":\"object\"}' > schemas/team/s; "
                           "echo '{}' > p; setfattr -n user.stash.schema -v 'team//s' p; "
                           "touch streams/log; "
                           "setfattr -n user.stash.linked_stash -v 'd//p' streams/log")
    assert os.getxattr(b / "p", "user.stash.schema") == b"team//s"
    assert os.getxattr(b / "streams" / "log", "user.stash.linked_stash") == b"d//p"
    r = fsck(b)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "0 problems found" in r.stdout
    # The names the daemon refuses stay problems.
    os.setxattr(b / "p", "user.stash.schema", b"../s")
    os.setxattr(b / "streams" / "log", "user.stash.linked_stash", b"a/.stashfs/p")
    r = fsck(b)
    assert r.returncode == 1
    assert re.search(r'problem +p: user.stash.schema "../s" is not a schema name', r.stdout)
    assert re.search(r'problem +streams/log: user.stash.linked_stash "a/.stashfs/p" is not',
                     r.stdout)


def test_fsck_planted_files(env):
    b = stopped_store(env, "mkdir -p team; echo x > team/p")
    os.symlink("/etc/passwd", b / "team" / "evil")
    os.symlink("../..", b / "loop")
    os.mkfifo(b / "pipe")
    (b / "team" / "p.json").write_text("{}")
    (b / "team" / ".stashfs-x").write_text("")
    r = fsck(b)
    assert r.returncode == 1
    out = r.stdout
    assert re.search(r"problem +team/evil: planted symlink \(-> /etc/passwd\)", out)
    assert re.search(r"problem +loop: planted symlink", out)
    assert re.search(r"problem +pipe: planted fifo", out)
    assert re.search(r"problem +team/p.json: name ends in .json", out)
    assert re.search(r"problem +team/.stashfs-x: reserved name", out)
    # Never removed: they are not the store's to delete.
    assert fsck(b, "--repair").returncode == 1
    assert os.path.islink(b / "team" / "evil") and os.path.exists(b / "pipe")


def test_fsck_format_marker(env):
    b = stopped_store(env, "echo x > p")
    fmt = b / ".stashfs" / "format"
    assert fmt.read_text() == "stashfs-format 1\n"
    fmt.unlink()
    r = fsck(b)
    assert r.returncode == 1 and re.search(r"problem +\.stashfs/format: missing", r.stdout)
    r = fsck(b, "--repair")
    assert r.returncode == 0 and fmt.read_text() == "stashfs-format 1\n"
    fmt.write_text("stashfs-format 9\n")
    r = fsck(b, "--repair")
    assert r.returncode == 1 and "unknown format marker" in r.stdout
    assert fmt.read_text() == "stashfs-format 9\n"
    # Not a backing directory at all.
    plain = env.tmp / "plain"
    plain.mkdir()
    r = fsck(plain)
    assert r.returncode == 1 and ".stashfs: missing" in r.stdout


def test_fsck_notes_ephemeral_objects_of_a_crashed_daemon(env):
    env.mount()
    env.sh("echo keep > p; echo scratch > e; setfattr -n user.stash.persistent -v 0 e")
    env.daemons[-1].kill()
    os.setxattr(env.backing / "p", "user.stash.ttl", b"99999999999")   # over 100 years
    r = fsck(env.backing, "--repair")
    assert re.search(r"note +e: ephemeral \(persistent=0\)", r.stdout)
    assert re.search(r'problem +p: user.stash.ttl "99999999999"', r.stdout)
    assert r.returncode == 0, r.stdout
    assert (env.backing / "e").exists()          # left for the daemon to remove
    env.mount()
    assert not os.path.exists(env.path("e")) and (env.mnt / "p").read_text() == "keep\n"
