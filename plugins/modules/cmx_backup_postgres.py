#!/usr/bin/python
# Copyright: CleanMateX DevOps
# Apache-2.0 (see galaxy.yml)

DOCUMENTATION = r"""
---
module: cmx_backup_postgres
short_description: Dump or restore the CleanMateX PostgreSQL database with the server container's own tools
description:
  - O(action=dump) runs C(pg_dump --format=custom) and C(pg_dumpall --globals-only) inside O(container)
    (so the tools always have the server's major version) and streams their output into
    C(<folder>/postgres/) on the host, computing sha256 on the way. The dump is taken from a snapshot
    exported by a REPEATABLE READ transaction that counts every table's rows at the same time, so the
    row counts returned belong exactly to the dump.
  - O(action=restore) runs C(pg_restore --single-transaction --exit-on-error) into a freshly created
    C(<db>__restore) database (roles it refers to that the cluster lacks are created bare first) and
    compares its row counts with the manifest. Only then does one transaction apply the backup's roles
    (existing ones are kept; the login role's password stays the inventory's), rename the live database
    aside as C(<db>_before_restore_<UTC time>) and rename the restored one into place. Any failure before
    that commit drops the copy and the roles created for it - nothing was replaced. Then O(init_sql) runs
    in the restored database, and set-aside databases beyond the O(keep_previous) newest are dropped.
  - The same restore in two calls, so that something else (restore.yml's backup of the current data) runs
    while pg_restore fills the side database - O(action=load) does everything up to the row counts and
    returns the state, O(action=swap) given that state as O(loaded) does the rest; O(action=abandon) drops
    the side database and the roles created for it instead (a restore given up between the two).
  - O(action=dump) uses O(compression), by default C(lz4) when C(pg_dump) is 16 or newer (else pg_dump's
    default, gzip); a restore reads any compression of the custom format, so older backups restore as before.
  - Without O(container) (an external, managed server) the tools run in a one-off container of O(image) on
    the host network (C(docker run --rm -i --network host)), connected like the module (host, port, sslmode,
    the CA file mounted read-only); roles are C(pg_dumpall --roles-only), C(--no-role-passwords) for a
    non-superuser login, and a restore as a non-superuser turns role statements it may not run into warnings.
  - Passwords reach the container by environment (C(docker exec -e PGPASSWORD)), never on a command line.
version_added: 0.1.0
author: CleanMateX DevOps
options:
  action:
    description: Dump, restore, or a restore in two steps (load, then swap or abandon).
    type: str
    required: true
    choices: [dump, restore, load, swap, abandon]
  container:
    description: The PostgreSQL container; empty for an external server (the tools then run from O(image)).
    type: str
    default: cmx-postgres
  image:
    description:
      - Image whose client tools reach an external server when O(container) is empty (the stack's PostgreSQL
        image, so that they have the server's major version). Empty - C(CMX_POSTGRES_IMAGE) of O(env_file).
    type: str
    default: ""
  env_file:
    description: The stack's rendered compose C(.env), read for C(CMX_POSTGRES_IMAGE) when O(image) is empty.
    type: path
  connection:
    description: How to reach the server from the host (for the snapshot, row counts, CREATE/DROP DATABASE).
    type: dict
    required: true
    suboptions:
      host: {description: Host., type: str, default: 127.0.0.1}
      port: {description: Port., type: int, default: 5432}
      user: {description: Role (the stack's owner role, a superuser)., type: str, required: true}
      password: {description: Its password., type: str, no_log: true}
      dbname: {description: The application database., type: str, required: true}
      sslmode:
        description: libpq sslmode.
        type: str
        default: disable
        choices: [disable, allow, prefer, require, verify-ca, verify-full]
      sslrootcert:
        description: CA file that verifies the server (the stack's CA when cmx_tls_enabled).
        type: path
  folder:
    description: The backup folder (written by a dump, read by a restore).
    type: path
    required: true
  compression:
    description:
      - C(pg_dump --compress) value (for example C(gzip), C(zstd:3), C(none)). Empty - C(lz4) when C(pg_dump)
        is 16 or newer, else pg_dump's default (gzip).
    type: str
    default: ""
  loaded:
    description: What O(action=load) returned (its RV(loaded)), for O(action=swap) and O(action=abandon).
    type: dict
    default: {}
  section:
    description: The manifest's C(postgres) section (O(action=restore)).
    type: dict
    default: {}
  managed_roles:
    description: Roles whose attributes and password a restore leaves alone (default the connection's user).
    type: list
    elements: str
    default: []
  check_counts:
    description: Refuse to replace the live database when the restored row counts differ from the manifest.
    type: bool
    default: true
  exact_counts:
    description:
      - Count the restored rows with C(count(*)) on every table. By default the counts come from the new
        database's insert statistics (only pg_restore wrote to it, in one transaction, so rows inserted
        are rows present) and C(count(*)) settles any difference; on a large database that saves a full
        read of every freshly written page.
    type: bool
    default: false
  init_sql:
    description:
      - SQL file inside O(container) run in the restored database after the swap (O(action=restore)), for
        the database-level grants a dump without C(--create) does not carry. The stack's init SQL is
        C(/docker-entrypoint-initdb.d/001-init.sql). Empty runs nothing.
      - Without O(container), a file on the host (mounted read-only into the one-off container), such as
        C(<cmx_project_dir>/postgres/initdb/001-init.sql).
    type: str
    default: ""
  keep_previous:
    description:
      - How many set-aside databases (C(<db>_before_restore_<UTC time>), the live database as it was before
        a restore) to keep after a successful restore; older ones are dropped. V(0) drops the one just set
        aside once the restored database is in place.
    type: int
    default: 1
requirements:
  - psycopg2 on the target, the docker CLI
"""

