#!/usr/bin/python
# Copyright: CleanMateX
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: cmx_health
short_description: One-shot health report with the GET /health JSON contract
description:
  - Probes the listed services once, in parallel, with a per-probe timeout and an overall budget, and
    returns the same JSON the C(cmx-health) server answers on C(GET /health) (RV(report)).
  - "The report has exactly the keys C(status), C(timestamp), C(services) (C(database), C(redis), C(storage),
    each C(status) + C(latency)) and C(version); errors are returned separately in RV(errors), never inside
    RV(report)."
  - Read-only (C(changed=false)); check mode runs the probes too.
  - V(database), V(redis) and V(storage) are always in the report (down when not listed); other service names
    (V(pgbouncer), V(supabase)) are added as listed. O(services[].container) is ignored here.
version_added: "0.1.0"
author: CleanMateX DevOps
extends_documentation_fragment:
  - cleanmatex.infra.probe_services
options:
  probe_timeout:
    description: Seconds one probe may take.
    type: float
    default: 2
  budget:
    description: Seconds the whole report may take; defaults to O(probe_timeout) + 0.5.
    type: float
  version:
    description: The report's C(version) field.
    type: str
    default: unknown
  fail_when_unhealthy:
    description: Fail the task when the report is unhealthy (the result still carries the report).
    type: bool
    default: false
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
notes:
  - Passwords, DSNs, secret keys and headers are C(no_log); error texts never contain them.
"""

EXAMPLES = r"""
- name: Health report (same JSON as GET /health)
  cleanmatex.infra.cmx_health:
    version: "{{ cmx_version | default('dev') }}"
    services:
      - name: database
        type: postgres
        dsn: "postgresql://{{ cmx_postgres_user }}@127.0.0.1:{{ cmx_postgres_port }}/{{ cmx_postgres_db }}"
        password: "{{ cmx_postgres_password }}"
      - name: redis
        type: redis
        host: 127.0.0.1
        port: "{{ cmx_redis_port }}"
        password: "{{ cmx_redis_password | default(omit, true) }}"
      - name: storage
        type: s3
        endpoint: "http://127.0.0.1:{{ cmx_s3_port }}"
        bucket: "{{ cmx_s3_bucket }}"
        access_key: "{{ cmx_s3_access_key }}"
        secret_key: "{{ cmx_s3_secret_key }}"
  register: health

- name: Show it
  ansible.builtin.debug:
    var: health.report
"""

RETURN = r"""
report:
  description: The GET /health JSON.
  returned: always
  type: dict
  sample:
    status: unhealthy
    timestamp: "2025-10-09T12:00:00.123Z"
    services:
      database: {status: up, latency: 2.1}
      redis: {status: down, latency: 0.4}
      storage: {status: up, latency: 5.3}
    version: "0.1.0"
http_status:
  description: What the server would answer, 200 (healthy) or 503.
  returned: always
  type: int
healthy:
  description: True when every service is up.
  returned: always
  type: bool
errors:
  description: Error text per service that is down (secrets removed).
  returned: always
  type: dict
  sample: {redis: "127.0.0.1:6379: connection refused"}
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.cleanmatex.infra.plugins.module_utils import probes
from ansible_collections.cleanmatex.infra.plugins.module_utils.health_report import (
    BUDGET_GRACE_MS,
    build_report,
    http_status,
    run_parallel,
)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            services=dict(type="list", elements="dict", required=True, options=probes.MODULE_SERVICE_OPTIONS),
            probe_timeout=dict(type="float", default=2),
            budget=dict(type="float"),
            version=dict(type="str", default="unknown"),
            fail_when_unhealthy=dict(type="bool", default=False),
        ),
        supports_check_mode=True,
    )
    p = module.params
    problem = probes.validate_services(p["services"])
    if problem:
        module.fail_json(msg=problem)
    if p["probe_timeout"] <= 0 or (p["budget"] is not None and p["budget"] <= 0):
        module.fail_json(msg="probe_timeout and budget must be > 0")
    budget = p["budget"] if p["budget"] is not None else p["probe_timeout"] + BUDGET_GRACE_MS / 1000.0

    fns = {svc["name"]: probes.module_probe(svc) for svc in p["services"]}
    results = run_parallel(fns, p["probe_timeout"], budget)
    report = build_report(results, p["version"])
    errors = {name: res.error for name, res in results.items() if not res.up}
    for name in report["services"]:
        if name not in results:
            errors[name] = "not configured (not in services)"
    result = dict(
        changed=False,
        report=report,
        http_status=http_status(report),
        healthy=report["status"] == "healthy",
        errors=errors,
    )
    if p["fail_when_unhealthy"] and not result["healthy"]:
        down = ", ".join(f"{n} ({e})" for n, e in errors.items())
        module.fail_json(msg=f"unhealthy: {down}", **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
