#!/usr/bin/python
"""Ansible module: PgBouncer's auth_file from PostgreSQL's SCRAM secrets."""

from __future__ import annotations

DOCUMENTATION = r"""
module: cmx_pgbouncer_userlist
short_description: Write PgBouncer's user list with the SCRAM secrets read from PostgreSQL
description:
  - Logs in to PostgreSQL with the inventory's password and reads the roles' secrets from C(pg_authid).
  - When the server refuses that password (SQLSTATE 28P01, read from the protocol, whatever the server's
    language), the inventory and the database disagree, after a rotation in the inventory (the image only
    reads the password on first init) or with a stale vault. With O(rotate) the module sets the inventory's
    password with C(ALTER ROLE) through C(docker exec) and the container's local socket, sending a
    SCRAM-SHA-256 verifier computed here (never the plain password, which C(log_statement) would write to
    the server log), then reads again. Without O(rotate) it fails and changes nothing.
  - Writes the user list atomically, only when its content differs, so a re-run reports C(changed=false).
  - With O(reload_container), a changed list is loaded by the running PgBouncer without a restart
    (C(docker kill --signal HUP)), and the module returns once the user logs in through PgBouncer on
    O(pgbouncer_port). Mount the folder holding the list, not the file, so the container sees the new file.
version_added: 0.1.0
author: CleanMateX DevOps
options:
  host: {description: PostgreSQL host., type: str, default: 127.0.0.1}
  port: {description: PostgreSQL port., type: int, default: 5432}
  user: {description: Superuser that owns the database (it can read pg_authid)., type: str, required: true}
  password: {description: Its password from the inventory., type: str, required: true, no_log: true}
  dbname: {description: Database to log in to., type: str, required: true}
  roles: {description: Roles to list (default the user)., type: list, elements: str}
  container: {description: PostgreSQL container for ALTER ROLE., type: str, default: cmx-postgres}
  rotate:
    description:
      - Set the role's password to O(password) when the server refuses it. Off by default, so that a stale
        vault fails the run instead of resetting a production password (the role turns it on in dev and ci).
    type: bool
    default: false
  path: {description: The user list file., type: path, required: true}
  mode: {description: Mode of the file., type: str, default: "0644"}
  reload_container:
    description: PgBouncer container to signal when the list changed (default none, no reload).
    type: str
  pgbouncer_port: {description: PgBouncer's port on O(host) for that login., type: int, default: 6432}
  reload_timeout: {description: Seconds to wait for that login., type: int, default: 30}
  ca_file:
    description:
      - The stack's CA certificate on the target when PostgreSQL and PgBouncer serve TLS (cmx_tls_enabled).
      - Given, every connection uses sslmode=verify-full with it; left out, no TLS (sslmode=disable).
    type: path
notes:
  - Supports check mode (reads, reports what would change, never alters or writes).
requirements: [psycopg2]
"""

EXAMPLES = r"""
- name: Fill PgBouncer's user list
  cleanmatex.infra.cmx_pgbouncer_userlist:
    port: 5432
    user: cmx_user
    password: "{{ cmx_postgres_password }}"
    dbname: cmx_db
    rotate: "{{ cmx_postgres_password_rotate }}"
    path: /opt/cmx/secrets/pgbouncer/userlist.txt
    reload_container: cmx-pgbouncer
    pgbouncer_port: 6432
"""

RETURN = r"""
roles: {description: Roles written to the list., returned: success, type: list, elements: str}
password_updated:
  description: The role's password was set with ALTER ROLE (in check mode, would be).
  returned: success
  type: bool
reloaded: {description: PgBouncer re-read a changed list and let the user in., returned: success, type: bool}
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.cleanmatex.infra.plugins.module_utils.files import SyncResult, write_file
from ansible_collections.cleanmatex.infra.plugins.module_utils.pgbouncer_auth import (
    Login,
    reload_and_wait,
    sync_password,
    unsupported_secrets,
    userlist_text,
)


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "host": {"type": "str", "default": "127.0.0.1"},
            "port": {"type": "int", "default": 5432},
            "user": {"type": "str", "required": True},
            "password": {"type": "str", "required": True, "no_log": True},
            "dbname": {"type": "str", "required": True},
            "roles": {"type": "list", "elements": "str"},
            "container": {"type": "str", "default": "cmx-postgres"},
            "rotate": {"type": "bool", "default": False},
            "path": {"type": "path", "required": True},
            "mode": {"type": "str", "default": "0644"},
            "reload_container": {"type": "str"},
            "pgbouncer_port": {"type": "int", "default": 6432},
            "reload_timeout": {"type": "int", "default": 30},
            "ca_file": {"type": "path"},
        },
        supports_check_mode=True,
    )
    p = module.params
    login = Login(p["host"], p["port"], p["user"], p["password"], p["dbname"], ca_file=p["ca_file"])
    roles = p["roles"] or [p["user"]]

    def run(argv: list[str], stdin: str) -> tuple[int, str, str]:
        return module.run_command(argv, data=stdin, binary_data=False)

    try:
        secrets, updated = sync_password(
            login, roles, p["container"], run, rotate=p["rotate"], check_mode=module.check_mode
        )
    except ImportError:
        module.fail_json(
            msg="psycopg2 is missing on the target: run ./bootstrap.sh and use .venv/bin/ansible-playbook"
        )
    except Exception as error:  # connection, auth or ALTER ROLE failures: name where, never the password
        module.fail_json(msg=f"PostgreSQL at {p['host']}:{p['port']} as {p['user']}: {str(error).strip()}")
    if secrets is None:  # check mode, before a rotation
        module.exit_json(changed=True, roles=roles, password_updated=True, reloaded=False)
    bad = unsupported_secrets(secrets)
    if bad:
        module.fail_json(
            msg=f"roles {', '.join(bad)} have no SCRAM secret: set password_encryption=scram-sha-256 "
            "and set their passwords again"
        )
    result = SyncResult()
    write_file(p["path"], userlist_text(secrets), p["mode"], module.check_mode, result)
    reload = bool(p["reload_container"]) and result.any_changed and not module.check_mode
    if reload:
        through_pgbouncer = Login(
            p["host"], p["pgbouncer_port"], p["user"], p["password"], p["dbname"], ca_file=p["ca_file"]
        )
        try:
            reload_and_wait(through_pgbouncer, p["reload_container"], run, timeout=p["reload_timeout"])
        except RuntimeError as error:
            module.fail_json(msg=str(error))
    module.exit_json(
        changed=result.any_changed or updated,
        roles=[r for r, _ in secrets],
        password_updated=updated,
        reloaded=reload,
    )


if __name__ == "__main__":
    main()