EXAMPLES = r"""
- name: Dump the database into a backup folder
  cleanmatex.infra.cmx_backup_postgres:
    action: dump
    connection: {port: 5432, user: cmx_user, password: "{{ cmx_postgres_password }}", dbname: cmx_db}
    folder: /opt/cmx/backups/20250601T120000Z
  no_log: true
"""

RETURN = r"""
files:
  description: Files written (relative path to size and sha256).
  returned: dump
  type: dict
postgres:
  description: The manifest's postgres section (versions, database settings, row counts per table).
  returned: dump
  type: dict
tables:
  description: Row counts per table of the restored database.
  returned: restore, load, swap
  type: dict
loaded:
  description: The side database filled by O(action=load) (name, oid, roles created for it, row counts).
  returned: load
  type: dict
cleanup_problems:
  description: What O(action=abandon) could not drop.
  returned: abandon
  type: list
  elements: str
report:
  description: One line per table - rows after the restore, rows in the backup, ok or DIFFERS.
  returned: restore
  type: list
  elements: str
counted_by:
  description: How the restored rows were counted (insert statistics of the new database, or count(*)).
  returned: restore
  type: str
problems:
  description: Row count differences with the manifest (restore with O(check_counts=false)).
  returned: restore
  type: list
  elements: str
previous_database:
  description: The live database as it was before the restore, renamed aside (null when none was kept).
  returned: restore
  type: str
kept_previous:
  description: Every set-aside database still kept, oldest first.
  returned: restore
  type: list
  elements: str
dropped_previous:
  description: Set-aside databases dropped because they were beyond O(keep_previous).
  returned: restore
  type: list
  elements: str
created_roles:
  description: Roles of the backup that the cluster did not have.
  returned: restore
  type: list
  elements: str
rollback:
  description: A command that puts RV(previous_database) back under the live name (empty when none was kept).
  returned: restore
  type: str
"""

from ansible.module_utils.basic import AnsibleModule, missing_required_lib
from ansible_collections.cleanmatex.infra.plugins.module_utils import backup, backup_exec, backup_postgres
from ansible_collections.cleanmatex.infra.plugins.module_utils.backup_exec import ExecError


def main():
    module = AnsibleModule(
        argument_spec={
            "action": {
                "type": "str",
                "required": True,
                "choices": ["dump", "restore", "load", "swap", "abandon"],
            },
            "container": {"type": "str", "default": "cmx-postgres"},
            "image": {"type": "str", "default": ""},
            "env_file": {"type": "path"},
            "connection": {
                "type": "dict",
                "required": True,
                "options": backup_postgres.CONNECTION_OPTIONS,
            },
            "folder": {"type": "path", "required": True},
            "compression": {"type": "str", "default": ""},
            "section": {"type": "dict", "default": {}},
            "managed_roles": {"type": "list", "elements": "str", "default": []},
            "check_counts": {"type": "bool", "default": True},
            "exact_counts": {"type": "bool", "default": False},
            "init_sql": {"type": "str", "default": ""},
            "keep_previous": {"type": "int", "default": 1},
            "loaded": {"type": "dict", "default": {}},
        },
        supports_check_mode=False,
    )
    if backup_postgres.psycopg2 is None:
        module.fail_json(msg=missing_required_lib("psycopg2"))
    docker = module.get_bin_path("docker", required=True)
    params = module.params
    connection = params["connection"]
    try:
        image = ""
        if not params["container"]:
            image = backup_exec.image_of(params["image"], params["env_file"])
        if params["action"] == "dump":
            result = backup_postgres.dump(
                connection=connection,
                container=params["container"],
                folder=params["folder"],
                compression=params["compression"],
                docker=docker,
                image=image,
            )
            module.exit_json(changed=True, **result)
        if params["action"] == "abandon":
            problems = backup_postgres.abandon(connection=connection, loaded=params["loaded"])
            module.exit_json(changed=True, cleanup_problems=problems)
        section = params["section"]
        if params["keep_previous"] < 0:
            module.fail_json(msg="keep_previous must be 0 (drop the set-aside database) or more")
        if not section.get("dump_file") or not section.get("globals_file"):
            module.fail_json(msg="section must be the manifest's postgres section (dump_file, globals_file)")
        if params["action"] == "swap" and not params["loaded"].get("scratch"):
            module.fail_json(msg="action=swap needs loaded: what action=load returned (its loaded)")
        common = {
            "connection": connection,
            "container": params["container"],
            "folder": params["folder"],
            "section": section,
            "managed_roles": params["managed_roles"] or [connection["user"]],
            "docker": docker,
            "image": image,
        }
        counting = {"check_counts": params["check_counts"], "exact_counts": params["exact_counts"]}
        swapping = {"init_sql": params["init_sql"], "keep_previous": params["keep_previous"]}
        if params["action"] == "load":
            loaded = backup_postgres.load(**common, **counting)
            for warning in loaded["warnings"]:
                module.warn(warning)
            module.exit_json(changed=True, loaded=loaded, tables=loaded["tables"])
        if params["action"] == "swap":
            loaded = {**params["loaded"], "warnings": []}  # the load's warnings were shown by the load
            result = backup_postgres.swap_in(**common, loaded=loaded, **swapping)
        else:
            result = backup_postgres.restore(**common, **counting, **swapping)
        for warning in result.pop("warnings"):
            module.warn(warning)
        module.exit_json(changed=True, **result)
    except (backup.BackupError, ExecError) as exc:
        module.fail_json(msg=str(exc))
    except backup_postgres.psycopg2.Error as exc:
        module.fail_json(msg=f"PostgreSQL error during {params['action']}: {str(exc).strip()}")
    except OSError as exc:
        module.fail_json(msg=f"{params['action']} failed: {exc}")


if __name__ == "__main__":
    main()
