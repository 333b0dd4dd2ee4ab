#!/usr/bin/python
"""Ansible module: the stack's status, one entry per service."""

from __future__ import annotations

DOCUMENTATION = r"""
module: cmx_stack_status
short_description: Report each service of the stack (container, image, server version, URL, health, uptime)
description:
  - Reads the stack rendered in O(project_dir) (its compose C(.env) and C(secrets/)) and asks the Docker
    engine about the project's containers; the server version comes from the server binary in each running
    container.
  - Read-only; the same report as C(bin/cmx-status).
  - Passwords appear in the URLs only with O(show_credentials=true) (dev's documented defaults).
version_added: 0.1.0
author: CleanMateX DevOps
options:
  project_dir: {description: The rendered stack's folder., type: path, required: true}
  show_credentials: {description: Put the passwords into the URLs (dev only)., type: bool, default: false}
  environment: {description: Environment name shown in the heading., type: str, default: ""}
notes:
  - Supports check mode.
"""

EXAMPLES = r"""
- name: Report the stack
  cleanmatex.infra.cmx_stack_status:
    project_dir: /opt/cleanmatex/.cmx
    environment: staging
  register: status
"""

RETURN = r"""
report:
  description: Project name, folder and one entry per service (service, container, image, version, url,
    health, uptime_seconds, uptime).
  returned: success
  type: dict
lines: {description: The report as aligned text lines., returned: success, type: list, elements: str}
healthy: {description: Every service is running and healthy., returned: success, type: bool}
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.cleanmatex.infra.plugins.module_utils import stack_status


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "project_dir": {"type": "path", "required": True},
            "show_credentials": {"type": "bool", "default": False},
            "environment": {"type": "str", "default": ""},
        },
        supports_check_mode=True,
    )
    p = module.params
    try:
        report = stack_status.collect(p["project_dir"], show_credentials=p["show_credentials"])
    except (stack_status.StatusError, OSError) as exc:
        module.fail_json(msg=str(exc))
    report["environment"] = p["environment"]
    healthy = bool(report["services"]) and all(s["health"] == "healthy" for s in report["services"])
    module.exit_json(
        changed=False, report=report, lines=stack_status.lines(report, p["environment"]), healthy=healthy
    )


if __name__ == "__main__":
    main()
