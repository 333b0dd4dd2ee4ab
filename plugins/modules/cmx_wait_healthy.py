#!/usr/bin/python
# Copyright: CleanMateX
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: cmx_wait_healthy
short_description: Wait until PostgreSQL, PgBouncer, Redis, S3 and HTTP services answer
description:
  - Probes every listed service in parallel, every O(interval) seconds, until each has answered once,
    or O(timeout) seconds pass. A service that came up is not probed again.
  - "Probes: C(postgres) connect + C(SELECT 1) (direct or through PgBouncer; psycopg2 or psycopg 3);
    C(redis) AUTH + PING over raw RESP; C(s3) the engine health endpoint and an authenticated,
    SigV4-signed C(HEAD /<bucket>); C(http) status code in O(services[].expected_status); C(tcp) connect."
  - "External (managed) services: C(redis) over TLS (C(rediss://) or O(services[].tls)), C(s3) and C(http)
    over https, verified against O(services[].ca_file) or the system CAs; S3 path-style or virtual-hosted
    (O(services[].addressing)); an empty O(services[].health_path) checks only the signed bucket C(HEAD).
    A TLS failure reads e.g.
    C(TLS: certificate verify failed (unable to get local issuer certificate) at host:port)."
  - On timeout the module fails naming each service still down, its last error and the last
    O(log_lines) lines of its container log (C(docker logs --tail 2N --timestamps <container>), stdout and
    stderr merged in time order).
  - Never changes anything (C(changed=false)).
version_added: "0.1.0"
author: CleanMateX DevOps
extends_documentation_fragment:
  - cleanmatex.infra.probe_services
options:
  timeout:
    description: Seconds to wait for all services.
    type: float
    default: 120
  interval:
    description:
      - Seconds between probe rounds; keep it at or below 0.5 so readiness is noticed within a second.
    type: float
    default: 0.5
  probe_timeout:
    description: Seconds one probe may take (capped by the time left).
    type: float
    default: 2
  log_lines:
    description: Container log lines shown per failed service.
    type: int
    default: 20
attributes:
  check_mode:
    support: full
    details:
      - In check mode every service is probed B(once) and reported; the module never fails for a service
        that is down (in a check run the stack may not have been started) and sets RV(would_wait).
  diff_mode:
    support: none
notes:
  - Passwords, DSNs, secret keys and headers are C(no_log); error texts never contain them.
"""

EXAMPLES = r"""
- name: Wait for the stack
  cleanmatex.infra.cmx_wait_healthy:
    timeout: 120
    services:
      - name: postgres
        type: postgres
        host: 127.0.0.1
        port: "{{ cmx_postgres_port }}"
        user: "{{ cmx_postgres_user }}"
        password: "{{ cmx_postgres_password }}"
        dbname: "{{ cmx_postgres_db }}"
        container: cmx-postgres
      - name: pgbouncer
        type: postgres
        dsn: "postgresql://{{ cmx_postgres_user }}@127.0.0.1:{{ cmx_pgbouncer_port }}/{{ cmx_postgres_db }}"
        password: "{{ cmx_postgres_password }}"
        container: cmx-pgbouncer
      - name: redis
        type: redis
        host: 127.0.0.1
        port: "{{ cmx_redis_port }}"
        password: "{{ cmx_redis_password | default(omit, true) }}"
        container: cmx-redis
      - name: storage
        type: s3
        endpoint: "http://127.0.0.1:{{ cmx_s3_port }}"
        bucket: "{{ cmx_s3_bucket }}"
        access_key: "{{ cmx_s3_access_key }}"
        secret_key: "{{ cmx_s3_secret_key }}"
        container: cmx-storage
      - name: health
        type: http
        url: "http://127.0.0.1:{{ cmx_health_port }}/health"
        expected_status: [200]
        container: cmx-health

- name: Wait for managed Redis (TLS) and AWS S3 (virtual-hosted, no health endpoint)
  cleanmatex.infra.cmx_wait_healthy:
    timeout: 60
    services:
      - name: redis
        type: redis
        url: "rediss://{{ cmx_redis_host }}:{{ cmx_redis_port }}/0"
        password: "{{ cmx_redis_password }}"
        ca_file: "{{ cmx_redis_ca_file | default(omit, true) }}"
      - name: storage
        type: s3
        endpoint: https://s3.eu-west-1.amazonaws.com
        region: eu-west-1
        addressing: virtual
        health_path: ""
        bucket: "{{ cmx_s3_bucket }}"
        access_key: "{{ cmx_s3_access_key }}"
        secret_key: "{{ cmx_s3_secret_key }}"

- name: What is up right now (never fails in check mode)
  cleanmatex.infra.cmx_wait_healthy:
    services: [{name: redis, type: redis, host: 127.0.0.1, port: 6379}]
  check_mode: true
  register: now
