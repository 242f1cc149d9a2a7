# SPDX-License-Identifier: MIT
"""docs/agents.md is given to agents as-is: every ```sh block in it must work.

The blocks run in order, each in its own bash, on one fresh mount named by
$STASH, with stashctl on PATH (and nothing else prepared).
"""
import json
import os
import re
import subprocess

import pytest

from stashctl_util import source_root, stashctl_bin

GUIDE = os.path.join(source_root(), "docs", "agents.md")


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
