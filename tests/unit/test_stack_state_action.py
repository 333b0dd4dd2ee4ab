"""The cmx_stack_state action plugin: on the controller itself (connection local, no become) it runs the
module's code in-process and returns what the module returns; any other connection, become or async runs
the module."""

from __future__ import annotations

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
from ansible_collections.cleanmatex.infra.plugins.action.cmx_stack_state import ActionModule
from ansible_collections.cleanmatex.infra.plugins.module_utils.stack_state import STAMP

REPO = Path(__file__).resolve().parents[2]
NAME = "cleanmatex.infra.cmx_stack_state"
MODULE = REPO / "plugins" / "modules" / "cmx_stack_state.py"


def make_action(args, connection="local", become=False, check_mode=False, async_val=0):
    task = Task()
    task.action = NAME
    task.args = json.loads(json.dumps(args))
    task.async_val = async_val
    play_context = PlayContext()
    play_context.become = become
    play_context.check_mode = check_mode
    loader = DataLoader()
    plugin = connection_loader.get(connection, play_context)
    return ActionModule(task, plugin, play_context, loader, Templar(loader=loader), None)


class ModuleRan(Exception):
    pass


def _module(**_):
    raise ModuleRan


def action_result(args, **kwargs):
    action = make_action(args, **kwargs)
    action._execute_module = _module
    return json.loads(json.dumps(action.run(task_vars={})))


def module_result(tmp_path, args, check_mode=False):
    internal = {"_ansible_module_name": NAME, "_ansible_check_mode": check_mode}
    args_file = tmp_path / "args.json"
    args_file.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": dict(args, **internal)}), encoding="utf-8")
    env = dict(os.environ, PYTHONPATH=str(REPO / ".collections"))
    done = subprocess.run(
        [sys.executable, str(MODULE), str(args_file)], env=env, capture_output=True, text=True
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
