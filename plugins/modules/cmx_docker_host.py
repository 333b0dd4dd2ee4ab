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
  - With O(ports), also tells which of the host ports a stack will publish are taken (a bind test, then
    C(docker ps) and C(/proc/net/tcp{,6}) to name the holder); ports published by O(project)'s own running
    containers count as free. The preflight role stops on RV(port_problems), listing them all.
  - Returns RV(dockerd_plan), how the engine is (to be) run so that something restarts it after a crash or a
    reboot (systemd's docker.service where PID 1 is systemd; without systemd a background start only in the
    C(dev) and C(ci) environments, otherwise C(refuse) with a message naming the host and the fix).
  - With O(dockerd_log) on a host without systemd, rotates that log (copy, then truncate in place) when it is
    larger than O(dockerd_log_max_bytes), keeping O(dockerd_log_keep) old files; the only change it makes.
  - Otherwise read-only, and never fails on what it finds. The caller decides (the docker_host role installs
    or stops with a message; the images role pulls or builds).
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
  ports:
    description: Host ports to check (only when the engine answered; default none).
    type: list
    elements: dict
    default: []
    suboptions:
      service: {description: Service named in messages (e.g. C(postgres))., type: str, required: true}
      port: {description: Host port., type: int, required: true}
      bind_address: {description: Host address it binds to (default O(bind_address))., type: str}
      variable: {description: Inventory variable that sets it, named in the fix hint., type: str}
  project:
    description: Compose project whose running containers may already hold O(ports).
    type: str
  bind_address: {description: Default bind address of O(ports)., type: str, default: 127.0.0.1}
  address_variable:
    description: Inventory variable named when a bind address does not exist on this host.
    type: str
    default: cmx_bind_address
  environment:
    description: The inventory's C(cmx_environment); only C(dev) and C(ci) may run dockerd without systemd.
    type: str
    default: ""
  inventory_host:
    description: The host's inventory name, used in RV(dockerd_plan)'s message.
    type: str
    default: this host
  dockerd_log:
    description: Log file of a dockerd started without systemd, rotated when too large (unset, no rotation).
    type: path
  dockerd_log_max_bytes:
    description: Size above which O(dockerd_log) is rotated.
    type: int
    default: 52428800
  dockerd_log_keep: {description: Rotated copies of O(dockerd_log) kept (.1 newest)., type: int, default: 3}
notes:
  - Supports check mode (it changes nothing; leave O(dockerd_log) unset in check mode).
"""

EXAMPLES = r"""
- name: Describe the Docker host
  cleanmatex.infra.cmx_docker_host:
  register: docker_host

- name: Describe it and show a warning
  cleanmatex.infra.cmx_docker_host:
    warnings: [MinIO is archived upstream]
  register: docker_host

- name: Describe it and check the stack's host ports
  cleanmatex.infra.cmx_docker_host:
    project: cmx
    ports:
      - {service: postgres, port: 5432, variable: cmx_postgres_port}
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
ports:
  description:
    - One entry per O(ports) item (service, port, bind_address, variable, holder, containers, message)
      with its status C(free), C(ours), C(conflict) or C(error).
  returned: always
  type: list
  elements: dict
port_problems:
  description: One message per taken or invalid port, naming the port, the service, the holder and the fix.
  returned: always
  type: list
  elements: str
dockerd_plan:
  description:
    - C(action) C(none), C(systemd) (systemctl enable --now docker), C(background) (dev/ci without systemd)
      or C(refuse) (no systemd outside dev/ci), and C(message).
  returned: always
  type: dict
docker_service_enabled:
  description: systemd starts docker.service at boot; null without systemd.
  returned: always
  type: bool
dockerd_log_rotated: {description: O(dockerd_log) was rotated by this call., returned: always, type: bool}
python_modules:
  description: Python library name to whether the host's interpreter (the module's) can import it (psycopg2).
  returned: always
  type: dict
daemon_settings:
  description: C(/etc/docker/daemon.json) as a dict; empty without one, null when it is not a JSON object.
  returned: always
  type: dict
"""

from ansible_collections.cleanmatex.infra.plugins.module_utils.docker_host import ARGUMENT_SPEC, task_result
from ansible_collections.cleanmatex.infra.plugins.module_utils.task_module import run_task_module


def main() -> None:
    run_task_module(ARGUMENT_SPEC, task_result)


if __name__ == "__main__":
    main()
