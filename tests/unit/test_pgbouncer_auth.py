"""PgBouncer user list and the password re-sync: quoting, SCRAM-only, and the ALTER ROLE path, against the
throwaway PostgreSQL cluster: a refusal is told by its SQLSTATE, a mismatch changes nothing unless rotation
is asked for, and a rotation sends a SCRAM verifier that never shows the password in the server log."""

from __future__ import annotations

import itertools
import socket
import struct
import subprocess
import threading

import psycopg2
import pytest
from ansible_collections.cleanmatex.infra.plugins.module_utils import pgbouncer_auth
from ansible_collections.cleanmatex.infra.plugins.module_utils.pg_scram import parse_verifier, scram_verifier
from ansible_collections.cleanmatex.infra.plugins.module_utils.pgbouncer_auth import (
    Login,
    PasswordMismatch,
    alter_password_sql,
    refusal,
    reload_and_wait,
    sync_password,
    unsupported_secrets,
    userlist_text,
)
from ansible_collections.cleanmatex.infra.tests.pg_cluster import (
    POSTGRES_BINDIR,
    SUPERUSER,
    SUPERUSER_PASSWORD,
)

SECRET = "SCRAM-SHA-256$4096:c2FsdA==$c3RvcmVk:c2VydmVy"
NEW_PASSWORD = "n3w'pä$s \"#:wörd"
_names = itertools.count(1)


class FakeAuthError(Exception):
    pass


def test_userlist_lines_quote_and_double_inner_quotes():
    assert userlist_text([("cmx_user", SECRET), ('we"ird', SECRET)]) == (
        f'"cmx_user" "{SECRET}"\n"we""ird" "{SECRET}"\n'
    )


def test_alter_password_sql_sends_a_verifier_never_the_password():
    salt = b"0123456789abcdef"
    sql = alter_password_sql('ro"le', "it's", salt)
    verifier = scram_verifier("it's", salt)
    assert sql == f'ALTER ROLE "ro""le" PASSWORD \'{verifier}\';\n'
    assert "it's" not in sql and "it''s" not in sql


def test_only_scram_secrets_are_usable():
    assert unsupported_secrets([("a", SECRET), ("b", "md5abc")]) == ["b"]


# --- against the throwaway cluster ---------------------------------------------------------------------


def _admin(cluster):
    connection = psycopg2.connect(
        host="127.0.0.1", port=cluster.port, user=SUPERUSER, password=SUPERUSER_PASSWORD, dbname="postgres"
    )
    connection.autocommit = True
    return connection


def new_superuser(cluster, password: str, *options: str) -> str:
    """A superuser (it reads pg_authid, like the stack's owner role) with its own database."""
    role = f"pgb_auth_{next(_names)}"
    connection = _admin(cluster)
    with connection.cursor() as cursor:
        cursor.execute(f"CREATE ROLE {role} SUPERUSER LOGIN PASSWORD %s", (password,))
        cursor.execute(f"CREATE DATABASE {role} OWNER {role}")
        for option in options:
            cursor.execute(f"ALTER ROLE {role} {option}")
    connection.close()
    return role


def local_psql(cluster, calls):
    """A runner for sync_password: `docker exec -i <container> psql ...` becomes the local psql over the
    cluster's Unix socket (trusted, like the container's)."""

    def run(argv, stdin):
        calls.append((argv, stdin))
        assert argv[:4] == ["docker", "exec", "-i", "cmx-postgres"] and argv[4] == "psql"
        done = subprocess.run(
            [POSTGRES_BINDIR / "psql", "-h", cluster.root / "sockets", "-p", str(cluster.port), *argv[5:]],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
        )
        return done.returncode, done.stdout, done.stderr

    return run


def logs_in(cluster, role, password) -> bool:
    try:
        psycopg2.connect(
            host="127.0.0.1", port=cluster.port, user=role, password=password, dbname=role, sslmode="disable"
        ).close()
    except psycopg2.OperationalError:
        return False
    return True


