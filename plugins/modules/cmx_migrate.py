#!/usr/bin/python
# Copyright: CleanMateX DevOps
# Apache-2.0 (see galaxy.yml)

DOCUMENTATION = r"""
---
module: cmx_migrate
short_description: Apply Supabase-style SQL migrations and seed data to PostgreSQL
description:
  - Applies C(supabase/migrations/<version>_<name>.sql) files that are not yet recorded in
    C(supabase_migrations.schema_migrations), in file name order, each in its own transaction together
    with its history row, exactly as the Supabase CLI records them. C(supabase migration list --db-url ...)
    therefore shows them as applied, and migrations applied by C(supabase db push) count as applied here.
  - An applied migration whose file content no longer matches the statements recorded for it, or that has
    no local file any more, is reported as drift. Only layout is ignored (white space and C(;) between
    tokens); a changed name, literal, comment or statement is drift. Rows written by the Supabase CLI
    compare the same way, wherever its splitter cut the file. With O(fail_on_drift=true) the module
    fails before applying anything; otherwise it warns and applies the pending migrations. Drifted files
    are never re-applied.
  - A migration with an SQL error stops the run. The error names the file, the statement, its line and
    column and PostgreSQL's message. Migrations before it stay applied; the failed one is rolled back and
    not recorded.
  - Transaction control would break that (a C(COMMIT) keeps half a file with no history row), so pending files
    and a due seed containing C(BEGIN), C(COMMIT), C(END), C(ROLLBACK), C(ABORT), C(START TRANSACTION) or
    C(PREPARE TRANSACTION) are refused before anything runs, each one listed with its file and line.
    C(SAVEPOINT), C(RELEASE) and C(ROLLBACK TO) are allowed.
  - With O(seed=true) the seed file runs after the migrations when its sha256 differs from the one recorded
    in C(supabase_migrations.seed_files) (the Supabase CLI's table), so the seed SQL must be idempotent.
  - Concurrent runs against one database are serialised with an advisory lock.
version_added: 0.1.0
author: CleanMateX DevOps
options:
  connection:
    description:
      - How to reach PostgreSQL. Explicit fields override the same settings in O(connection.dsn);
        unset fields fall back to libpq defaults and C(PG*) environment variables.
    type: dict
    default: {}
    suboptions:
      dsn:
        description: libpq connection string or URI, e.g. C(postgresql://user:pass@127.0.0.1:5432/db).
        type: str
      host:
        description: Host name or address.
        type: str
      port:
        description: Port.
        type: int
      user:
        description: Role to connect as. It must be allowed to create the objects in the migrations.
        type: str
      password:
        description: Password of O(connection.user).
        type: str
      dbname:
        description: Database name.
        type: str
      sslmode:
        description: libpq C(sslmode).
        type: str
        choices: [disable, allow, prefer, require, verify-ca, verify-full]
      sslrootcert:
        description: CA file that verifies the server (the stack's CA when cmx_tls_enabled, with verify-full).
        type: path
      connect_timeout:
        description: Seconds to wait for the connection.
        type: int
        default: 10
  migrations_dir:
    description: Directory with the C(<version>_<name>.sql) files (the project's C(supabase/migrations)).
    type: path
    required: true
  seed_file:
    description:
      - Seed SQL file. Recorded in C(supabase_migrations.seed_files) under its path relative to the project
        root (the parent of the C(supabase) directory), the same key the Supabase CLI uses.
      - Defaults to C(seed.sql) next to O(migrations_dir).
    type: path
  seed:
    description: Load O(seed_file). Only for dev and ci; never set it for production.
    type: bool
    default: false
  fail_on_drift:
    description: Fail (true) or only warn (false) when an applied migration differs from its file.
    type: bool
    default: true
notes:
  - Supports check mode. It reads the history in a read-only transaction and reports what would run.
  - Statements are split at C(;) outside quoted text, comments, parentheses and C(BEGIN ATOMIC) bodies;
    the recorded C(statements) are those pieces, trimmed. The Supabase CLI only reads C(version) from the
    history, so C(supabase migration list) and C(supabase db push) see migrations applied by this module.
  - Files that cannot run in a transaction (C(CREATE INDEX CONCURRENTLY), C(VACUUM)) are not supported,
    as with the Supabase CLI.
requirements:
  - psycopg2 (psycopg2-binary) on the managed host
"""

