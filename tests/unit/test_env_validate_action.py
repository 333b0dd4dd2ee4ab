"""The cmx_env_validate action plugin: the `values` form runs on the controller and returns exactly what the
module returns (keys, messages, failed, warnings, the masked invocation), never a secret; the `path` form and
async tasks run the module on the managed host."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from ansible.parsing.dataloader import DataLoader
from ansible.playbook.play_context import PlayContext
from ansible.playbook.task import Task
from ansible.plugins.loader import connection_loader
from ansible.template import Templar
from ansible_collections.cleanmatex.infra.plugins.action.cmx_env_validate import ActionModule
from test_env_support import (
    DEV_APP_STACK,
    JWT_SECRET,
    PG_PASSWORD,
    REDIS_PASSWORD,
    REPO,
    S3_SECRET,
    ansible_env,
    apply,
    dev_values,
    env_text,
    run_module,
    strict_stack,
    strict_values,
)
from test_env_validate import CASES, PARAMS, _stack, _values

NAME = "cleanmatex.infra.cmx_env_validate"
MODULE = REPO / "plugins" / "modules" / "cmx_env_validate.py"
SECRETS = (
    "cmx_pass_dev",
    "cmx_app_pass_dev",
    "minioadmin123",
    "change-me-in-production",
    "dev-only-jwt-secret-value-123",
    "unknown-value-x1y2",
    PG_PASSWORD,
    REDIS_PASSWORD,
    S3_SECRET,
    JWT_SECRET,
)


def make_action(args, check_mode=False, async_val=0):
    """The action plugin as the task executor builds it, for a task with these arguments."""
    task = Task()
    task.action = NAME
    task.args = json.loads(json.dumps(args))
    task.check_mode = check_mode
    task.async_val = async_val
    play_context = PlayContext()
    loader = DataLoader()
    connection = connection_loader.get("local", play_context)
    return ActionModule(task, connection, play_context, loader, Templar(loader=loader), None)


def action_result(args, **task):
    action = make_action(args, **task)
    action._execute_module = _no_module
    return json.loads(json.dumps(action.run(task_vars={})))  # as the result leaves the worker


def _no_module(**_):
    raise AssertionError("the values form must not run the module")


def module_result(tmp_path, args, check_mode=False):
    """The module in a Python of its own, as on a managed host; its warnings as their texts."""
    internal = {"_ansible_module_name": NAME, "_ansible_check_mode": check_mode}
    args_file = tmp_path / "args.json"
    args_file.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": dict(args, **internal)}), encoding="utf-8")
    env = dict(os.environ, PYTHONPATH=str(REPO / ".collections"))
    done = subprocess.run(
        [sys.executable, str(MODULE), str(args_file)], env=env, capture_output=True, text=True, check=False
    )
    result = json.loads(done.stdout)
    if "warnings" in result:
        result["warnings"] = [warning["event"]["msg"] for warning in result["warnings"]]
    return result


def assert_no_secret(result, args):
    dumped = json.dumps(result)
    given = json.dumps(args)
    for secret in SECRETS:
        if secret in given:
            assert secret not in dumped, f"{secret} appears in the result"


STAGING_WEAK = apply(strict_values("staging"), {"JWT_SECRET": "change-me-in-production"})
INPUTS = {
    "dev valid": {"environment": "dev", "values": dev_values(), "stack": DEV_APP_STACK},
    "dev invalid value": {
        "environment": "dev",
        "values": apply(dev_values(), {"REDIS_DB": "sixteen", "APP_URL": "ftp://localhost"}),
        "stack": DEV_APP_STACK,
    },
    "unknown variable warns": {
        "environment": "dev",
        "values": apply(dev_values(), {"JWT_SECRT": "unknown-value-x1y2"}),
        "stack": DEV_APP_STACK,
    },
    "undefined value": {
        "environment": "staging",
        "values": apply(strict_values("staging"), {"JWT_SECRET": None, "APP_URL": "http://x.invalid"}),
        "undefined": ["JWT_SECRET"],
        "stack": strict_stack("staging"),
    },
    "weak secret": {"environment": "staging", "values": STAGING_WEAK, "stack": strict_stack("staging")},
    "weak secret, no failure": {"environment": "staging", "values": STAGING_WEAK, "fail_on_error": False},
    "secret in a URL": {
        "environment": "dev",
        "values": apply(dev_values(), {"JWT_SECRET": "dev-only-jwt-secret-value-123"}),
        "stack": DEV_APP_STACK,
    },
    "Ansible types, string ports": {
        "environment": "dev",
        "values": apply(dev_values(), {"APP_PORT": 3001, "ENABLE_ASSEMBLY": True, "REDIS_DB": 0}),
        "stack": dict(DEV_APP_STACK, postgres_port="5432"),
    },
    "unknown environment": {"environment": "qa", "values": dev_values()},
    "values and path": {"environment": "dev", "values": dev_values(), "path": "/nonexistent/.env"},
    "neither values nor path": {"environment": "dev"},
    "unknown option": {"environment": "dev", "values": dev_values(), "bogus": 1},
    "unknown stack key": {"environment": "dev", "values": dev_values(), "stack": {"pg_port": 1}},
    "bad stack port": {"environment": "dev", "values": dev_values(), "stack": {"postgres_port": "abc"}},
    "stack port out of range": {"environment": "dev", "values": dev_values(), "stack": {"redis_port": 70000}},
}


@pytest.mark.parametrize("args", INPUTS.values(), ids=INPUTS.keys())
def test_values_form_returns_the_module_result(tmp_path, args):
    result = action_result(args)
    assert result == module_result(tmp_path, args)
    assert_no_secret(result, args)


def test_the_comparison_sees_failures_warnings_and_masking(tmp_path):
    failed = action_result(INPUTS["dev invalid value"])
    assert failed["failed"] is True and failed["changed"] is False and failed["valid"] is False
    assert failed["msg"].startswith("values for environment dev: INVALID: 2 errors\n  - ")
    warned = action_result(INPUTS["unknown variable warns"])
    assert "failed" not in warned
    assert warned["warnings"] == ["JWT_SECRT: is not in the schema (a typo?); expected JWT_SECRET"]
    shown = action_result(INPUTS["secret in a URL"])["invocation"]["module_args"]
    assert shown["values"]["JWT_SECRET"] == "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER"
    assert shown["values"]["DATABASE_URL"] == "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER"
    assert shown["values"]["REDIS_DB"] == "0" and shown["values"]["APP_PORT"] == "3001"
    assert shown["stack"]["postgres_password"] == "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER"
    unsupported = action_result(INPUTS["unknown option"])["msg"]
    assert unsupported.startswith(f"Unsupported parameters for ({NAME}) module: bogus.")


def test_check_mode_gives_the_same_result(tmp_path):
    args = INPUTS["dev valid"]
    result = action_result(args, check_mode=True)
    assert result == module_result(tmp_path, args, check_mode=True)
    assert result["valid"] is True and "skipped" not in result


@pytest.mark.parametrize(PARAMS, CASES)
def test_every_rule_case_gives_the_module_result(env, bad, good, stack, good_stack, expect):
    """Every failing input of the rule table; the in-process module shows its warnings itself once the
    controller code is loaded, so they are compared above."""
    args = {"environment": env, "values": _values(env, bad), "stack": _stack(env, stack)}
    result = action_result(args)
    result.pop("warnings", None)
    assert result == run_module(args)
    assert_no_secret(result, args)


def test_path_form_runs_the_module_on_the_host():
    args = {"environment": "staging", "path": "/srv/app/.env", "fail_on_error": False}
    action = make_action(args)
    calls = []

    def execute_module(**kwargs):
        calls.append(kwargs)
        return {"changed": False, "valid": True, "msg": "from the module"}

    action._execute_module = execute_module
    assert action.run(task_vars={"answer": 42}) == {"changed": False, "valid": True, "msg": "from the module"}
    assert len(calls) == 1 and calls[0]["task_vars"] == {"answer": 42} and not calls[0]["wrap_async"]
    assert action._task.args == args  # the module gets the task's arguments as they are


def test_async_values_task_runs_the_module():
    action = make_action(INPUTS["dev valid"], async_val=30)
    calls = []
    action._execute_module = lambda **kwargs: calls.append(kwargs) or {"ansible_job_id": "j1", "started": 1}
    assert action.run(task_vars={})["ansible_job_id"] == "j1"
    assert calls and calls[0]["wrap_async"]


PLAY = """\
- name: Values and path forms
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Values form (controller)
      cleanmatex.infra.cmx_env_validate:
        environment: dev
        values: "{{ env_values_under_test }}"
        stack: {postgres_app_password: cmx_app_pass_dev}
        fail_on_error: false
      register: by_values
    - name: Path form (module)
      cleanmatex.infra.cmx_env_validate:
        environment: dev
        path: "{{ env_file_under_test }}"
        stack: {postgres_app_password: cmx_app_pass_dev}
        fail_on_error: false
      register: by_path
    - name: Both results
      ansible.builtin.copy:
        dest: "{{ results_file }}"
        mode: "0600"
        content: "{{ {'values': by_values, 'path': by_path} | to_json }}"
