#!/usr/bin/python
"""Ansible module: move a PostgreSQL data volume to another major (dump, restore, verify), or roll it back."""

from __future__ import annotations

DOCUMENTATION = r"""
module: cmx_pg_upgrade
short_description: Move the stack's PostgreSQL data volume to another major, verified, with a rollback copy
description:
  - C(inspect) reads the major of the data volume (its C(PG_VERSION)) and changes nothing.
  - C(upgrade) refuses a newer cluster (no downgrade) and a leftover kept copy, then stops the containers
    using the volumes, copies them to C(<volume>-pg<old major>) (kept, for the rollback), dumps the old
    cluster from that copy with C(pg_dumpall) (a server of O(old_image), no network) into O(backup_dir),
    counts and checksums every table, empties the volumes, initialises O(new_image)'s major on them with
    O(initdb_args), restores the dump and requires every table's row count and checksum to match. A
    failure before the volumes are emptied removes the copies and starts what it stopped (nothing
    changed); a later one names the kept copy and the rollback.
  - C(rollback) copies the kept copy of the major O(major) back into the volumes.
version_added: 0.1.0
author: CleanMateX DevOps
options:
  state: {description: What to do., type: str, default: upgrade, choices: [inspect, upgrade, rollback]}
  volume: {description: The data volume (<project>_postgres_data)., type: str, required: true}
  wal_volume:
    description: The WAL volume (<project>_postgres_wal); ignored when it does not exist.
    type: str
    default: ""
  old_image: {description: A PostgreSQL image of the volume's major (upgrade)., type: str, default: ""}
  new_image: {description: The PostgreSQL image of O(major)., type: str, required: true}
  major: {description: The major the stack is set to run (cmx_postgres_major)., type: int, required: true}
  superuser: {description: The bootstrap superuser (cmx_postgres_user)., type: str, default: postgres}
  initdb_args:
    description: The stack's initdb options.
    type: str
    default: --data-checksums --auth-host=scram-sha-256 --auth-local=trust
  backup_dir:
    description: Where the dump is written (a folder upgrade-<UTC time>-pg<old>-to-pg<new>).
    type: path
    default: ""
  timeout: {description: Seconds for each Docker step and server start., type: int, default: 600}
  docker: {description: The docker CLI., type: str, default: docker}
notes:
  - Check mode changes nothing (inspect still reads).
  - Configuration files (pg_hba.conf, postgresql.conf) are not carried over; the stack renders its own.
"""

EXAMPLES = r"""
- name: Move the data volume to PostgreSQL 17
  cleanmatex.infra.cmx_pg_upgrade:
    volume: cmx_postgres_data
    wal_volume: cmx_postgres_wal
    old_image: cmx/postgres:15-0123456789ab
    new_image: cmx/postgres:17-0123456789ab
    major: 17
    superuser: cmx
    backup_dir: /srv/cmx/backups
"""

RETURN = r"""
found: {description: The major the volume held before (null when no cluster)., returned: always, type: str}
kept:
  description: The kept copies (upgrade) or the copies restored from (rollback).
  returned: changed
  type: list
dump: {description: The pg_dumpall file., returned: upgrade changed, type: str}
tables: {description: Tables compared., returned: upgrade changed, type: int}
rows: {description: Rows compared., returned: upgrade changed, type: int}
stopped: {description: Containers stopped because they used the volumes., returned: changed, type: list}
"""

from ansible_collections.cleanmatex.infra.plugins.module_utils.pg_upgrade import ARGUMENT_SPEC, task_result
from ansible_collections.cleanmatex.infra.plugins.module_utils.task_module import run_task_module


def main() -> None:
    run_task_module(ARGUMENT_SPEC, task_result)


if __name__ == "__main__":
    main()
