# SPDX-License-Identifier: MIT
"""Schemas under /schemas and stashes bound to them (DESIGN 2.3, 2.6)."""
import json
import os
import subprocess
import threading
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
SCHEMA = os.path.join(HERE, "..", "data", "schemas", "task-progress.json")
GOOD = '{"task":"survey","status":"active","next_step":"read papers"}'


def read(p):
    with open(p, "rb") as f:
        return f.read()


def reason(mnt, name):
    return os.getxattr(mnt.path(name), "user.stash.error").decode()


@pytest.fixture
def bound(mnt):
    mnt.sh("cat %s > schemas/task-progress" % SCHEMA)
    mnt.sh("echo '%s' > p && setfattr -n user.stash.schema -v task-progress p" % GOOD)
    return mnt


def test_invalid_schema_refused(mnt):
    for bad in ('{"type": 12}', '{"minLength": -1}', '{"$ref": "#"}', 'not json'):
        r = mnt.sh("echo '%s' > schemas/bad" % bad, check=False)
        assert r.returncode != 0, bad
        assert "Invalid argument" in r.stderr
    # A refused first write leaves no name (no empty schema behind); a
    # refused replace keeps the schema and says why in user.stash.error.
    assert not os.path.exists(mnt.path("schemas/bad"))
    r = mnt.sh("echo '{}' > schemas/s; echo '{\"type\": 12}' > schemas/s; "
               "getfattr --only-values -n user.stash.error schemas/s", check=False)
    assert "schema" in r.stdout
    assert mnt.sh("cat schemas/s").stdout == "{}\n"


def test_binding_rules(mnt):
    mnt.sh("cat %s > schemas/task-progress" % SCHEMA)
    # Binding a stash whose content fails is refused.
    mnt.sh("""echo '{"task":"x"}' > old""")
    r = mnt.sh("setfattr -n user.stash.schema -v task-progress old", check=False)
    assert r.returncode != 0 and "Invalid argument" in r.stderr
    assert "user.stash.schema" not in os.listxattr(mnt.path("old"))
    # Unknown schema names and bad names are refused.
    mnt.sh("touch new")
    for name in ("nope", "../etc", "a/../b"):
        r = mnt.sh("setfattr -n user.stash.schema -v '%s' new" % name, check=False)
        assert r.returncode != 0, name
    # A new, empty stash can be bound; its first write must validate.
    mnt.sh("setfattr -n user.stash.schema -v task-progress new")
    r = mnt.sh("""echo '{"task":"x"}' > new""", check=False)
    assert r.returncode != 0
    assert read(mnt.path("new")) == b""
    mnt.sh("echo '%s' > new" % GOOD)
    assert json.loads(read(mnt.path("new")))["task"] == "survey"


def test_every_write_path_validated(bound):
    m = bound
    before = read(m.path("p"))
    refused = [
        """echo '{"task":"survey","status":"done","next_step":"x"}' > p""",     # replace
        """echo '{"status":"finished"}' > p.json""",                            # merge
        """echo '{"next_step":null}' > p.json""",                              # merge deletes required
        """echo 'trailing' >> p""",                                             # append
        "truncate -s 5 p",                                                      # truncate
        """echo '{"task":""}' > t && mv t p""",                                 # rename over
        """sed -i 's/active/gone/' p""",                                        # editor-style save
    ]
    for cmd in refused:
        r = m.sh(cmd, check=False)
        assert r.returncode != 0, cmd
        assert read(m.path("p")) == before, cmd
        assert "task-progress" in reason(m, "p"), cmd
    # What validates goes through every path, and the binding stays.
    m.sh("""echo '{"status":"completed","findings":[{"summary":"ok"}]}' > p.json""")
    m.sh("sed -i 's/survey/study/' p")
    m.sh("""printf '%s' '{"task":"t2","status":"blocked","next_step":"wait"}' > t2 && mv t2 p""")
    assert json.loads(read(m.path("p")))["task"] == "t2"
    assert os.getxattr(m.path("p"), "user.stash.schema") == b"task-progress"


def test_error_names_pointer_keyword_schema(bound):
    r = bound.sh("""echo '{"status":"done"}' > p.json""", check=False)
    assert r.returncode != 0 and "Invalid argument" in r.stderr
    why = reason(bound, "p")
    assert "/status" in why and "enum" in why and "task-progress" in why, why
    r = bound.sh("""echo '{"findings":[{"source":"x"}]}' > p.json""", check=False)
    assert r.returncode != 0
    why = reason(bound, "p")
    assert "/findings/0" in why and "required" in why, why


