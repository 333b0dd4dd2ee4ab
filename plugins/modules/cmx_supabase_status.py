#!/usr/bin/python
# Copyright: CleanMateX
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ansible module: is Supabase local running, and its URLs and keys (supabase status -o json)."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: cmx_supabase_status
short_description: Read the state, URLs and keys of Supabase local from C(supabase status -o json)
description:
  - Runs C(<cli> status -o json --workdir <workdir>) (argv, no shell) and parses its output.
  - The CLI exits non-zero when the project's database container does not exist or is not healthy; that is
    reported as RV(running=false), not as a failure.
  - RV(app_env) holds the three variables the apps' C(.env) takes from it (C(NEXT_PUBLIC_SUPABASE_URL) from
    C(API_URL), C(NEXT_PUBLIC_SUPABASE_ANON_KEY) from C(ANON_KEY) or C(PUBLISHABLE_KEY),
    C(SUPABASE_SERVICE_ROLE_KEY) from C(SERVICE_ROLE_KEY) or C(SECRET_KEY)); with O(require_keys=true) the
    module fails when Supabase is not running or the status lacks one of them.
  - Never changes anything (C(changed=false)). The keys are secrets: register the result in a C(no_log) task.
version_added: "0.1.0"
author: CleanMateX DevOps
options:
  cli:
    description: Path of the Supabase CLI (the pinned C(node_modules/.bin/supabase)).
    type: path
    required: true
  workdir:
    description: The folder holding C(supabase/config.toml) (C(--workdir)).
    type: path
    required: true
  require_keys:
    description: Fail unless Supabase runs and the status shows the URL and both keys.
    type: bool
    default: false
  timeout:
    description: Seconds the CLI may take.
    type: float
    default: 60
notes:
  - Supports check mode.
"""

EXAMPLES = r"""
- name: Read the Supabase status
  cleanmatex.infra.cmx_supabase_status:
    cli: "{{ playbook_dir }}/../node_modules/.bin/supabase"
    workdir: "{{ cmx_project_dir }}"
  register: supabase_status
"""

RETURN = r"""
running:
  description: The project's database container is up and healthy (the CLI's own test).
  returned: always
  type: bool
values:
  description: Every key the status printed (API_URL, DB_URL, STUDIO_URL, ANON_KEY, ...).
  returned: always
  type: dict
app_env:
  description: The app variables taken from it (empty when a key is missing).
  returned: always
  type: dict
stopped:
  description: Containers of the project that are not running (the CLI's "Stopped services").
  returned: always
  type: list
  elements: str
message:
  description: Why Supabase is not running (the CLI's error), empty when it is.
  returned: always
  type: str
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.cleanmatex.infra.plugins.module_utils import supabase_status as sb


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "cli": {"type": "path", "required": True},
            "workdir": {"type": "path", "required": True},
            "require_keys": {"type": "bool", "default": False},
            "timeout": {"type": "float", "default": 60},
        },
        supports_check_mode=True,
    )
    p = module.params
    argv = sb.cli_argv(p["cli"], ["status", "-o", "json"], p["workdir"])
    try:
        rc, out, err, _ = sb.run_bounded(argv, p["timeout"])
    except OSError as exc:
        module.fail_json(
            msg=f"cannot run the Supabase CLI {p['cli']}: {exc} (run npm ci in the collection's folder)"
        )
    result = {"changed": False, "running": False, "values": {}, "app_env": {}, "stopped": [], "message": ""}
    if rc != 0:
        lines = [ln for ln in (err or out).splitlines() if ln.strip() and not ln.startswith("Try rerunning")]
        result["message"] = (
            f"supabase status did not finish within {p['timeout']:.0f} s"
            if rc is None
            else (lines or ["no output"])[-1]
        )
        if p["require_keys"]:
            module.fail_json(msg=f"Supabase is not running: {result['message']}", **result)
        module.exit_json(**result)
    try:
        values = sb.parse_status_json(out)
    except sb.SupabaseError as exc:
        module.fail_json(msg=str(exc), **result)
    result.update(running=True, values=values, stopped=sb.parse_stopped(err))
    try:
        result["app_env"] = sb.app_env(values)
    except sb.SupabaseError as exc:
        if p["require_keys"]:
            module.fail_json(msg=str(exc), **result)
        result["message"] = str(exc)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
