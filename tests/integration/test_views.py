# SPDX-License-Identifier: MIT
"""JSON views: NAME.json reads the document, writes merge top-level keys
(DESIGN 2.2, 2.6)."""
import json
import os
import subprocess
import threading

import pytest


def read(p):
    with open(p, "rb") as f:
        return f.read()


def test_merge_creates_and_merges(mnt):
    mnt.sh("""echo '{"task":"t","status":"active"}' > p.json""")
    assert read(mnt.path("p")) == b'{\n  "task": "t",\n  "status": "active"\n}\n'
    mnt.sh("""echo '{"next_step":"x","status":"done"}' > p.json""")
    doc = json.loads(read(mnt.path("p")))
    assert list(doc) == ["task", "status", "next_step"]      # order kept, new appended
    assert doc["status"] == "done"
    mnt.sh("""echo '{"task":null}' >> p.json""")             # >> works too
    assert list(json.loads(read(mnt.path("p")))) == ["status", "next_step"]
    # The view reads the document and is not listed.
    assert read(mnt.path("p.json")) == read(mnt.path("p"))
    assert "p.json" not in os.listdir(str(mnt.mnt))
    assert os.stat(mnt.path("p.json")).st_size == len(read(mnt.path("p")))
    # Backing directory has only the stash.
    assert sorted(os.listdir(mnt.backing)) == [".stashfs", "p", "schemas", "streams"]


def test_nested_values_replaced_whole(mnt):
    mnt.sh("""echo '{"a":{"x":1,"y":2},"b":[1,2]}' > p.json""")
    mnt.sh("""echo '{"a":{"z":3},"b":[]}' > p.json""")
    assert json.loads(read(mnt.path("p"))) == {"a": {"z": 3}, "b": []}


def test_numbers_survive(mnt):
    mnt.sh("""echo '{"a":0.1,"b":1.0,"c":12345678901234567,"d":-0.0,"e":1e-7}' > p.json""")
    mnt.sh("""echo '{"f":2.5}' > p.json""")
    text = read(mnt.path("p")).decode()
    for lit in ('"a": 0.1,', '"b": 1.0,', '"c": 12345678901234567,', '"f": 2.5'):
        assert lit in text, text
    r = mnt.sh("""echo '{"big":123456789012345678901234567890}' > p.json""", check=False)
    assert r.returncode != 0
    assert "64 bits" in os.getxattr(mnt.path("p"), "user.stash.error").decode()
    assert "big" not in read(mnt.path("p")).decode()


def test_numbers_kept_as_written(env):
    env.mount()
    r = env.sh("""echo '{"x":-0,"y":1E+2}' > p.json; cat p""")
    assert r.stdout == '{\n  "x": -0,\n  "y": 1E+2\n}\n'
    env.sh("""printf '%s' '{"max":1.7976931348623157e308,"pi":3.141592653589793238462643}' >> p.json""")
    env.sh("""echo '{"y":null,"z":0.50}' > p.json""")
    want = ('{\n  "x": -0,\n  "max": 1.7976931348623157e308,\n'
            '  "pi": 3.141592653589793238462643,\n  "z": 0.50\n}\n')
    assert read(env.path("p")) == want.encode()
    assert read(os.path.join(str(env.backing), "p")) == want.encode()
    # After a restart the document is read back from the file: still as written.
    env.daemons[-1].stop()
    env.mount()
    with open(env.path("p.json"), "w") as f:
        f.write('{"w":1.0e0}')
    assert read(env.path("p")) == want[:-3].encode() + b',\n  "w": 1.0e0\n}\n'


def test_indent_option(env):
    env.mount(opts=["json_indent=0"])
    env.sh("""echo '{"a":1,"b":{"c":[1,2]}}' > p.json""")
    assert read(env.path("p")) == b'{"a":1,"b":{"c":[1,2]}}\n'


def test_refusals_at_write_keep_content(mnt):
    mnt.sh("""echo '{"keep":true}' > p.json""")
    before = read(mnt.path("p"))
    cases = [
        ("echo '{bad' > p.json", "line 1"),
        ("echo '[1,2]' > p.json", "JSON object"),
        ("echo '\"text\"' > p.json", "JSON object"),
        ("""echo '{"a":1,"a":2}' > p.json""", "duplicate"),
        ("printf '{\"a\":\"\\377\"}' > p.json", "UTF-8"),
        ("""echo '{"a":1} {"b":2}' > p.json""", ""),
    ]
    for cmd, why in cases:
        r = mnt.sh(cmd, check=False)
        assert r.returncode != 0, cmd
        assert "Invalid argument" in r.stderr, (cmd, r.stderr)
        assert read(mnt.path("p")) == before, cmd
        reason = os.getxattr(mnt.path("p"), "user.stash.error").decode()
        assert why in reason, (cmd, reason)


