# Copyright: CleanMateX DevOps
# Apache License 2.0 (see galaxy.yml)
"""Base of the action plugins that run their module's code in the controller's process when the host is
the controller itself (connection local, no become, no async).

Each module execution costs a module transfer and a second Python start (0.3-0.8 s on a busy 2-core
machine); the dev converge runs against the controller, so its fast path and cold start pay that only
where a module must run elsewhere. Remote hosts, become and async run the module as usual. The module
and the plugin share one `task_result(params, check_mode)` from module_utils, so both give the same result.
"""

from __future__ import annotations

from typing import ClassVar

from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible.plugins.action import ActionBase
from ansible.utils.vars import merge_hash


class ControllerLocalAction(ActionBase):
    """Subclasses set ARGUMENT_SPEC and implement run_here(params, check_mode) -> result dict
    (controller_local_action builds one from a module_utils' ARGUMENT_SPEC and task_result)."""

    _supports_check_mode = True
    _supports_async = True
    ARGUMENT_SPEC: ClassVar[dict] = {}

    def run_here(self, params: dict, check_mode: bool) -> dict:
        raise NotImplementedError

    def runs_here(self) -> bool:
        return not (
            self._task.async_val or self._play_context.become or self._connection.transport != "local"
        )

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        del tmp  # no longer used by Ansible
        if not self.runs_here():
            wrap_async = self._task.async_val and not self._connection.has_native_async
            done = self._execute_module(task_vars=task_vars, wrap_async=wrap_async)
            if not wrap_async:
                self._remove_tmp_path(self._connection._shell.tmpdir)
            return merge_hash(result, done)
        checked = ArgumentSpecValidator(self.ARGUMENT_SPEC).validate(dict(self._task.args))
        if checked.error_messages:
            return merge_hash(result, {"failed": True, "msg": checked.errors.msg})
        # No "invocation" in the result: parameters marked no_log must not reach the output.
        return merge_hash(
            result, self.run_here(checked.validated_parameters, bool(self._play_context.check_mode))
        )


def controller_local_action(argument_spec: dict, task_result) -> type[ControllerLocalAction]:
    """The ActionModule class of a module whose module_utils define ARGUMENT_SPEC and
    task_result(params, check_mode) -> result dict (with "failed" and "msg" on failure)."""

    class ActionModule(ControllerLocalAction):
        ARGUMENT_SPEC = argument_spec

        def run_here(self, params, check_mode):
            return task_result(params, check_mode)

    return ActionModule
