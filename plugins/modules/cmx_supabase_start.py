#!/usr/bin/python
# Copyright: CleanMateX
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ansible module: supabase start, checked first and bounded, failing with one message."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: cmx_supabase_start
short_description: Start Supabase local with the pinned CLI, after checking what would make it fail
description:
  - "When Supabase already runs (C(supabase status) succeeds) nothing is done (C(changed=false))."
  - "Otherwise, before anything starts: the Docker engine answers and is at least O(docker_min_version); the
    host ports C(supabase/config.toml) gives the started services are free (the collection's port check,
    naming who holds a taken one); the images C(supabase services -o json) lists for the enabled, not
    excluded services exist under the name the CLI runs them as (C(public.ecr.aws/supabase/<name>:<tag>), or
    the short name with C(SUPABASE_INTERNAL_IMAGE_REGISTRY=docker.io)) or a registry the CLI tries answers.
    Any problem stops here, in about a second, with one message."
  - "Then runs C(<cli> start --workdir <workdir> [--exclude a,b]) (argv, no shell) in its own process group,
    killed after O(timeout) seconds; a failure is summarized in one message (the images that could not be
    pulled and why, a taken port, a Docker engine too old), not the CLI's retry log."
  - The CLI removes what it created when it fails; the CleanMateX stack's containers are never touched.
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
  exclude:
    description: Services not to start (C(--exclude)); the names C(supabase start --help) lists.
    type: list
    elements: str
    default: []
    choices: [gotrue, realtime, storage-api, imgproxy, kong, mailpit, postgrest, postgres-meta, studio,
              edge-runtime, logflare, vector, supavisor]
  timeout:
    description: Seconds C(supabase start) may take (pulling images included) before it is killed.
    type: float
    default: 600
  check_images:
    description: Check the images and the registries before starting.
    type: bool
    default: true
  check_ports:
    description: Check the host ports before starting.
    type: bool
    default: true
  docker_min_version:
    description: Oldest Docker engine accepted.
    type: str
    default: "20.10"
  registry_probe_timeout:
    description: Seconds each registry probe (C(GET https://<registry>/v2/)) may take.
    type: float
    default: 3
notes:
  - Check mode runs the checks and reports whether it would start.
  - "Images the CLI pulls that C(supabase services) does not list (kong, mailpit, vector, imgproxy) are not
    checked beforehand: when only those are missing and no registry answers, the CLI's own failure (about
    75 s of retries) is what stops it, summarized the same way."
"""

EXAMPLES = r"""
- name: Start Supabase local
  cleanmatex.infra.cmx_supabase_start:
    cli: "{{ playbook_dir }}/../node_modules/.bin/supabase"
    workdir: "{{ cmx_project_dir }}"
    exclude: [logflare, vector, edge-runtime, imgproxy, supavisor]
"""

RETURN = r"""
started: {description: supabase start ran and succeeded., returned: always, type: bool}
already_running: {description: Supabase was running; nothing was done., returned: always, type: bool}
checks:
  description: "What was checked: docker_version, images, missing_images, registries (host: null or why not),
    problems."
  returned: always
  type: dict
seconds: {description: How long supabase start took (0 when it did not run)., returned: always, type: float}
stderr_tail:
  description: The last lines the CLI printed on stderr when it failed.
  returned: failure
  type: str
"""

import shlex

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.cleanmatex.infra.plugins.module_utils import ports
from ansible_collections.cleanmatex.infra.plugins.module_utils import supabase_status as sb


def _port_problems(specs):
    statuses, _ = ports.check_ports(
        specs, project=None, default_bind="0.0.0.0", address_variable="config.toml"
    )
    return [st.message for st in statuses if st.status in ("conflict", "error") and st.message]


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "cli": {"type": "path", "required": True},
            "workdir": {"type": "path", "required": True},
            "exclude": {"type": "list", "elements": "str", "default": [], "choices": list(sb.EXCLUDE_NAMES)},
            "timeout": {"type": "float", "default": 600},
            "check_images": {"type": "bool", "default": True},
            "check_ports": {"type": "bool", "default": True},
            "docker_min_version": {"type": "str", "default": "20.10"},
            "registry_probe_timeout": {"type": "float", "default": 3},
        },
        supports_check_mode=True,
    )
    p = module.params
    result = {"changed": False, "started": False, "already_running": False, "checks": {}, "seconds": 0.0}

    try:
        rc, _, _, _ = sb.run_bounded(sb.cli_argv(p["cli"], ["status", "-o", "json"], p["workdir"]), 60)
    except OSError as exc:
        module.fail_json(
            msg=f"cannot run the Supabase CLI {p['cli']}: {exc} (run npm ci in the collection's folder)"
        )
    if rc == 0:
        result["already_running"] = True
        module.exit_json(**result)

    try:
        checks = sb.check_start(
            p["cli"],
            p["workdir"],
            p["exclude"],
            docker_min_version=p["docker_min_version"],
            check_images=p["check_images"],
            probe_timeout=p["registry_probe_timeout"],
            port_checker=_port_problems if p["check_ports"] else None,
        )
    except sb.SupabaseError as exc:
        module.fail_json(msg=sb.start_failure_message([str(exc)]), **result)
    result["checks"] = checks
    if checks["problems"]:
        module.fail_json(msg=sb.start_failure_message(checks["problems"]), **result)
    if module.check_mode:
        result["changed"] = True
        module.exit_json(**result)

    verb = ["start"] + ([f"--exclude={','.join(p['exclude'])}"] if p["exclude"] else [])
    argv = sb.cli_argv(p["cli"], verb, p["workdir"])
    rc, out, err, seconds = sb.run_bounded(argv, p["timeout"])
    result["seconds"] = round(seconds, 1)
    if rc == 0:
        result.update(changed=True, started=True)
        module.exit_json(**result)
    result["stderr_tail"] = "\n".join(err.strip().splitlines()[-5:])[-2000:]
    summary = sb.summarize_start_failure(err, out)
    if rc is None:
        summary = f"{shlex.join(argv)} did not finish within {p['timeout']:.0f} s (killed); {summary}"
    module.fail_json(msg=sb.start_failure_message([summary], seconds, ran_cli=True), **result)


if __name__ == "__main__":
    main()
