"""The action plugins built on plugin_utils/controller_local.py (cmx_stack_state, cmx_config_digest,
cmx_files, cmx_docker_host): on the controller itself (connection local, no become) they run the module's
code in-process and return what the module returns; any other connection, become or async runs the
module."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from ansible.parsing.dataloader import DataLoader
from ansible.playbook.play_context import PlayContext
from ansible.playbook.task import Task
from ansible.plugins.loader import connection_loader
from ansible.template import Templar
from ansible_collections.cleanmatex.infra.plugins.module_utils.stack_state import STAMP

REPO = Path(__file__).resolve().parents[2]
NAME = "cleanmatex.infra.cmx_stack_state"


def make_action(args, connection="local", become=False, check_mode=False, async_val=0, name=NAME):
    task = Task()
    task.action = name
    task.args = json.loads(json.dumps(args))
    task.async_val = async_val
    play_context = PlayContext()
    play_context.become = become
    play_context.check_mode = check_mode
    loader = DataLoader()
    plugin = connection_loader.get(connection, play_context)
    short = name.rsplit(".", 1)[-1]
    action_class = importlib.import_module(
        f"ansible_collections.cleanmatex.infra.plugins.action.{short}"
    ).ActionModule
    return action_class(task, plugin, play_context, loader, Templar(loader=loader), None)


class ModuleRan(Exception):
    pass


def _module(**_):
    raise ModuleRan


def action_result(args, **kwargs):
    action = make_action(args, **kwargs)
    action._execute_module = _module
    return json.loads(json.dumps(action.run(task_vars={})))


def module_result(tmp_path, args, check_mode=False, name=NAME):
    internal = {"_ansible_module_name": name, "_ansible_check_mode": check_mode}
    args_file = tmp_path / "args.json"
    args_file.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": dict(args, **internal)}), encoding="utf-8")
    env = dict(os.environ, PYTHONPATH=str(REPO / ".collections"))
    done = subprocess.run(
        [sys.executable, str(REPO / "plugins" / "modules" / f"{name.rsplit('.', 1)[-1]}.py"), str(args_file)],
        env=env,
        capture_output=True,
        text=True,
    )
    return json.loads(done.stdout)


def test_on_the_controller_it_records_and_compares_like_the_module(tmp_path):
    here, there = tmp_path / "here", tmp_path / "there"
    here.mkdir(), there.mkdir()
    record = {"fingerprint": "f1", "record": True}
    first = action_result(dict(record, project_dir=str(here)))
    assert first["changed"] is True and first["up_to_date"] is True
    assert action_result(dict(record, project_dir=str(here)))["changed"] is False  # idempotent
    module = module_result(tmp_path, dict(record, project_dir=str(there)))
    assert module["changed"] is True
    # Same file, same mode (0600: the fingerprint hashes secrets) from either path.
    assert (here / STAMP).read_text() == (there / STAMP).read_text()
    assert (
        oct((here / STAMP).stat().st_mode & 0o777) == oct((there / STAMP).stat().st_mode & 0o777) == "0o600"
    )

    compare = {"project_dir": str(here), "fingerprint": "f2", "containers": []}
    mine, theirs = action_result(compare), module_result(tmp_path, compare)
    assert mine["up_to_date"] is theirs["up_to_date"] is False
    assert (
        mine["reasons"]
        == theirs["reasons"]
        == ["the inventory or the collection changed since the last converge"]
    )
    assert action_result(dict(compare, fingerprint="f1"))["up_to_date"] is True


def test_check_mode_writes_nothing_on_the_controller(tmp_path):
    result = action_result(
        {"project_dir": str(tmp_path), "fingerprint": "f", "record": True}, check_mode=True
    )
    assert result["changed"] is True and not (tmp_path / STAMP).exists()


def test_bad_arguments_fail_like_the_module(tmp_path):
    result = action_result({"project_dir": str(tmp_path), "record": True})
    assert result["failed"] is True and "fingerprint" in result["msg"]


@pytest.mark.parametrize(
    "kwargs", [{"connection": "ssh"}, {"become": True}, {"async_val": 30}], ids=["ssh", "become", "async"]
)
def test_any_other_host_become_or_async_runs_the_module(tmp_path, kwargs):
    with pytest.raises(ModuleRan):
        action_result({"project_dir": str(tmp_path), "fingerprint": "f"}, **kwargs)
    assert not (tmp_path / STAMP).exists()
    for name, args in [
        (
            "cleanmatex.infra.cmx_files",
            {"files": [{"path": str(tmp_path / "f"), "content": "x", "mode": "0644"}]},
        ),
        ("cleanmatex.infra.cmx_config_digest", {"key_file": str(tmp_path / "k"), "inputs": {}}),
        ("cleanmatex.infra.cmx_docker_host", {}),
    ]:
        with pytest.raises(ModuleRan):
            action_result(args, name=name, **kwargs)
    assert sorted(os.listdir(tmp_path)) == [], "nothing ran in-process"


def test_files_and_digests_in_process_match_the_module_and_hide_secrets(tmp_path):
    here, there = tmp_path / "here", tmp_path / "there"
    results = {}
    for folder, run in [(here, "action"), (there, "module")]:
        files = {
            "directories": [{"path": str(folder / "secrets"), "mode": "0700"}],
            "files": [{"path": str(folder / "a.conf"), "content": "plain\n", "mode": "0644"}],
            "secret_files": [
                {"path": str(folder / "secrets" / "pw"), "content": "hunter2-secret", "mode": "0600"}
            ],
        }
        digest = {
            "key_file": str(folder / "secrets" / "label.key"),
            "inputs": {"redis": ["hunter2-secret", "x"]},
        }
        if run == "action":
            results[run] = (
                action_result(files, name="cleanmatex.infra.cmx_files"),
                action_result(digest, name="cleanmatex.infra.cmx_config_digest"),
            )
        else:
            results[run] = (
                module_result(tmp_path, files, name="cleanmatex.infra.cmx_files"),
                module_result(tmp_path, digest, name="cleanmatex.infra.cmx_config_digest"),
            )
    for folder in (here, there):
        assert (folder / "secrets" / "pw").read_text() == "hunter2-secret"
        assert oct((folder / "secrets" / "pw").stat().st_mode & 0o777) == "0o600"
        assert oct((folder / "secrets").stat().st_mode & 0o777) == "0o700"
    (files_here, digest_here), (files_there, digest_there) = results["action"], results["module"]
    assert files_here["changed"] is files_there["changed"] is True
    assert len(files_here["changed_paths"]) == len(files_there["changed_paths"]) == 3
    assert digest_here["key_created"] is digest_there["key_created"] is True
    assert set(digest_here["digests"]) == set(digest_there["digests"]) == {"redis"}
    assert "hunter2-secret" not in json.dumps(results["action"]), "no_log values stay out of the result"
    # Same key, same inputs: the in-process digest is the module's.
    (there / "secrets" / "label.key").write_bytes((here / "secrets" / "label.key").read_bytes())
    again = module_result(tmp_path, {"key_file": str(there / "secrets" / "label.key"),
                                     "inputs": {"redis": ["hunter2-secret", "x"]}},
                          name="cleanmatex.infra.cmx_config_digest")  # fmt: skip
    assert again["digests"] == digest_here["digests"]


def test_a_refused_file_fails_in_process_with_the_modules_message(tmp_path):
    args = {
        "files": [{"path": str(tmp_path / "c.yml"), "content": "x", "mode": "0644", "validate": "false %s"}]
    }
    mine = action_result(args, name="cleanmatex.infra.cmx_files")
    theirs = module_result(tmp_path, args, name="cleanmatex.infra.cmx_files")
    assert mine["failed"] is theirs["failed"] is True
    assert mine["msg"] == theirs["msg"]
    assert not (tmp_path / "c.yml").exists()


def test_the_docker_host_probe_in_process_matches_the_module(tmp_path):
    args = {"ports": [{"service": "nothing", "port": 1, "bind_address": "127.0.0.1"}], "warnings": ["w1"]}
    mine = action_result(args, name="cleanmatex.infra.cmx_docker_host")
    theirs = module_result(tmp_path, args, name="cleanmatex.infra.cmx_docker_host")
    for key in ("engine_ok", "compose_ok", "arch", "os_id", "mirror", "systemd", "uid"):
        assert mine[key] == theirs[key], key
    assert [p["status"] for p in mine["ports"]] == [p["status"] for p in theirs["ports"]]
    assert mine["warnings"] == ["w1"]
    assert [warning["event"]["msg"] for warning in theirs["warnings"]] == ["w1"]
