"""PgBouncer user list and the password re-sync: quoting, SCRAM-only, and the ALTER ROLE path."""

from __future__ import annotations

import pytest
from ansible_collections.cleanmatex.infra.plugins.module_utils import pgbouncer_auth
from ansible_collections.cleanmatex.infra.plugins.module_utils.pgbouncer_auth import (
    Login,
    alter_password_sql,
    is_auth_failure,
    reload_and_wait,
    sync_password,
    unsupported_secrets,
    userlist_text,
)

SECRET = "SCRAM-SHA-256$4096:c2FsdA==$c3RvcmVk:c2VydmVy"


class FakeAuthError(Exception):
    pgcode = "28P01"


def test_userlist_lines_quote_and_double_inner_quotes():
    assert userlist_text([("cmx_user", SECRET), ('we"ird', SECRET)]) == (
        f'"cmx_user" "{SECRET}"\n"we""ird" "{SECRET}"\n'
    )


def test_alter_password_sql_escapes_literal_and_identifier():
    assert alter_password_sql('ro"le', "it's") == "ALTER ROLE \"ro\"\"le\" PASSWORD 'it''s';\n"


def test_only_scram_secrets_are_usable():
    assert unsupported_secrets([("a", SECRET), ("b", "md5abc")]) == ["b"]


def test_auth_failure_is_recognised_by_sqlstate_or_text():
    assert is_auth_failure(FakeAuthError("x"))
    assert is_auth_failure(Exception('FATAL:  password authentication failed for user "cmx_user"'))
    assert not is_auth_failure(Exception("could not connect to server: Connection refused"))


def test_sync_password_alters_role_through_the_container_then_reads_again(monkeypatch):
    calls = {"reads": 0}

    def fake_read(login, roles):
        calls["reads"] += 1
        if calls["reads"] == 1:
            raise FakeAuthError("password authentication failed")
        return [("cmx_user", SECRET)]

    ran = []
    monkeypatch.setattr(pgbouncer_auth, "read_secrets", fake_read)
    login = Login("127.0.0.1", 5432, "cmx_user", "n3w'pass", "cmx_db")
    secrets, updated = sync_password(
        login, ["cmx_user"], "cmx-postgres", lambda argv, stdin: ran.append((argv, stdin)) or (0, "", "")
    )
    assert updated and secrets == [("cmx_user", SECRET)]
    argv, stdin = ran[0]
    assert argv[:4] == ["docker", "exec", "-i", "cmx-postgres"]
    assert "n3w'pass" not in " ".join(argv)  # the password travels on stdin only
    assert stdin == "ALTER ROLE \"cmx_user\" PASSWORD 'n3w''pass';\n"


def test_sync_password_does_not_alter_on_other_errors(monkeypatch):
    def refused(login, roles):
        raise OSError("Connection refused")

    monkeypatch.setattr(pgbouncer_auth, "read_secrets", refused)
    with pytest.raises(OSError):
        sync_password(
            Login("127.0.0.1", 1, "u", "p", "d"), ["u"], "c", lambda a, s: pytest.fail("must not run")
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
