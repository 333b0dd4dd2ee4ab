#!/usr/bin/python
"""Ansible module: describe the Docker host in one call."""

from __future__ import annotations

DOCUMENTATION = r"""
module: cmx_docker_host
short_description: Report the Docker engine, Compose v2, image build tools, OS family and init system
description:
  - Asks C(docker version) and C(docker compose version), looks for the image build tools on C(PATH), reads
    C(/etc/os-release) and whether PID 1 is systemd, all in one call.
  - Read-only, and never fails on what it finds. The caller decides (the docker_host role installs or stops
    with a message).
version_added: 0.1.0
author: CleanMateX DevOps
options:
  timeout:
    description: Seconds each Docker command may take.
    type: float
    default: 15
notes:
  - Supports check mode (it changes nothing).
"""

EXAMPLES = r"""
- name: Describe the Docker host
  cleanmatex.infra.cmx_docker_host:
  register: docker_host
"""

RETURN = r"""
engine_ok: {description: The daemon answered., returned: always, type: bool}
engine_version: {description: Server version, empty when it did not answer., returned: always, type: str}
engine_error: {description: First line of the error when it did not answer., returned: always, type: str}
docker_cli: {description: Path of the docker CLI, empty when missing., returned: always, type: str}
dockerd: {description: Path of dockerd, empty when missing., returned: always, type: str}
compose_ok: {description: The Compose v2 plugin answered., returned: always, type: bool}
compose_version: {description: Compose version., returned: always, type: str}
compose_error: {description: First error line when Compose did not answer., returned: always, type: str}
build_tools: {description: Build tool name to its path (empty when missing)., returned: always, type: dict}
uid: {description: Effective uid of the module., returned: always, type: int}
os_id: {description: ID from /etc/os-release., returned: always, type: str}
os_family: {description: C(Debian) for Debian and derivatives, else the ID., returned: always, type: str}
os_name: {description: PRETTY_NAME from /etc/os-release., returned: always, type: str}
systemd: {description: PID 1 is systemd., returned: always, type: bool}
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.cleanmatex.infra.plugins.module_utils.docker_host import probe


def main() -> None:
    module = AnsibleModule(
        argument_spec={"timeout": {"type": "float", "default": 15}}, supports_check_mode=True
    )
    module.exit_json(changed=False, **probe(module.params["timeout"]))


if __name__ == "__main__":
    main()
