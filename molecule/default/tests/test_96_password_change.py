"""A password changed in the inventory reaches the running database (ALTER ROLE) and PgBouncer (its user
list re-read on SIGHUP, no restart), and the old password stops working everywhere."""

from __future__ import annotations

import uuid

import psycopg2
from conftest import PROJECT_DIR, all_healthy, container, converge, inspect, pg_connect, wait_until


def logs_in(inv: dict, port_key: str, password: str) -> bool:
    try:
        pg_connect(inv, port_key, password=password).close()
    except psycopg2.OperationalError as error:
        # PostgreSQL and PgBouncer word the refusal differently.
        refused = ("password authentication failed", "SASL authentication failed")
        assert any(text in str(error) for text in refused), error
        return False
    return True


def test_changed_password_reaches_postgres_and_pgbouncer_without_a_restart(inv):
    wait_until(all_healthy, 120, "the stack to be healthy")
    started = inspect(container("pgbouncer"))["State"]["StartedAt"]
    old, new = inv["cmx_postgres_password"], f"rotated-{uuid.uuid4().hex}"
    try:
        converge("-e", f"cmx_postgres_password={new}")
        for port_key in ("cmx_postgres_port", "cmx_pgbouncer_port"):
            assert logs_in(inv, port_key, new), port_key
            assert not logs_in(inv, port_key, old), port_key
        assert inspect(container("pgbouncer"))["State"]["StartedAt"] == started  # reloaded, not restarted
        userlist = (PROJECT_DIR / "secrets" / "pgbouncer" / "userlist.txt").read_text()
        assert "SCRAM-SHA-256$" in userlist and new not in userlist
    finally:
        converge()  # the inventory's own password again
    for port_key in ("cmx_postgres_port", "cmx_pgbouncer_port"):
        assert logs_in(inv, port_key, old), port_key
        assert not logs_in(inv, port_key, new), port_key
