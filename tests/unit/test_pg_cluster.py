"""The shared throwaway PostgreSQL cluster (tests/pg_cluster.py) is what the other tests assume."""

from __future__ import annotations

import psycopg2
import pytest


def test_cluster_listens_on_loopback_only(fresh_db):
    rows = fresh_db.query(
        "SELECT current_setting('listen_addresses'), current_setting('server_version_num')::int"
    )
    listen_addresses, version = rows[0]
    assert listen_addresses == "127.0.0.1"
    assert 150000 <= version < 160000


def test_login_fixture_needs_its_password(pg):
    with psycopg2.connect(pg["url"]) as conn, conn.cursor() as cur:
        cur.execute("SELECT current_user, current_database()")
        assert cur.fetchone() == (pg["user"], pg["dbname"])
    with pytest.raises(psycopg2.OperationalError, match="password authentication failed"):
        psycopg2.connect(**{**{k: pg[k] for k in ("host", "port", "user", "dbname")}, "password": "wrong"})
