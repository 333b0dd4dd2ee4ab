#!/usr/bin/python
"""Ansible module: describe the Docker host in one call."""

from __future__ import annotations

DOCUMENTATION = r"""
module: cmx_docker_host
short_description: Report the Docker engine, Compose v2, build tools, OS, apt mirror, architecture and images
description:
  - Asks C(docker version) and C(docker compose version), looks for the image build tools on C(PATH), reads
    C(/etc/os-release) and whether PID 1 is systemd, all in one call.
  - Also reads the Debian mirror from the apt sources (C(sources.list), C(sources.list.d/*.list) one-line
    format, C(sources.list.d/*.sources) deb822) for the URI of the first enabled C(deb) source that serves a
    Debian suite. The images role builds its base image from it, so no mirror host name is ever written
    into the project.
  - Lists the Docker host's images with one C(GET /images/json) on the daemon's Unix socket.
  - Read-only, and never fails on what it finds. The caller decides (the docker_host role installs or stops
    with a message; the images role pulls or builds).
version_added: 0.1.0
author: CleanMateX DevOps
options:
  timeout:
    description: Seconds each Docker command (and the image listing) may take.
    type: float
    default: 15
  apt_dir:
    description: apt configuration directory (tests point it elsewhere).
    type: path
    default: /etc/apt
  docker_host:
    description:
      - Docker daemon to ask; given to the docker CLI as C(DOCKER_HOST) when set.
      - Only C(unix://) sockets are listed for RV(images); for anything else RV(images) is null and the
        images role asks community.docker.docker_image_info instead.
      - Defaults to the C(DOCKER_HOST) environment variable, then C(unix:///var/run/docker.sock).
    type: str
  warnings:
    description: Messages to show as Ansible warnings (lets a role warn without an extra task).
    type: list
    elements: str
    default: []
notes:
  - Supports check mode (it changes nothing).
"""

EXAMPLES = r"""
- name: Describe the Docker host
  cleanmatex.infra.cmx_docker_host:
  register: docker_host

- name: Describe it and show a warning
  cleanmatex.infra.cmx_docker_host:
    warnings: [MinIO is archived upstream]
  register: docker_host

- name: Show the mirror the base image would be built from
  ansible.builtin.debug:
    var: docker_host.mirror
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
arch: {description: Machine architecture (platform.machine()), e.g. x86_64., returned: always, type: str}
mirror:
  description: URI of the Debian mirror, without a trailing slash; empty when none was found.
  type: str
  returned: always
mirror_file: {description: The apt source file the mirror was read from., returned: always, type: str}
images:
  description: Every C(repository:tag) on the Docker host; null when it could not be asked over a Unix socket.
  type: list
  elements: str
  returned: always
images_error: {description: Why RV(images) is null; empty otherwise., returned: always, type: str}
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.cleanmatex.infra.plugins.module_utils.docker_host import probe


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "timeout": {"type": "float", "default": 15},
            "apt_dir": {"type": "path", "default": "/etc/apt"},
            "docker_host": {"type": "str"},
            "warnings": {"type": "list", "elements": "str", "default": []},
        },
        supports_check_mode=True,
    )
    for message in module.params["warnings"]:
        module.warn(message)
    params = module.params
    module.exit_json(changed=False, **probe(params["timeout"], params["apt_dir"], params["docker_host"]))


if __name__ == "__main__":
    main()
