#!/usr/bin/python
"""Ansible module: refuse a PostgreSQL data volume written by another major (the upgrade guard)."""

from __future__ import annotations

DOCUMENTATION = r"""
module: cmx_pg_volume_check
short_description: Refuse a PostgreSQL data volume written by another major version
description:
  - Reads C(PG_VERSION) from the data volume with a one-off container of O(image) (no network, the
    volume mounted read-only) and fails when it names another major than O(major), with a message naming
    both and how to move the data. Nothing is started and the volume is not changed.
  - Skipped (ok) when O(container) runs O(image) already, when the volume does not exist, or when it holds no
    cluster yet.
version_added: 0.1.0
author: CleanMateX DevOps
options:
  volume: {description: The data volume (<project>_postgres_data)., type: str, required: true}
  image: {description: The PostgreSQL image the stack is about to run., type: str, required: true}
  major: {description: The major the stack is set to run (cmx_postgres_major)., type: int, required: true}
  container: {description: The stack's PostgreSQL container., type: str, default: ""}
  docker: {description: The docker CLI., type: str, default: docker}
notes:
  - Supports check mode (it only reads).
"""

EXAMPLES = r"""
- name: Refuse a data volume of another PostgreSQL major
  cleanmatex.infra.cmx_pg_volume_check:
    volume: cmx_postgres_data
    image: cmx/postgres:17-0123456789ab
    major: 17
    container: cmx-postgres
"""

RETURN = r"""
found: {description: The major found in the volume (null when none)., returned: always, type: str}
"""

from ansible_collections.cleanmatex.infra.plugins.module_utils.pg_volume import ARGUMENT_SPEC, task_result
from ansible_collections.cleanmatex.infra.plugins.module_utils.task_module import run_task_module


def main() -> None:
    run_task_module(ARGUMENT_SPEC, task_result)


if __name__ == "__main__":
    main()
