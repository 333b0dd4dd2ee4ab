# Copyright: CleanMateX DevOps
# Apache License 2.0 (see galaxy.yml)
"""Action plugin of cmx_env_validate (documented with the module).

The `values` form is pure data: it runs here on the controller, which saves the module transfer and the remote
Python start, and returns what the module would (argument checks, invocation, no_log masking, warnings). The
`path` form reads a file on the managed host, so the module runs there."""

from __future__ import annotations

from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible.module_utils.common.parameters import remove_values
from ansible.module_utils.errors import UnsupportedError
from ansible.plugins.action import ActionBase
from ansible.utils.vars import merge_hash
from ansible_collections.cleanmatex.infra.plugins.module_utils.env_task import (
    ARGUMENT_RULES,
    argument_spec,
    task_result,
)


class ActionModule(ActionBase):
    _supports_check_mode = True  # only reads
    _supports_async = True  # as the module did; async tasks run the module

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        del tmp  # no longer used by Ansible
        args = self._task.args
        if self._task.async_val or ("path" in args and "values" not in args):
            return merge_hash(result, self._run_module(task_vars))
        return merge_hash(result, self._validate_here())

    def _run_module(self, task_vars):
        wrap_async = self._task.async_val and not self._connection.has_native_async
        result = self._execute_module(task_vars=task_vars, wrap_async=wrap_async)
        if not wrap_async:
            self._remove_tmp_path(self._connection._shell.tmpdir)
        return result

    def _validate_here(self):
        """The module's result for the task's arguments, with what AnsibleModule adds around task_result()."""
        params = dict(self._task.args)
        checked = ArgumentSpecValidator(argument_spec(), **ARGUMENT_RULES).validate(params)
        params.update(checked.validated_parameters)
        # AnsibleModule reads the same attribute: the values of every no_log option.
        no_log_values = set(checked._no_log_values)
        warnings = []
        if checked.error_messages:
            msg = checked.errors.msg
            if isinstance(checked.errors[0], UnsupportedError):
                msg = f"Unsupported parameters for ({self._task.action}) module: {msg}"
            result = {"failed": True, "msg": msg}
        else:
            result, warnings = task_result(params, no_log_values)
        result["invocation"] = {"module_args": params}
        result = remove_values(result, no_log_values)
        if warnings:  # the module's warnings are not masked either; their texts never hold a value
            result["warnings"] = warnings
        return result