def test_refusal_reads_the_sqlstate_from_the_real_server(throwaway_pg_cluster):
    port = throwaway_pg_cluster.port
    role = new_superuser(throwaway_pg_cluster, "right-password")
    locked = new_superuser(throwaway_pg_cluster, "right-password", "NOLOGIN")
    assert refusal(Login("127.0.0.1", port, role, "wrong", role)) == "28P01"
    assert refusal(Login("127.0.0.1", port, role, "right-password", role)) is None
    assert refusal(Login("127.0.0.1", port, locked, "right-password", locked)) == "28000"
    assert refusal(Login("127.0.0.1", port, role, "right-password", "no_such_db")) is None  # 3D000
    assert refusal(Login("127.0.0.1", 1, role, "x", role, connect_timeout=2)) is None  # unreachable


def fake_server(error: bytes):
    """A server that answers every startup packet with this ErrorResponse body; returns its port."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()

    def serve():
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            with client:
                (length,) = struct.unpack("!I", client.recv(4))
                client.recv(length - 4)
                client.sendall(b"E" + struct.pack("!I", len(error) + 4) + error)

    threading.Thread(target=serve, daemon=True).start()
    return listener


def test_refusal_does_not_depend_on_the_servers_language():
    german = "Passwort-Authentifizierung für Benutzer »cmx_user« fehlgeschlagen".encode()
    listener = fake_server(b"SFATAL\0VFATAL\0C28P01\0M" + german + b"\0\0")
    port = listener.getsockname()[1]
    try:
        with pytest.raises(psycopg2.OperationalError) as error:
            psycopg2.connect(host="127.0.0.1", port=port, user="cmx_user", password="x", dbname="d")
        # What the old check relied on: no pgcode from libpq, and no English text to fall back to.
        assert error.value.pgcode is None and "password authentication failed" not in str(error.value)
        assert refusal(Login("127.0.0.1", port, "cmx_user", "x", "d")) == "28P01"
    finally:
        listener.close()


def test_a_mismatch_without_rotate_stops_and_changes_nothing(throwaway_pg_cluster):
    role = new_superuser(throwaway_pg_cluster, "current-password")
    calls = []
    login = Login("127.0.0.1", throwaway_pg_cluster.port, role, "stale-vault-password", role)
    with pytest.raises(PasswordMismatch) as error:
        sync_password(login, [role], "cmx-postgres", local_psql(throwaway_pg_cluster, calls))
    assert "28P01" in str(error.value) and "cmx_postgres_password_rotate=true" in str(error.value)
    assert "stale-vault-password" not in str(error.value)
    assert calls == []
    assert logs_in(throwaway_pg_cluster, role, "current-password")


def test_check_mode_reports_a_rotation_without_running_it(throwaway_pg_cluster):
    role = new_superuser(throwaway_pg_cluster, "current-password")
    calls = []
    login = Login("127.0.0.1", throwaway_pg_cluster.port, role, NEW_PASSWORD, role)
    secrets, updated = sync_password(
        login, [role], "cmx-postgres", local_psql(throwaway_pg_cluster, calls), rotate=True, check_mode=True
    )
    assert (secrets, updated, calls) == (None, True, [])
    assert logs_in(throwaway_pg_cluster, role, "current-password")


def test_rotation_sends_a_scram_verifier_and_the_password_never_reaches_the_log(throwaway_pg_cluster):
    role = new_superuser(throwaway_pg_cluster, "current-password", "SET log_statement = 'all'")
    calls = []
    login = Login("127.0.0.1", throwaway_pg_cluster.port, role, NEW_PASSWORD, role)
    log_start = throwaway_pg_cluster.log_file.stat().st_size
    secrets, updated = sync_password(
        login, [role], "cmx-postgres", local_psql(throwaway_pg_cluster, calls), rotate=True
    )
    assert updated and [name for name, _ in secrets] == [role]
    (argv, stdin), *_ = calls
    assert NEW_PASSWORD not in " ".join(argv) and NEW_PASSWORD not in stdin
    assert stdin.startswith(f'ALTER ROLE "{role}" PASSWORD \'SCRAM-SHA-256$4096:')
    parse_verifier(secrets[0][1])
    assert logs_in(throwaway_pg_cluster, role, NEW_PASSWORD)
    assert not logs_in(throwaway_pg_cluster, role, "current-password")
    with throwaway_pg_cluster.log_file.open("rb") as log:
        log.seek(log_start)
        written = log.read().decode("utf-8", "replace")
    assert "statement: ALTER ROLE" in written and "SCRAM-SHA-256$4096:" in written  # log_statement is on
    for form in (NEW_PASSWORD, NEW_PASSWORD.replace("'", "''"), "pä$s", "wörd"):
        assert form not in written


def test_a_refusal_other_than_the_password_is_not_rotated(throwaway_pg_cluster):
    role = new_superuser(throwaway_pg_cluster, "current-password", "NOLOGIN")
    calls = []
    login = Login("127.0.0.1", throwaway_pg_cluster.port, role, "current-password", role)
    with pytest.raises(RuntimeError, match="SQLSTATE 28000"):
        sync_password(login, [role], "cmx-postgres", local_psql(throwaway_pg_cluster, calls), rotate=True)
    assert calls == []


def test_sync_password_does_not_alter_on_other_errors(monkeypatch):
    def refused(login, roles):
        raise OSError("Connection refused")

    monkeypatch.setattr(pgbouncer_auth, "read_secrets", refused)
    with pytest.raises(OSError):
        sync_password(
            Login("127.0.0.1", 1, "u", "p", "d", connect_timeout=2),
            ["u"],
            "c",
            lambda a, s: pytest.fail("must not run"),
            rotate=True,
        )


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds


def test_reload_signals_the_container_then_waits_for_the_login(monkeypatch):
    attempts = []

    def fake_connect(login):
        attempts.append(login)
        if len(attempts) < 3:
            raise FakeAuthError('password authentication failed for user "cmx_user"')
        return type("Conn", (), {"close": lambda self: None})()

    ran = []
    clock = FakeClock()
    monkeypatch.setattr(pgbouncer_auth, "connect", fake_connect)
    login = Login("127.0.0.1", 6432, "cmx_user", "pw", "cmx_db")
    reload_and_wait(
        login, "cmx-pgbouncer", lambda a, s: ran.append(a) or (0, "", ""), clock=clock, sleep=clock.sleep
    )
    assert ran == [["docker", "kill", "--signal", "HUP", "cmx-pgbouncer"]]
    assert len(attempts) == 3 and all(a.port == 6432 for a in attempts)


def test_reload_reports_the_last_refusal_after_the_timeout(monkeypatch):
    def refused(login):
        raise FakeAuthError('password authentication failed for user "cmx_user"')

    clock = FakeClock()
    monkeypatch.setattr(pgbouncer_auth, "connect", refused)
    with pytest.raises(RuntimeError) as error:
        reload_and_wait(
            Login("127.0.0.1", 6432, "cmx_user", "pw", "cmx_db"),
            "cmx-pgbouncer",
            lambda a, s: (0, "", ""),
            timeout=2,
            clock=clock,
            sleep=clock.sleep,
        )
    text = str(error.value)
    assert "cmx-pgbouncer" in text and "6432" in text and "still refuses cmx_user 2 s" in text
    assert "password authentication failed" in text and "pw" not in text.replace("password", "")
    assert 2 <= clock.now < 2.2


def test_reload_stops_when_the_container_cannot_be_signalled(monkeypatch):
    monkeypatch.setattr(pgbouncer_auth, "connect", lambda login: pytest.fail("must not connect"))
    with pytest.raises(RuntimeError, match=r"could not signal cmx-pgbouncer.*No such container"):
        reload_and_wait(
            Login("127.0.0.1", 6432, "u", "p", "d"),
            "cmx-pgbouncer",
            lambda a, s: (1, "", "Error: No such container: cmx-pgbouncer\n"),
        )
