"""PostgreSQL probe against a real PostgreSQL 15 and PgBouncer started on 127.0.0.1."""

from __future__ import annotations

import sys
import time

import pytest
from ansible_collections.cleanmatex.infra.plugins.module_utils import probes
from test_probes_support import SilentServer, free_port, pgbouncer_server


@pytest.fixture(scope="module")
def pgb(pg):
    with pgbouncer_server(pg) as info:
        yield info


def test_postgres_up_with_url(pg):
    res = probes.probe_postgres(dsn=pg["url"], timeout=5)
    assert res.status == "up", res
    assert res.name == "database"
    assert res.error is None
    assert res.latency_ms > 0


def test_postgres_up_with_fields(pg):
    res = probes.probe_postgres(
        host=pg["host"],
        port=pg["port"],
        user=pg["user"],
        password=pg["password"],
        dbname=pg["dbname"],
        timeout=5,
        name="pg",
    )
    assert res.up, res
    assert res.name == "pg"


def test_postgres_password_option_overrides_url_without_password(pg):
    url = f"postgresql://{pg['user']}@{pg['host']}:{pg['port']}/{pg['dbname']}"
    assert probes.probe_postgres(dsn=url, password=pg["password"], timeout=5).up


def test_postgres_key_value_dsn(pg):
    dsn = (
        f"host={pg['host']} port={pg['port']} user={pg['user']} password={pg['password']} "
        f"dbname={pg['dbname']}"
    )
    assert probes.probe_postgres(dsn=dsn, timeout=5).up


def test_postgres_wrong_password_is_down_without_leaking_it(pg):
    url = f"postgresql://{pg['user']}:wrong-secret-123@{pg['host']}:{pg['port']}/{pg['dbname']}"
    res = probes.probe_postgres(dsn=url, timeout=5)
    assert res.status == "down"
    assert "password authentication failed" in res.error
    assert "wrong-secret-123" not in res.error


def test_postgres_unknown_database_is_down(pg):
    res = probes.probe_postgres(
        host=pg["host"],
        port=pg["port"],
        user=pg["user"],
        password=pg["password"],
        dbname="nope_db",
        timeout=5,
    )
    assert res.status == "down"
    assert "nope_db" in res.error


def test_pgbouncer_up(pgb):
    res = probes.probe_postgres(dsn=pgb["url"], timeout=5, name="pgbouncer")
    assert res.status == "up", res


def test_pgbouncer_repeated_probes_transaction_pooling(pgb):
    # transaction pooling: every probe gets whatever server connection is free
    results = [probes.probe_postgres(dsn=pgb["url"], timeout=5) for _ in range(10)]
    assert all(r.up for r in results), results


def test_postgres_refused_is_down_fast():
    start = time.monotonic()
    res = probes.probe_postgres(dsn=f"postgresql://u:topsecret@127.0.0.1:{free_port()}/db", timeout=3)
    assert res.status == "down"
    assert "refused" in res.error.lower() or "failed" in res.error.lower()
    assert "topsecret" not in res.error
    assert time.monotonic() - start < 2


def test_postgres_hung_server_respects_subsecond_timeout():
    # libpq's connect_timeout cannot go below 2 s; the async poll loop enforces the probe's own timeout.
    with SilentServer() as srv:
        start = time.monotonic()
        res = probes.probe_postgres(
            host="127.0.0.1", port=srv.port, user="u", password="p", dbname="d", timeout=0.4
        )
        took = time.monotonic() - start
        assert srv.accepted.is_set()
    assert res.status == "down"
    assert res.error == "timed out after 400 ms"
    assert 0.35 <= took < 1.5


def test_postgres_bad_dsn_never_raises():
    res = probes.probe_postgres(dsn="this is not a dsn = =", timeout=1)
    assert res.status == "down"
    assert res.error


def test_psycopg3_fallback_when_psycopg2_is_missing(pg, pgb, monkeypatch):
    pytest.importorskip("psycopg")
    monkeypatch.setitem(sys.modules, "psycopg2", None)  # `import psycopg2` now raises ImportError
    monkeypatch.setitem(sys.modules, "psycopg2.extensions", None)
    assert probes.probe_postgres(dsn=pg["url"], timeout=5).up
    assert probes.probe_postgres(dsn=pgb["url"], timeout=5).up
    bad = probes.probe_postgres(dsn=pg["url"].replace(pg["password"], "nope-pw-42"), timeout=5)
    assert bad.status == "down" and "password authentication failed" in bad.error
    assert "nope-pw-42" not in bad.error