"""

RETURN = r"""
services:
  description: Per service, keyed by name, in input order.
  returned: always
  type: dict
  contains:
    status:
      description: "V(up) or V(down) after the last attempt."
      type: str
      returned: always
    latency_ms:
      description: "Latency of the last attempt in ms (0.1 precision)."
      type: float
      returned: always
    attempts:
      description: "Probes made."
      type: int
      returned: always
    error:
      description: "Last error, null when up."
      type: str
      returned: always
    ready_after_s:
      description: "Seconds from the start until it answered, null when never."
      type: float
      returned: always
    type:
      description: "Probe type."
      type: str
      returned: always
    container:
      description: "Container name, if given."
      type: str
      returned: always
    log_tail:
      description: "Last container log lines (only for services still down at a timeout)."
      type: list
      elements: str
      returned: on failure with a container
  sample:
    redis: {status: up, latency_ms: 0.6, attempts: 3, error: null, ready_after_s: 1.02, type: redis,
            container: cmx-redis}
elapsed:
  description: Seconds spent waiting.
  returned: always
  type: float
all_up:
  description: True when every service answered.
  returned: always
  type: bool
down:
  description: Names of the services still down.
  returned: always
  type: list
  elements: str
would_wait:
  description: Check mode only - the services a real run would still wait for.
  returned: in check mode
  type: list
  elements: str
"""

import re

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.cleanmatex.infra.plugins.module_utils import probes
from ansible_collections.cleanmatex.infra.plugins.module_utils.health_report import wait_until_up

_TS = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z?)\s?(.*)$")


def container_log_tail(module, container, lines, secrets=()):
    """Last ``lines`` lines of a container's stdout+stderr, merged in time order, secrets masked
    (the given values, password=.., PASSWORD '..' and URL credentials: a log may echo a statement)."""
    docker = module.get_bin_path("docker")
    if not docker:
        return ["(docker CLI not found: no container log)"]
    # docker's --tail counts lines in log-file order, which can differ from time order across stdout and
    # stderr: fetch twice as many, merge by timestamp, keep the newest ``lines``.
    rc, out, err = module.run_command([docker, "logs", "--tail", str(lines * 2), "--timestamps", container])
    if rc != 0:
        return [f"(docker logs {container} failed: {probes.redact((err or out).strip(), secrets)[:300]})"]
    stamped = []
    for stream, text in ((0, out), (1, err)):
        for i, line in enumerate(text.splitlines()):
            m = _TS.match(line)
            stamped.append((m.group(1) if m else "", stream, i, m.group(2) if m else line))
    stamped.sort()
    return [probes.redact(text, secrets) for _, _, _, text in stamped][-lines:]


def main():
    module = AnsibleModule(
        argument_spec=dict(
            services=dict(type="list", elements="dict", required=True, options=probes.MODULE_SERVICE_OPTIONS),
            timeout=dict(type="float", default=120),
            interval=dict(type="float", default=0.5),
            probe_timeout=dict(type="float", default=2),
            log_lines=dict(type="int", default=20),
        ),
        supports_check_mode=True,
    )
    p = module.params
    services = p["services"]
    problem = probes.validate_services(services)
    if problem:
        module.fail_json(msg=problem)
    if p["interval"] <= 0 or p["probe_timeout"] <= 0 or p["timeout"] < 0:
        module.fail_json(msg="interval and probe_timeout must be > 0, timeout >= 0")

    fns = {svc["name"]: probes.module_probe(svc) for svc in services}

    all_up, states, elapsed = wait_until_up(
        fns,
        timeout=p["timeout"],
        interval=p["interval"],
        probe_timeout=p["probe_timeout"],
        once=module.check_mode,
    )
    for svc in services:
        states[svc["name"]]["type"] = svc["type"]
        states[svc["name"]]["container"] = svc.get("container")
    down = [name for name, st in states.items() if st["status"] != probes.UP]
    result = dict(changed=False, services=states, elapsed=elapsed, all_up=all_up, down=down)

    if module.check_mode:
        result["would_wait"] = down
        module.exit_json(**result)
    if all_up:
        module.exit_json(**result)

    parts = []
    for svc in services:
        st = states[svc["name"]]
        if st["status"] == probes.UP:
            continue
        text = (
            f"- {svc['name']} ({svc['type']}): down after {st['attempts']} attempt(s); "
            f"last error: {st['error']}"
        )
        if svc.get("container"):
            tail = container_log_tail(
                module, svc["container"], p["log_lines"], probes.service_secrets(services)
            )
            st["log_tail"] = tail
            text += f"\n  last {p['log_lines']} log lines of container {svc['container']}:\n"
            text += "\n".join("    | " + line for line in tail) if tail else "    (empty log)"
        parts.append(text)
    msg = f"Timed out after {p['timeout']:g} s waiting for {len(down)} service(s): {', '.join(down)}\n"
    module.fail_json(msg=msg + "\n".join(parts), **result)


if __name__ == "__main__":
    main()
