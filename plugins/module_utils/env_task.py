# Copyright: CleanMateX DevOps
# Apache License 2.0 (see galaxy.yml)
"""The cmx_env_validate task, defined once: its parameters and how they become its result. The module runs
it on the managed host (the `path` form); the action plugin runs it on the controller (the `values` form)."""

from __future__ import annotations

from ansible_collections.cleanmatex.infra.plugins.module_utils import endpoints
from ansible_collections.cleanmatex.infra.plugins.module_utils.env_schema import (
    ENVIRONMENTS,
    STACK_INT_KEYS,
    STACK_KEYS,
    STACK_SECRET_KEYS,
)
from ansible_collections.cleanmatex.infra.plugins.module_utils.env_validate import (
    validate_file,
    validate_mapping,
)

# The argument spec's companions, as AnsibleModule and ArgumentSpecValidator take them.
ARGUMENT_RULES = {
    "mutually_exclusive": [("values", "path")],
    "required_one_of": [("values", "path")],
}


def argument_spec():
    stack_options = {
        key: {
            "type": "int" if key in STACK_INT_KEYS else "str",
            "no_log": key in STACK_SECRET_KEYS,
        }
        for key in STACK_KEYS
    }
    return {
        "environment": {"type": "str", "required": True, "choices": list(ENVIRONMENTS)},
        "values": {"type": "dict", "no_log": True},
        "undefined": {"type": "list", "elements": "str", "default": []},
        "path": {"type": "path"},
        "stack": {"type": "dict", "options": stack_options},
        # Where each data service runs (cmx_endpoints.settings, docs/external-services.md).
        "services": {"type": "dict"},
        "fail_on_error": {"type": "bool", "default": True},
    }


def hide_only_secrets(params, report, no_log_values):
    """`values` is no_log as a whole, which would mask every value (even "0") in all output. Keep masking the
    secrets, the passwords inside URLs, unknown variables' values and the stack secrets; unmask the rest."""
    stack = params.get("stack") or {}
    keep = report.secret_strings()
    keep.update(str(stack[key]) for key in STACK_SECRET_KEYS if stack.get(key))
    no_log_values.difference_update(report.public_strings() - keep)
    no_log_values.update(value for value in keep if value)


def task_result(params, no_log_values):
    """The result for validated parameters (with `failed` when the task fails) and the warnings to show.

    `no_log_values` is the set the argument spec collected; it is narrowed in place to the secrets."""
    environment = params["environment"]
    stack = params.get("stack") or {}
    try:
        if params.get("path"):
            report = validate_file(params["path"], environment, stack)
        else:
            report = validate_mapping(
                params.get("values") or {}, environment, stack, undefined=params.get("undefined") or ()
            )
    except ValueError as exc:
        return {"failed": True, "msg": str(exc)}, []
    for problem in endpoints.problems(params.get("services") or {}, environment):
        report.error(problem["variable"], problem["message"], problem["expected"])
    hide_only_secrets(params, report, no_log_values)
    result = {
        "changed": False,
        "valid": report.valid,
        "environment": environment,
        "source": report.source or "values",
        "errors": [problem.text for problem in report.errors],
        "problems": [problem.as_dict() for problem in report.problems],
        "error_count": len(report.errors),
        "warning_count": len(report.warnings),
        "variables": sorted(report.values),
        "msg": report.summary(),
    }
    if not report.valid and params["fail_on_error"]:
        lines = [report.summary()] + [f"  - {problem.text}" for problem in report.problems]
        result.update(failed=True, msg="\n".join(lines))
    return result, [problem.text for problem in report.warnings]
