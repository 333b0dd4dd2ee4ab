#!/usr/bin/python
# Copyright: CleanMateX
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: cmx_port_check
short_description: Preflight check that every host port the stack will publish is free
description:
  - For each port, tries to bind it on its address (TCP, C(SO_REUSEADDR), bound and closed at once).
  - A port published by a running container of our own compose project (label
    C(com.docker.compose.project=<project>)) counts as free, so re-running a playbook against a running
    stack passes.
  - On conflicts the module fails listing B(all) of them, each naming the port, the service, who holds
    it (a docker container publishing it, or the pid and command line found through
    C(/proc/net/tcp{,6}) and C(/proc/<pid>/fd)) and the inventory variable to change.
  - Containers are listed with C(docker ps --format ...) (argument list, no shell); without a usable
    docker CLI only the bind test and C(/proc) are used and a warning is returned.
  - Read-only; check mode runs the same checks.
version_added: "0.1.0"
author: CleanMateX DevOps
options:
  ports:
    description: The host ports the stack will publish.
    type: list
    elements: dict
    required: true
    suboptions:
      service:
        description: Service name used in messages (C(postgres), C(redis) ...).
        type: str
        required: true
      port:
        description: Host port.
        type: int
        required: true
      bind_address:
        description: Host address the port binds to; defaults to the top-level O(bind_address).
        type: str
      variable:
        description: Inventory variable that sets this port, named in the fix hint (C(cmx_postgres_port)).
        type: str
  project:
    description:
      - Compose project name. Ports published by running containers with this project label are ours.
      - Without it every publishing container is a conflict.
    type: str
  bind_address:
    description: Default bind address for entries without one.
    type: str
    default: 127.0.0.1
  address_variable:
    description: Inventory variable named when a bind address does not exist on this host.
    type: str
    default: cmx_bind_address
  use_docker:
    description: Ask C(docker ps) which containers publish the ports.
    type: bool
    default: true
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
notes:
  - Runs on the docker host (normally C(localhost)); only TCP ports are checked.
  - Finding the pid of another user's process needs root; otherwise the message says the holder
    is not visible.
"""

EXAMPLES = r"""
- name: Preflight - host ports
  cleanmatex.infra.cmx_port_check:
    project: "{{ cmx_project_name }}"
    bind_address: "{{ cmx_bind_address }}"
    ports:
      - {service: postgres, port: "{{ cmx_postgres_port }}", variable: cmx_postgres_port}
      - {service: pgbouncer, port: "{{ cmx_pgbouncer_port }}", variable: cmx_pgbouncer_port}
      - {service: redis, port: "{{ cmx_redis_port }}", variable: cmx_redis_port}
      - {service: s3, port: "{{ cmx_s3_port }}", variable: cmx_s3_port}
"""

RETURN = r"""
ports:
  description: One entry per checked port, in input order.
  returned: always
  type: list
  elements: dict
  contains:
    service:
      description: "Service name."
      type: str
      returned: always
    port:
      description: "Host port."
      type: int
      returned: always
    bind_address:
      description: "Address checked."
      type: str
      returned: always
    variable:
      description: "Inventory variable, if given."
      type: str
      returned: always
    status:
      description: V(free), V(ours) (held by our compose project), V(conflict) or V(error) (bad address/port).
      type: str
      returned: always
    holder:
      description: "Who holds the port (conflict/ours), else null."
      type: str
      returned: always
    message:
      description: "The problem and the fix, for conflict/error."
      type: str
      returned: always
    containers:
      description: "Running containers publishing this port."
      type: list
      elements: str
      returned: always
  sample:
    - service: postgres
      port: 5432
      bind_address: 127.0.0.1
      variable: cmx_postgres_port
      status: conflict
      holder: "pid 1234 (/usr/lib/postgresql/15/bin/postgres -D /var/lib/postgresql/15/main)"
      message: "port 5432 (postgres) on 127.0.0.1 is in use by pid 1234 (...); set cmx_postgres_port in your
        inventory to a free port"
      containers: []
conflicts:
  description: The message of every conflict or error (empty when all ports are usable).
  returned: always
  type: list
  elements: str
all_free:
  description: True when no port has a conflict or error.
  returned: always
  type: bool
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.cleanmatex.infra.plugins.module_utils.ports import check_ports


def main():
    module = AnsibleModule(
        argument_spec=dict(
            ports=dict(
                type="list",
                elements="dict",
                required=True,
                options=dict(
                    service=dict(type="str", required=True),
                    port=dict(type="int", required=True),
                    bind_address=dict(type="str"),
                    variable=dict(type="str"),
                ),
            ),
            project=dict(type="str"),
            bind_address=dict(type="str", default="127.0.0.1"),
            address_variable=dict(type="str", default="cmx_bind_address"),
            use_docker=dict(type="bool", default=True),
        ),
        supports_check_mode=True,
    )
    p = module.params

    docker = module.get_bin_path("docker") if p["use_docker"] else None

    def run(argv):
        if not docker:
            return 127, "", "docker CLI not found"
        return module.run_command([docker, *argv[1:]])

    statuses, warnings = check_ports(
        p["ports"],
        project=p["project"],
        default_bind=p["bind_address"],
        run=run,
        use_docker=p["use_docker"],
        address_variable=p["address_variable"],
    )
    for w in warnings:
        module.warn(w)
    problems = [s.message for s in statuses if s.status in ("conflict", "error")]
    result = dict(
        changed=False,
        ports=[s.as_dict() for s in statuses],
        conflicts=problems,
        all_free=not problems,
    )
    if problems:
        head = f"{len(problems)} host port problem(s); fix them before starting the stack:"
        module.fail_json(msg="\n".join([head] + [f"  - {m}" for m in problems]), **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
