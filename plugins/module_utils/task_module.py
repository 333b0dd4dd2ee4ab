"""The main() of a module whose logic is one task_result(params, check_mode) -> result dict in module_utils
(the same function its action plugin runs in-process on the controller; plugin_utils/controller_local.py).

A result with "failed" fails the task with the rest of the result; "warnings" are shown as warnings."""

from __future__ import annotations

from ansible.module_utils.basic import AnsibleModule


def run_task_module(argument_spec: dict, task_result) -> None:
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    result = task_result(module.params, module.check_mode)
    for message in result.pop("warnings", []):
        module.warn(message)
    if result.pop("failed", False):
        module.fail_json(**result)
    module.exit_json(**result)