EXAMPLES = r"""
- name: Apply database migrations (and the demo seed outside production)
  cleanmatex.infra.cmx_migrate:
    connection:
      host: 127.0.0.1
      port: "{{ cmx_postgres_port }}"
      user: "{{ cmx_postgres_user }}"
      password: "{{ cmx_postgres_password }}"
      dbname: "{{ cmx_postgres_db }}"
    migrations_dir: "{{ playbook_dir }}/../supabase/migrations"
    seed: "{{ cmx_environment in ['dev', 'ci'] }}"
  register: migrate_result

- name: List pending migrations without applying them
  cleanmatex.infra.cmx_migrate:
    connection:
      dsn: "postgresql://cmx_user:{{ cmx_postgres_password }}@127.0.0.1:5432/cmx_db"
    migrations_dir: supabase/migrations
  check_mode: true
"""

RETURN = r"""
applied:
  description: Migration files applied by this run, in order.
  returned: always
  type: list
  elements: str
  sample: [20250601000000_tenancy.sql]
pending:
  description:
    - Migration files not applied yet. In check mode, what a real run would apply; after a failure, the
      failed file and those after it; otherwise empty.
  returned: always
  type: list
  elements: str
already_applied:
  description: Number of local migration files already recorded in the history before this run.
  returned: always
  type: int
  sample: 3
drift:
  description: Applied migrations whose file changed or disappeared.
  returned: always
  type: list
  elements: dict
  contains:
    version:
      description: Migration version.
      type: str
    name:
      description: Migration name.
      type: str
    file:
      description: Local file name; null when the file is missing.
      type: str
    reason:
      description: What differs.
      type: str
seed_applied:
  description: Whether the seed file ran; in check mode, whether it would run.
  returned: always
  type: bool
failed_file:
  description: The migration or seed file that failed.
  returned: failure
  type: str
"""

import os

from ansible.module_utils.basic import AnsibleModule, missing_required_lib
from ansible_collections.cleanmatex.infra.plugins.module_utils import migrations

ARGUMENT_SPEC = {
    "connection": {
        "type": "dict",
        "default": {},
        "options": {
            "dsn": {"type": "str", "no_log": True},
            "host": {"type": "str"},
            "port": {"type": "int"},
            "user": {"type": "str"},
            "password": {"type": "str", "no_log": True},
            "dbname": {"type": "str"},
            "sslmode": {
                "type": "str",
                "choices": ["disable", "allow", "prefer", "require", "verify-ca", "verify-full"],
            },
            "sslrootcert": {"type": "path"},
            "connect_timeout": {"type": "int", "default": 10},
        },
    },
    "migrations_dir": {"type": "path", "required": True},
    "seed_file": {"type": "path"},
    "seed": {"type": "bool", "default": False},
    "fail_on_drift": {"type": "bool", "default": True},
}


def main():
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    if migrations.psycopg2 is None:
        module.fail_json(msg=missing_required_lib("psycopg2"))

    params = module.params
    migrations_dir = params["migrations_dir"]
    if not os.path.isdir(migrations_dir):
        module.fail_json(msg=f"migrations_dir does not exist: {migrations_dir}")
    seed_file = params["seed_file"] or os.path.join(os.path.dirname(migrations_dir.rstrip("/")), "seed.sql")

    try:
        connection = migrations.connect(params["connection"])
    except migrations.psycopg2.Error as exc:
        module.fail_json(msg=f"cannot connect to PostgreSQL: {str(exc).strip()}")
    try:
        result = migrations.migrate(
            connection,
            migrations_dir,
            seed_file=seed_file,
            seed=params["seed"],
            fail_on_drift=params["fail_on_drift"],
            check_mode=module.check_mode,
        )
    except migrations.MigrationError as exc:
        module.fail_json(msg=str(exc), failed_file=exc.file and os.path.basename(exc.file))
    except migrations.psycopg2.Error as exc:
        module.fail_json(msg=f"PostgreSQL error: {str(exc).strip()}")
    finally:
        connection.close()

    for warning in result.warnings:
        module.warn(warning)
    if result.failed:
        module.fail_json(msg=result.msg, failed_file=result.failed_file, **result.as_dict())
    module.exit_json(**result.as_dict())


if __name__ == "__main__":
    main()
