# Copyright: CleanMateX DevOps
# Apache License 2.0 (see galaxy.yml)
"""Action plugin of cmx_stack_state (documented with the module).

On the controller itself (connection local, no become) it runs the module's code here: a fast re-run then
needs no module transfer and no second Python start. Any other host, become or async runs the module."""

from __future__ import annotations

from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible.plugins.action import ActionBase
from ansible.utils.vars import merge_hash
from ansible_collections.cleanmatex.infra.plugins.module_utils.stack_state import ARGUMENT_SPEC, task_result


class ActionModule(ActionBase):
    _supports_check_mode = True
    _supports_async = True

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        del tmp  # no longer used by Ansible
        if self._task.async_val or self._play_context.become or self._connection.transport != "local":
            wrap_async = self._task.async_val and not self._connection.has_native_async
            done = self._execute_module(task_vars=task_vars, wrap_async=wrap_async)
            if not wrap_async:
                self._remove_tmp_path(self._connection._shell.tmpdir)
            return merge_hash(result, done)
        params = dict(self._task.args)
        checked = ArgumentSpecValidator(ARGUMENT_SPEC).validate(params)
        if checked.error_messages:
            return merge_hash(result, {"failed": True, "msg": checked.errors.msg})
        params.update(checked.validated_parameters)
        done = task_result(params, bool(self._play_context.check_mode))
        done["invocation"] = {"module_args": params}
        return merge_hash(result, done)
