#!/usr/bin/python
"""Ansible module: the stack's PostgreSQL roles (migration, app, health, PgBouncer admin) and their grants."""

from __future__ import annotations

DOCUMENTATION = r"""
module: cmx_pg_roles
short_description: Create and correct the stack's PostgreSQL roles, their passwords and grants
description:
  - Logs in as the bootstrap superuser and, in one transaction, creates or corrects each role in O(roles)
    (NOSUPERUSER, NOCREATEDB, NOCREATEROLE, NOREPLICATION, NOBYPASSRLS; LOGIN except the C(pgbouncer_admin)
    kind, which only PgBouncer checks).
  - A role whose stored password is not the SCRAM verifier of its O(roles[].password) gets a new verifier,
    computed here (the plain password never reaches the server); for an existing password only with
    O(rotate), otherwise the module fails and changes nothing.
  - Objects the superuser owns in O(app_schemas) and in C(supabase_migrations) (a stack initialised before
    these roles existed) are handed to the C(migration) role, which owns the schema and applies the
    migrations. The C(app) role gets SELECT, INSERT, UPDATE, DELETE on the tables, USAGE and SELECT on the
    sequences and EXECUTE on the functions, also through ALTER DEFAULT PRIVILEGES for what the migration
    role creates later. The C(health) role only connects; its transactions are read only.
  - Reports C(changed) only when the catalog differs afterwards (roles, passwords, settings, owners, ACLs,
    default privileges).
version_added: 0.1.0
author: CleanMateX DevOps
options:
  host: {description: PostgreSQL host., type: str, default: 127.0.0.1}
  port: {description: PostgreSQL port., type: int, default: 5432}
  user: {description: The bootstrap superuser., type: str, required: true}
  password: {description: Its password., type: str, required: true, no_log: true}
  dbname: {description: The application database., type: str, required: true}
  roles:
    description: The roles to manage, at most one per kind.
    type: list
    elements: dict
    required: true
    suboptions:
      name:
        description: Role name (lowercase ASCII letters, digits and _, at most 63, not starting with a digit).
        type: str
        required: true
      password: {description: Its password., type: str, required: true, no_log: true}
      kind:
        description: What the role is for.
        type: str
        required: true
        choices: [migration, app, health, pgbouncer_admin]
  app_schemas: {description: Schemas the app uses., type: list, elements: str, default: [public]}
  read_roles:
    description: Existing group roles that get SELECT on the tables the migration role creates.
    type: list
    elements: str
    default: []
  rotate:
    description: Set an existing role's password to the inventory's when they differ (else fail).
    type: bool
    default: false
  ca_file:
    description:
      - The stack's CA certificate on the target when PostgreSQL serves TLS (cmx_tls_enabled).
      - Given, the connection uses sslmode=verify-full with it; left out, no TLS (sslmode=disable).
    type: path
  sslmode:
    description:
      - libpq sslmode for an external PostgreSQL (cmx_postgres_sslmode); O(ca_file) is its root certificate.
      - Left out, O(ca_file) decides (verify-full with it, no TLS without).
    type: str
    choices: [disable, allow, prefer, require, verify-ca, verify-full]
notes:
  - Supports check mode (everything is rolled back; C(changed) says what a real run would do).
requirements: [psycopg2]
"""

EXAMPLES = r"""
- name: Create the database roles
  cleanmatex.infra.cmx_pg_roles:
    port: 5432
    user: cmx_user
    password: "{{ cmx_postgres_password }}"
    dbname: cmx_db
    roles:
      - {name: cmx_migrator, password: "{{ cmx_postgres_migration_password }}", kind: migration}
      - {name: cmx_app, password: "{{ cmx_postgres_app_password }}", kind: app}
    read_roles: [cmx_readonly]
"""

RETURN = r"""
created: {description: Roles created., returned: success, type: list, elements: str}
passwords_set: {description: Roles whose password was set., returned: success, type: list, elements: str}
owners_moved:
  description: Objects handed from the superuser to the migration role.
  returned: success
  type: list
  elements: str
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.cleanmatex.infra.plugins.module_utils import pg_tls
from ansible_collections.cleanmatex.infra.plugins.module_utils.pg_roles import (
    KINDS,
    PasswordMismatch,
    Role,
    RoleError,
    apply_roles,
)


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "host": {"type": "str", "default": "127.0.0.1"},
            "port": {"type": "int", "default": 5432},
            "user": {"type": "str", "required": True},
            "password": {"type": "str", "required": True, "no_log": True},
            "dbname": {"type": "str", "required": True},
            "roles": {
                "type": "list",
                "elements": "dict",
                "required": True,
                "options": {
                    "name": {"type": "str", "required": True},
                    "password": {"type": "str", "required": True, "no_log": True},
                    "kind": {"type": "str", "required": True, "choices": list(KINDS)},
                },
            },
            "app_schemas": {"type": "list", "elements": "str", "default": ["public"]},
            "read_roles": {"type": "list", "elements": "str", "default": []},
            "rotate": {"type": "bool", "default": False},
            "ca_file": {"type": "path"},
            "sslmode": {
                "type": "str",
                "choices": ["disable", "allow", "prefer", "require", "verify-ca", "verify-full"],
            },
        },
        supports_check_mode=True,
    )
    p = module.params
    roles = [Role(item["name"], item["password"], item["kind"]) for item in p["roles"]]
    try:
        import psycopg2
    except ImportError:
        module.fail_json(
            msg="psycopg2 is missing on the target: run ./bootstrap.sh and use .venv/bin/ansible-playbook"
        )
    where = f"PostgreSQL at {p['host']}:{p['port']} as {p['user']}"
    try:
        connection = psycopg2.connect(
            host=p["host"],
            port=p["port"],
            user=p["user"],
            password=p["password"],
            dbname=p["dbname"],
            connect_timeout=10,
            **pg_tls.client_params(p["ca_file"], p["sslmode"]),
        )
    except psycopg2.Error as error:
        module.fail_json(msg=f"{where}: {str(error).strip()}")
    try:
        result = apply_roles(
            connection,
            roles,
            app_schemas=p["app_schemas"],
            read_roles=p["read_roles"],
            rotate=p["rotate"],
            check_mode=module.check_mode,
        )
    except (RoleError, PasswordMismatch) as error:
        module.fail_json(msg=f"database roles: {error}")
    except psycopg2.Error as error:
        module.fail_json(msg=f"{where}: database roles: {str(error).strip()}")
    finally:
        connection.close()
    module.exit_json(
        changed=result.changed,
        created=result.created,
        passwords_set=result.passwords_set,
        owners_moved=result.owners_moved,
    )


if __name__ == "__main__":
    main()