def test_merge_into_non_object_refused(mnt):
    # Plain text: the write() that completes the patch already says so.
    mnt.sh("echo 'plain text' > notes")
    r = mnt.sh("""echo '{"a":1}' > notes.json""", check=False)
    assert r.returncode != 0 and "Invalid argument" in r.stderr
    assert read(mnt.path("notes")) == b"plain text\n"
    assert "not hold a JSON object" in os.getxattr(mnt.path("notes"), "user.stash.error").decode()
    # Something that only looks like an object: the merge fails at close.
    mnt.sh("echo '{broken' > half")
    fd = os.open(mnt.path("half.json"), os.O_WRONLY | os.O_TRUNC)
    os.write(fd, b'{"a":1}')
    with pytest.raises(OSError) as e:
        os.close(fd)            # the merge fails at close
    assert e.value.errno == 22
    assert read(mnt.path("half")) == b"{broken\n"
    assert "not hold a JSON object" in os.getxattr(mnt.path("half"), "user.stash.error").decode()


def test_split_patch_and_empty_stash(mnt):
    mnt.sh("touch p")                       # empty stash counts as {}
    with open(mnt.path("p.json"), "w") as f:
        f.write('{"a"')
        f.flush()
        f.write(': [1, 2')
        f.flush()
        f.write(']}')
    assert json.loads(read(mnt.path("p"))) == {"a": [1, 2]}
    # Truncating the view never truncates the stash.
    os.truncate(mnt.path("p.json"), 0)
    assert json.loads(read(mnt.path("p"))) == {"a": [1, 2]}


def test_jq_and_python_round_trip(mnt):
    mnt.sh("""echo '{"n":1}' > p.json""")
    mnt.sh("jq '.x=1' p > %s/t && cat %s/t > p" % (mnt.tmp, mnt.tmp))
    assert json.loads(read(mnt.path("p"))) == {"n": 1, "x": 1}
    with open(mnt.path("p.json"), "w") as f:
        json.dump({"from": "python"}, f)
    with open(mnt.path("p.json")) as f:
        assert json.load(f) == {"n": 1, "x": 1, "from": "python"}
    # Cache coherence: the stash shows the merge at once, and vice versa.
    assert mnt.sh("cat p").stdout == read(mnt.path("p.json")).decode()
    mnt.sh("""echo '{"direct":1}' > p""")
    assert mnt.sh("cat p.json").stdout == '{"direct":1}\n'


def test_64_concurrent_merges(mnt):
    procs = [subprocess.Popen(["sh", "-c", """echo '{"k%d": %d}' > p.json""" % (i, i)],
                              cwd=str(mnt.mnt)) for i in range(64)]
    assert all(p.wait() == 0 for p in procs)
    doc = json.loads(read(mnt.path("p")))
    assert doc == {"k%d" % i: i for i in range(64)}
    # Merges that wait for each other may share one commit; the version
    # still counts each of them.
    assert os.getxattr(mnt.path("p"), "user.stash.version") == b"64"


def test_two_daemons_share_backing(env):
    a = env.mount(opts=["shared"])
    b = env.mount(opts=["shared"], mnt=env.tmp / "mnt2")
    m1, m2 = str(env.mnt), str(env.tmp / "mnt2")

    def merges(mnt, side):
        for i in range(200):
            with open(os.path.join(mnt, "p.json"), "w") as f:
                f.write('{"%s%d": %d}' % (side, i, i))

    ts = [threading.Thread(target=merges, args=(m1, "a")),
          threading.Thread(target=merges, args=(m2, "b"))]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    for m in (m1, m2):
        doc = json.loads(read(os.path.join(m, "p")))
        assert len(doc) == 400
        assert all(doc["a%d" % i] == i and doc["b%d" % i] == i for i in range(200))


def test_merge_sees_changes_made_behind_the_daemon(mnt):
    """Merges keep the parsed document between commits; a change made to the
    backing file in place (same inode) or by replacing it must not be lost."""
    mnt.sh("""echo '{"a":1}' > p.json""")
    mnt.sh("""echo '{"b":2}' > p.json""")
    with open(mnt.backing / "p", "r+") as f:        # in place, same inode
        f.seek(0)
        f.truncate()
        f.write('{"edited": true}\n')
    mnt.sh("""echo '{"c":3}' > p.json""")
    assert json.loads(read(mnt.path("p"))) == {"edited": True, "c": 3}
    tmp = mnt.backing / "p.new"
    tmp.write_text('{"replaced": 1}\n')
    os.rename(tmp, mnt.backing / "p")                 # a new inode
    mnt.sh("""echo '{"d":4}' > p.json""")
    assert json.loads(read(mnt.path("p"))) == {"replaced": 1, "d": 4}