def test_directory_binding_inherited(mnt):
    mnt.sh("cat %s > schemas/task-progress" % SCHEMA)
    mnt.sh("mkdir -p agents/deep && setfattr -n user.stash.schema -v task-progress agents")
    mnt.sh("echo '%s' > agents/deep/a" % GOOD)
    assert os.getxattr(mnt.path("agents/deep/a"), "user.stash.schema") == b"task-progress"
    r = mnt.sh("""echo '{"task":"x"}' > agents/b""", check=False)
    assert r.returncode != 0
    # Created before the binding: not bound.
    mnt.sh("mkdir plain && echo '{}' > plain/x && setfattr -n user.stash.schema -v task-progress plain")
    mnt.sh("echo 'free text' > plain/x")


def test_directory_binding_that_cannot_be_copied_refuses_the_create(mnt):
    # A directory's binding set behind the daemon's back, longer than any
    # schema name: the new stash must not appear unbound.
    mnt.sh("mkdir d")
    os.setxattr(mnt.backing / "d", "user.stash.schema", b"s" * 600)
    r = mnt.sh("echo '{}' > d/p", check=False)
    assert r.returncode != 0
    assert not os.path.exists(mnt.backing / "d" / "p")
    assert not os.path.exists(mnt.path("d/p"))
    # Without the bad binding the same create goes through.
    os.removexattr(mnt.backing / "d", "user.stash.schema")
    mnt.sh("echo '{}' > d/p")
    assert read(mnt.path("d/p")) == b"{}\n"


def test_missing_schema_fails_closed_and_replacement_recompiles(bound):
    m = bound
    m.sh("rm schemas/task-progress")
    r = m.sh("""echo '{"next_step":"y"}' > p.json""", check=False)
    assert r.returncode != 0
    assert "missing" in reason(m, "p")
    # A new version of the schema: later writes use it.
    m.sh("""echo '{"type":"object","required":["task","owner"]}' > schemas/task-progress""")
    r = m.sh("""echo '{"next_step":"y"}' > p.json""", check=False)
    assert r.returncode != 0 and "owner" in reason(m, "p")
    m.sh("""echo '{"owner":"me"}' > p.json""")
    assert json.loads(read(m.path("p")))["owner"] == "me"


def test_schema_references_another_by_name(mnt):
    mnt.sh("""echo '{"type":"string","maxLength":3}' > schemas/short""")
    mnt.sh("""echo '{"type":"object","properties":{"code":{"$ref":"short"}}}' > schemas/rec""")
    mnt.sh("touch r && setfattr -n user.stash.schema -v rec r")
    mnt.sh("""echo '{"code":"abc"}' > r""")
    r = mnt.sh("""echo '{"code":"abcd"}' > r""", check=False)
    assert r.returncode != 0 and "maxLength" in reason(mnt, "r")


def test_schemas_refer_to_each_other_written_one_by_one(env):
    env.mount()
    # a refers to b before b exists: stored all the same.
    env.sh("""echo '{"type":"object","properties":{"next":{"$ref":"b"}}}' > schemas/a""")
    env.sh("touch p q && setfattr -n user.stash.schema -v a p")
    env.sh("""echo '{"other":1}' > p.json""")        # never reaches the reference
    r = env.sh("""echo '{"next":{"x":1}}' > p.json""", check=False)
    assert r.returncode != 0
    assert "/next: unresolved reference to schema b" in reason(env, "p")
    assert b"next" not in read(env.path("p"))
    # b, referring back to a: both resolve now, without a restart.
    env.sh("""echo '{"type":"object","required":["x"],"properties":{"prev":{"$ref":"a"}}}' > schemas/b""")
    env.sh("""echo '{"next":{"x":1,"prev":{"next":{"x":2}}}}' > p.json""")
    r = env.sh("""echo '{"next":{"x":1,"prev":{"next":{}}}}' > p.json""", check=False)
    assert r.returncode != 0 and 'required property "x"' in reason(env, "p")
    env.sh("setfattr -n user.stash.schema -v b q")
    env.sh("""echo '{"x":1,"prev":{"next":{"x":2}}}' > q.json""")
    r = env.sh("""echo '{"x":1,"prev":{"next":{}}}' > q.json""", check=False)
    assert r.returncode != 0 and 'required property "x"' in reason(env, "q")
    # Replacing b: a uses the new b at once.
    env.sh("""echo '{"type":"object","required":["y"]}' > schemas/b""")
    r = env.sh("""echo '{"next":{"x":1}}' > p.json""", check=False)
    assert r.returncode != 0 and 'required property "y"' in reason(env, "p")
    env.sh("""echo '{"next":{"y":1}}' > p.json""")
    # Deleting b is allowed; a stays, and refuses what reaches the reference.
    env.sh("rm schemas/b")
    r = env.sh("""echo '{"next":{"y":2}}' > p.json""", check=False)
    assert r.returncode != 0
    assert "/next: unresolved reference to schema b" in reason(env, "p")
    env.sh("""echo '{"next":null,"other":3}' > p.json""")
    r = env.sh("""echo '{"x":5}' > q.json""", check=False)
    assert r.returncode != 0 and "schema b is missing" in reason(env, "q")
    assert json.loads(read(env.path("p"))) == {"other": 3}
    assert json.loads(read(env.path("q")))["x"] == 1
    # Committed content stays on disk as it was; a restart sees the same.
    env.daemons[-1].stop()
    env.mount()
    r = env.sh("""echo '{"next":{"y":2}}' > p.json""", check=False)
    assert r.returncode != 0 and "unresolved reference to schema b" in reason(env, "p")
    env.sh("""echo '{"type":"object"}' > schemas/b""")
    env.sh("""echo '{"next":{"y":2}}' > p.json""")