"""


def test_playbook_output_has_no_secret_and_both_forms_agree(tmp_path):
    values = apply(dev_values(), {"JWT_SECRET": "dev-only-jwt-secret-value-123", "REDIS_DB": "sixteen"})
    env_file = tmp_path / "app.env"
    env_file.write_text(env_text(values), encoding="utf-8")
    results = tmp_path / "results.json"
    play = tmp_path / "play.yml"
    play.write_text(PLAY, encoding="utf-8")
    extra = {
        "env_values_under_test": values,
        "env_file_under_test": str(env_file),
        "results_file": str(results),
    }
    done = subprocess.run(
        [str(REPO / ".venv" / "bin" / "ansible-playbook"), "-vvv", str(play), "-e", json.dumps(extra)],
        cwd=REPO,
        env=ansible_env(),
        capture_output=True,
        text=True,
        check=False,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    for secret in ("dev-only-jwt-secret-value-123", "cmx_app_pass_dev", "minioadmin123"):
        assert secret not in output
    assert "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER" in output
    found = json.loads(results.read_text(encoding="utf-8"))
    by_values, by_path = found["values"], found["path"]
    assert by_values["errors"] == ["REDIS_DB: is not an integer; expected an integer from 0 to 15"]
    assert [p["message"] for p in by_values["problems"]] == [p["message"] for p in by_path["problems"]]
    assert by_values["variables"] == by_path["variables"] and by_values["valid"] is by_path["valid"] is False
