# SPDX-License-Identifier: MIT
"""core/guide.md (the agent's guide, also .stashfs-guide on every mount) is given to agents as-is: every ```sh block in it must work.

The blocks run in order, each in its own bash, on one fresh mount named by
$STASH, with stashctl on PATH (and nothing else prepared).
"""
import json
import os
import re
import subprocess

import pytest

from stashctl_util import source_root, stashctl_bin

GUIDE = os.path.join(source_root(), "core", "guide.md")


def sh_blocks(text):
    """The ```sh fenced blocks of a Markdown text, in order."""
    return [m.group(1) for m in re.finditer(r"^```sh\n(.*?)^```\s*$", text, re.S | re.M)]


def test_guide_has_blocks():
    with open(GUIDE) as f:
        blocks = sh_blocks(f.read())
    assert len(blocks) >= 10
    # The guide speaks of the mount only through $STASH.
    for b in blocks:
        assert "/mnt/" not in b and "~/stash" not in b


@pytest.mark.parametrize("opts", [(), ("allow_other", "default_permissions")],
                         ids=["private", "shared"])
def test_guide_runs_in_order(env, tmp_path, opts):
    mnt = env
    env.mount(opts=opts)
    with open(GUIDE) as f:
        blocks = sh_blocks(f.read())
    work = tmp_path / "work"
    work.mkdir()
    env = dict(os.environ, STASH=str(mnt.mnt),
               PATH=os.path.dirname(os.path.abspath(stashctl_bin())) + os.pathsep
               + os.environ.get("PATH", ""))
    outputs = []
    for i, block in enumerate(blocks):
        r = subprocess.run(["bash", "-e", "-u", "-o", "pipefail", "-c", block], cwd=str(work),
                           env=env, capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, "block %d failed (%d):\n%s\nstdout:\n%s\nstderr:\n%s" % (
            i, r.returncode, block, r.stdout, r.stderr)
        outputs.append(r.stdout)

    def out(marker):
        """Output of the first block whose text contains @marker."""
        for block, o in zip(blocks, outputs):
            if marker in block:
                return o
        raise AssertionError("no block with " + marker)

    # Section 1 on a fresh mount, section 8 after the work.
    resume = [o for b, o in zip(blocks, outputs) if 'echo "resuming"' in b]
    assert len(resume) == 2 and outputs[0] == resume[0]
    assert resume[0].strip() == "fresh start"
    assert resume[1].rstrip().endswith("resuming")
    assert '"status": "completed"' in resume[1]
    # Merges kept the first keys, null deleted one.
    assert '"sources": [' in out('"sources":["libfuse"')
    assert out("jq -r .next_step").strip() == "summarise sources"
    assert out('"sources":null').strip() == '["next_step","status","step","task"]'
    assert out("setfattr -n user.stash.schema").strip() == "task-progress"
    # The schema refused the bad status, said why, and the stash stayed.
    assert out('"status":"done"').splitlines() == ["refused, the stash is unchanged", "active"]
    why = out("getfattr --absolute-names --only-values -n user.stash.error").strip()
    assert why.startswith("/status:") and "enum" in why
    show = out('stashctl show "$STASH/research-progress"')
    assert re.search(r"^schema +task-progress$", show, re.M)
    assert show.rstrip().endswith(why)
    # The stream recorded the merge; stashctl follow showed it.
    assert out("tail -n 1").strip() == (
        '{"op":"merge","stash":"research-progress","data":{"step":3,"next_step":"write the report"}}')
    assert out(">> \"$STASH/streams/research-notes\"").strip() == "step 3: sources summarised"
    assert re.match(r"#1 \S+Z merge +research-progress v\d+ uid \d+ pid \d+ ",
                    out("stashctl follow"))
    # stashctl linked and bound; the bad binding was refused.
    assert out("schema=no-such-schema").splitlines() == ["scratch", "refused"]
    assert out("ttl=86400").strip() == '{"schema":"task-progress","ttl":86400}'
    assert out("stashctl validate").strip() == "draft.json: valid (schema task-progress)"
    assert out("> \"$STASH/research-report\"").strip() == '{"status":"completed","step":3}'
    # Past versions: the first draft read back by number, listed, restored.
    assert out("research-report@$((v - 1))").splitlines() == [
        "# FUSE filesystems: a survey", "VERSION", "2", "1",
        "# FUSE filesystems: a survey"]
    assert out("changed meanwhile").strip() == "written"
    # A conditional merge claimed the handoff once; the late one was refused and said why.
    assert out("someone was first").splitlines() == ["someone was first", "agent-1"]
    assert "not written: handoff is at version 2" in out('jq -r .error "$STASH/.stashfs-meta/handoff"')
    # A reader waited for the next version, and a wait with nothing coming timed out.
    assert out("timeout 1 cat").splitlines() == ["done", "nothing new within a second"]
    # Good habits: a whole-file rewrite, namespaces, mv and rm.
    listing = out("rm \"$STASH/scratch\"")
    assert "research-progress" in listing and "scratch\n" not in listing
    assert listing.rstrip().endswith("report")

    # And the mount agrees.
    doc = json.loads((mnt.mnt / "research-progress").read_text())
    assert doc == {"task": "survey of FUSE filesystems", "status": "completed", "step": 4}
    assert (mnt.mnt / "team-a" / "archive" / "report").read_text().startswith("# FUSE")
    assert not os.path.exists(mnt.path("scratch"))
    assert os.getxattr(mnt.path("research-progress"), "user.stash.schema") == b"task-progress"
    log = (mnt.mnt / "streams" / "research-log").read_text().splitlines()
    assert [json.loads(l)["op"] for l in log] == ["merge", "merge", "put"]
    assert json.loads(log[-1])["data"]["step"] == 4      # the jq rewrite, recorded whole
    assert (mnt.mnt / "research-report").read_text().startswith("# FUSE filesystems")
    assert os.getxattr(mnt.path("streams/scratch-log"), "user.stash.linked_stash") == b"scratch"


BEGIN = "<!-- stashfs:settings -->\n"
END = "<!-- /stashfs:settings -->\n"


def test_mount_prints_its_own_guide(env):
    """cat MOUNT/.stashfs-guide is core/guide.md byte for byte, but for the
    settings part, which holds this mount's settings as they are now."""
    env.mount(opts=["ttl=7200", "versions=5", "max_size=1M", "shared"])
    with open(GUIDE, "rb") as f:
        source = f.read().decode()
    assert source.count(BEGIN) == 1 and source.count(END) == 1
    env.sh("""echo '{"type":"object"}' > schemas/zeta; echo '{"type":"string"}' > schemas/alpha""")
    env.sh("setfattr -n user.stash.persistent -v 0 .")
    r = env.sh("cat .stashfs-guide")
    guide = r.stdout
    head, rest = guide.split(BEGIN, 1)
    settings, tail = rest.split(END, 1)
    s_head, s_rest = source.split(BEGIN, 1)
    assert head == s_head and tail == s_rest.split(END, 1)[1]
    assert "ephemeral" in settings and "`user.stash.persistent` 0" in settings
    assert "7200 seconds" in settings
    assert "1048576 bytes" in settings
    assert "Past versions kept per stash: 5 " in settings
    assert "share this store: yes" in settings
    assert "Schemas stored: `alpha`, `zeta`." in settings
    # Read-only, found by name only, sized like its text.
    st = os.stat(env.path(".stashfs-guide"))
    assert st.st_size == len(guide.encode()) and not st.st_mode & 0o222
    assert ".stashfs-guide" not in os.listdir(str(env.mnt))
    w = env.sh("echo x > .stashfs-guide", check=False)
    assert w.returncode != 0 and "Permission denied" in w.stderr
    assert env.sh("cat .stashfs-guide").stdout == guide
    # Settings are live: a new default shows at the next read.
    env.sh("setfattr -n user.stash.persistent -v 1 .; rm schemas/zeta")
    again = env.sh("cat .stashfs-guide").stdout
    assert "persistent: they survive restarts" in again and "`zeta`" not in again