def test_schema_written_through_another_shared_daemon_resolves(env):
    env.mount(opts=["shared"])
    env.mount(opts=["shared"], mnt=env.tmp / "mnt2")
    other = str(env.tmp / "mnt2")
    env.sh("""echo '{"properties":{"next":{"$ref":"b"}}}' > schemas/a""")
    env.sh("touch p && setfattr -n user.stash.schema -v a p")
    r = env.sh("""echo '{"next":1}' > p.json""", check=False)
    assert r.returncode != 0 and "unresolved reference to schema b" in reason(env, "p")
    with open(os.path.join(other, "schemas", "b"), "w") as f:
        f.write('{"type":"integer"}')
    env.sh("""echo '{"next":1}' > p.json""")
    r = env.sh("""echo '{"next":"x"}' > p.json""", check=False)
    assert r.returncode != 0 and "/next" in reason(env, "p") and "type" in reason(env, "p")
    os.unlink(os.path.join(other, "schemas", "b"))
    r = env.sh("""echo '{"next":2}' > p.json""", check=False)
    assert r.returncode != 0 and "unresolved reference to schema b" in reason(env, "p")
    assert json.loads(read(env.path("p"))) == {"next": 1}


def test_hostile_schema_cannot_hang(mnt):
    mnt.sh("""echo '{"type":"object","properties":{"s":{"pattern":"^(a+)+$"}}}' > schemas/evil""")
    mnt.sh("touch h && setfattr -n user.stash.schema -v evil h")
    start = time.monotonic()
    r = mnt.sh("""echo '{"s":"%s!"}' > h""" % ("a" * 5000), check=False, timeout=60)
    assert r.returncode != 0
    assert "limit" in reason(mnt, "h") or "pattern" in reason(mnt, "h")
    assert time.monotonic() - start < 60
    # The daemon still serves.
    mnt.sh("echo alive > ok && cat ok")


def test_rebinding_between_write_and_close_is_enforced(mnt):
    """A merge validated at write() is validated again at close if the stash
    was bound to another schema in between."""
    mnt.sh("""echo '{"type":"object"}' > schemas/loose""")
    mnt.sh("""echo '{"type":"object","properties":{"n":{"type":"string"}}}' > schemas/strict""")
    mnt.sh("""echo '{"m":1}' > p && setfattr -n user.stash.schema -v loose p""")
    fd = os.open(mnt.path("p.json"), os.O_WRONLY | os.O_TRUNC)
    os.write(fd, b'{"n": 5}')                       # fine under "loose"
    os.setxattr(mnt.path("p"), "user.stash.schema", b"strict")
    with pytest.raises(OSError):
        os.close(fd)                                # refused under "strict"
    assert json.loads(read(mnt.path("p"))) == {"m": 1}
    assert "strict" in reason(mnt, "p")


def test_concurrent_merges_each_checked(mnt):
    """Merges closed at the same moment may be committed together; each one
    is still checked against the document as the ones before it left it, so
    exactly as many land as the schema allows, and the others are refused
    at close with the content untouched by them."""
    mnt.sh("""echo '{"type":"object","maxProperties":10}' > schemas/ten""")
    mnt.sh("""echo '{"k0":0}' > p && setfattr -n user.stash.schema -v ten p""")
    before = int(os.getxattr(mnt.path("p"), "user.stash.version"))
    n = 40
    fds = []
    for i in range(1, n + 1):
        fd = os.open(mnt.path("p.json"), os.O_WRONLY | os.O_TRUNC)
        os.write(fd, b'{"k%d": %d}' % (i, i))       # each fine on its own
        fds.append(fd)
    go = threading.Barrier(n)
    refused = []

    def close(fd):
        go.wait()
        try:
            os.close(fd)
        except OSError:
            refused.append(fd)

    ts = [threading.Thread(target=close, args=(fd,)) for fd in fds]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    doc = json.loads(read(mnt.path("p")))
    assert len(doc) == 10 and doc["k0"] == 0
    assert len(refused) == n - 9
    assert all(doc["k%d" % i] == i for i in range(1, n + 1) if "k%d" % i in doc)
    assert int(os.getxattr(mnt.path("p"), "user.stash.version")) == before + 9
    assert "maxProperties" in reason(mnt, "p") or "properties" in reason(mnt, "p")
