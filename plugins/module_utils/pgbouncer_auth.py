"""PgBouncer's user list from PostgreSQL's SCRAM secrets, and a changed password applied on converge.

PostgreSQL reads POSTGRES_PASSWORD only on the first start with an empty data directory. When the
inventory's password no longer logs in, it is set with ALTER ROLE through the container's local socket
(trusted), and PgBouncer's auth_file gets the new secret: the exact `SCRAM-SHA-256$...` string from
pg_authid, never the plaintext. A running PgBouncer re-reads that file on SIGHUP (the folder holding it is
bind-mounted, so the rewritten file is visible); the login through PgBouncer is awaited before anything
else connects. plugins/modules/cmx_pgbouncer_userlist.py wraps this.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

AUTH_FAILED_SQLSTATE = "28P01"
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


def is_auth_failure(error: Exception) -> bool:
    code = getattr(error, "pgcode", None)
    text = str(error)
    return code == AUTH_FAILED_SQLSTATE or "password authentication failed" in text


def connect(login: Login):
    import psycopg2  # imported here: the module reports a clear error when it is missing

    return psycopg2.connect(
        host=login.host,
        port=login.port,
        user=login.user,
        password=login.password,
        dbname=login.dbname,
        connect_timeout=login.connect_timeout,
        sslmode="disable",
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


def alter_password_sql(role: str, password: str) -> str:
    return f"ALTER ROLE {quote_ident(role)} PASSWORD {quote_literal(password)};\n"


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
    login: Login, roles: list[str], container: str, run: Run
) -> tuple[list[tuple[str, str]], bool]:
    """Read the secrets; when the password is refused, set it inside `container` and read again.

    `run(argv, stdin)` executes a command and returns (rc, stdout, stderr). Returns (secrets, updated).
    """
    try:
        return read_secrets(login, roles), False
    except Exception as error:
        if not is_auth_failure(error):
            raise
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
