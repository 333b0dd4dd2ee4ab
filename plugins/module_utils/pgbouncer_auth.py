"""PgBouncer's user list from PostgreSQL's SCRAM secrets, and a changed password applied on converge.

PostgreSQL reads POSTGRES_PASSWORD only on the first start with an empty data directory. When the
inventory's password no longer logs in (the server says so with SQLSTATE 28P01, read from the protocol:
pg_scram.login_sqlstate), it is a stale vault as often as a rotation: the password is set only when
`rotate` is asked for (dev and ci always), with ALTER ROLE through the container's local socket (trusted)
and a SCRAM verifier computed here, never the plain password (it would land in the server log with
log_statement, and in pg_stat_statements). PgBouncer's auth_file gets the exact `SCRAM-SHA-256$...`
strings from pg_authid. A running PgBouncer re-reads that file on SIGHUP (the folder holding it is
bind-mounted, so the rewritten file is visible); the login through PgBouncer is awaited before anything
else connects. plugins/modules/cmx_pgbouncer_userlist.py wraps this.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from ansible_collections.cleanmatex.infra.plugins.module_utils import pg_tls
from ansible_collections.cleanmatex.infra.plugins.module_utils.pg_scram import (
    ProtocolError,
    login_sqlstate,
    scram_verifier,
)

INVALID_PASSWORD = "28P01"
# 28P01 invalid_password (also for an unknown role), 28000 invalid_authorization_specification
# (pg_hba.conf rejects, NOLOGIN role): a new password only helps with the first.
REFUSED_LOGIN = (INVALID_PASSWORD, "28000")
# run(argv, stdin) -> (rc, stdout, stderr)
Run = Callable[[list[str], str], tuple[int, str, str]]


@dataclass
class Login:
    host: str
    port: int
    user: str
    password: str
    dbname: str
    connect_timeout: int = 10
    # The stack's CA file when it serves TLS (cmx_tls_enabled): verify-full against it; None: no TLS.
    ca_file: str | None = None


class PasswordMismatch(RuntimeError):
    """The server refuses the inventory's password and rotation was not asked for."""


def refusal(login: Login) -> str | None:
    """SQLSTATE with which the server refuses `login` (28P01 or 28000), or None (it lets it in, is
    unreachable, or wants an authentication method the probe does not speak)."""
    try:
        code = login_sqlstate(
            login.host,
            login.port,
            login.user,
            login.password,
            login.dbname,
            login.connect_timeout,
            ca_file=login.ca_file,
        )
    except (OSError, ProtocolError, ValueError):
        return None
    return code if code in REFUSED_LOGIN else None


def connect(login: Login):
    import psycopg2  # imported here: the module reports a clear error when it is missing

    return psycopg2.connect(
        host=login.host,
        port=login.port,
        user=login.user,
        password=login.password,
        dbname=login.dbname,
        connect_timeout=login.connect_timeout,
        **pg_tls.client_params(login.ca_file),
    )


def read_secrets(login: Login, roles: list[str]) -> list[tuple[str, str]]:
    """(role, SCRAM secret) for each role that has a password, in the order asked."""
    conn = connect(login)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT rolname, rolpassword FROM pg_authid WHERE rolname = ANY(%s)", (roles,))
            found = dict(cur.fetchall())
    finally:
        conn.close()
    return [(role, found[role]) for role in roles if found.get(role)]


def quote_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def quote_ident(value: str) -> str:
    return '"' + value.replace('"', '""') + '"'


def alter_password_sql(role: str, password: str, salt: bytes | None = None) -> str:
    """ALTER ROLE with the SCRAM verifier of `password` (PostgreSQL stores a verifier as is)."""
    return f"ALTER ROLE {quote_ident(role)} PASSWORD {quote_literal(scram_verifier(password, salt))};\n"


def userlist_text(secrets: list[tuple[str, str]]) -> str:
    """PgBouncer auth_file lines: "role" "secret" (double quotes doubled inside)."""
    return "".join(
        f'"{role.replace(chr(34), chr(34) * 2)}" "{secret.replace(chr(34), chr(34) * 2)}"\n'
        for role, secret in secrets
    )


def unsupported_secrets(secrets: list[tuple[str, str]]) -> list[str]:
    """Roles whose stored password is not a SCRAM secret (PgBouncer's scram-sha-256 cannot use them)."""
    return [role for role, secret in secrets if not secret.startswith("SCRAM-SHA-256$")]


def sync_password(
    login: Login, roles: list[str], container: str, run: Run, rotate: bool = False, check_mode: bool = False
) -> tuple[list[tuple[str, str]] | None, bool]:
    """Read the secrets; when the server refuses the password (28P01) and `rotate`, set it inside
    `container` and read again. Returns (secrets, updated); secrets is None when check mode stopped
    before a rotation.

    `run(argv, stdin)` executes a command and returns (rc, stdout, stderr). Raises PasswordMismatch
    when the password is refused and `rotate` is false, RuntimeError for another refusal (28000).
    """
    try:
        return read_secrets(login, roles), False
    except Exception as error:
        code = refusal(login)
        if code is None:
            raise
        if code != INVALID_PASSWORD:
            raise RuntimeError(
                f"PostgreSQL refuses the login of {login.user} (SQLSTATE {code}; a new password would not "
                f"help): {str(error).strip()}"
            ) from error
        if not rotate:
            raise PasswordMismatch(
                f"PostgreSQL refuses the inventory's password for {login.user} (SQLSTATE {code}): the "
                "database has another one. If the vault is stale, put the current password in it; to set "
                "the database's password to the inventory's, re-run with "
                "-e cmx_postgres_password_rotate=true (module option rotate)"
            ) from error
    if check_mode:
        return None, True
    argv = [
        "docker",
        "exec",
        "-i",
        container,
        "psql",
        "-v",
        "ON_ERROR_STOP=1",
        "-q",
        "-U",
        login.user,
        "-d",
        login.dbname,
    ]
    rc, _, stderr = run(argv, alter_password_sql(login.user, login.password))
    if rc != 0:
        raise RuntimeError(f"ALTER ROLE {login.user} in container {container} failed: {stderr.strip()}")
    return read_secrets(login, roles), True


def reload_and_wait(
    login: Login,
    container: str,
    run: Run,
    timeout: float = 30.0,
    interval: float = 0.05,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """SIGHUP `container` (PgBouncer re-reads its auth_file), then wait until `login` gets in through it.

    `login` points at PgBouncer. Until the reload is done the role is refused; any error is retried
    until `timeout`, then reported with the last one.
    """
    rc, _, stderr = run(["docker", "kill", "--signal", "HUP", container], "")
    if rc != 0:
        raise RuntimeError(f"could not signal {container} to re-read its user list: {stderr.strip()}")
    deadline = clock() + timeout
    while True:
        try:
            connect(login).close()
            return
        except Exception as error:
            if clock() >= deadline:
                raise RuntimeError(
                    f"PgBouncer ({container}, port {login.port}) still refuses {login.user} "
                    f"{timeout:g} s after re-reading its user list: {str(error).strip()}"
                ) from error
        sleep(interval)
