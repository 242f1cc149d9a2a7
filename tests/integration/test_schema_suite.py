# SPDX-License-Identifier: MIT
"""Where the JSON-Schema-Test-Suite runner finds the suite, and what it says
when it finds none: skipped (exit 77) with the reason and the command that
fetches it; an empty or foreign folder fails; a real copy runs."""
import os
import shutil
import subprocess

import pytest

from stashctl_util import build_dir

SKIP = 77


def runner(*args, env_suite=None):
    path = os.path.join(build_dir(), "tests", "schema_suite")
    if not os.path.exists(path):
        pytest.skip("%s not built" % path)
    env = dict(os.environ)
    env.pop("STASHFS_SCHEMA_SUITE", None)
    if env_suite is not None:
        env["STASHFS_SCHEMA_SUITE"] = str(env_suite)
    r = subprocess.run([path] + [str(a) for a in args], capture_output=True, text=True,
                       env=env, timeout=600)
    return r.returncode, r.stdout


def tiny_suite(root):
    """A suite folder with one test file of two cases."""
    d = root / "tests" / "draft2020-12"
    d.mkdir(parents=True)
    (d / "type.json").write_text(
        '[{"description": "t", "schema": {"type": "integer"}, "tests": ['
        '{"description": "int", "data": 1, "valid": true},'
        '{"description": "str", "data": "x", "valid": false}]}]')
    return root


def test_no_suite_is_a_skip_with_the_fetch_command(tmp_path):
    sub = tmp_path / "jsonschema-test-suite"
    sub.mkdir()                             # what a clone without submodules has
    rc, out = runner("--if-fetched", sub, "--if-exists", tmp_path / "shared" / "suite")
    assert rc == SKIP, out
    assert "git submodule update --init" in out
    assert "in %s (empty: submodule not fetched)" % sub in out
    assert "nor in %s (does not exist)" % (tmp_path / "shared" / "suite") in out
    assert out.splitlines()[-1] == "0 passed, 0 failed, 1 skipped"


@pytest.mark.parametrize("how", ["env", "argument", "beside"])
def test_empty_or_foreign_folder_fails(tmp_path, how):
    empty = tmp_path / "empty"
    empty.mkdir()
    if how == "env":
        rc, out = runner("--if-fetched", tmp_path / "none", env_suite=empty)
    elif how == "argument":
        rc, out = runner(empty)
    else:
        rc, out = runner("--if-fetched", tmp_path / "none", "--if-exists", empty)
    assert rc == 1, out
    assert out.splitlines()[-1] == "0 passed, 1 failed"
    (empty / "tests" / "draft2020-12").mkdir(parents=True)
    (empty / "tests" / "draft2020-12" / "bad.json").write_text("{")
    rc, out = runner(empty)
    assert rc == 1 and "cannot load" in out, out


def test_order_env_then_submodule_then_beside(tmp_path):
    sub, beside, env = (tiny_suite(tmp_path / n) for n in ("sub", "beside", "env"))
    args = ("--if-fetched", sub, "--if-exists", beside)
    rc, out = runner(*args, env_suite=env)
    assert rc == 0 and out.startswith("suite: %s ($STASHFS_SCHEMA_SUITE)" % env), out
    assert out.splitlines()[-1] == "2 passed, 0 failed"
    rc, out = runner(*args)
    assert rc == 0 and out.startswith("suite: %s (submodule)" % sub), out
    shutil.rmtree(sub)
    sub.mkdir()
    rc, out = runner(*args)
    assert rc == 0 and out.startswith("suite: %s (directory)" % beside), out


@pytest.mark.parametrize("foreign", [
    '[{"description": "no tests", "schema": true}]',
    '[{"description": "no schema", "tests": [{"description": "c", "data": 1, "valid": true}]}]',
    '[{"description": "no valid", "schema": false, "tests": [{"description": "c", "data": 1}]}]',
    '[{"description": "no data", "schema": true, "tests": [{"description": "c", "valid": true}]}]',
    '[{"description": "empty", "schema": true, "tests": []}]',
    '[1]',
    '{"tests": []}',
])
def test_foreign_file_beside_real_ones_fails(tmp_path, foreign):
    """One file that is not shaped like the suite's fails the run, even
    next to a file whose cases all pass: it checked nothing."""
    suite = tiny_suite(tmp_path / "suite")
    (suite / "tests" / "draft2020-12" / "other.json").write_text(foreign)
    rc, out = runner(suite)
    assert rc == 1, out
    assert out.splitlines()[-1] == "2 passed, 1 failed", out
