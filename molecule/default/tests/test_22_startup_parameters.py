"""Session settings sent at startup through PgBouncer: applied or refused, never silently dropped.

PgBouncer in transaction pooling can keep a startup setting only when the server reports it (search_path:
PostgreSQL 18+); on our 16/17 a client asking for a search_path must be told no, not handed another schema.
"""

from __future__ import annotations

import socket
import struct

import psycopg2
import pytest


def _connect(inv: dict, port_key: str, options: str):
    return psycopg2.connect(
        host="127.0.0.1",
        port=inv[port_key],
        user=inv["cmx_postgres_user"],
        password=inv["cmx_postgres_password"],
        dbname=inv["cmx_postgres_db"],
        sslmode="disable",
        connect_timeout=5,
        options=options,
    )


def _show(conn, name: str) -> str:
    with conn.cursor() as cur:
        cur.execute(f"SHOW {name}")
        return cur.fetchone()[0]


def _startup_reply(port: int, params: dict[str, str]) -> tuple[str, str]:
    """Send a protocol 3.0 StartupMessage with `params`; the reply's type ('R' authentication, 'E' error)
    and, for an error, its message."""
    body = struct.pack("!i", 196608) + b"".join(
        key.encode() + b"\0" + value.encode() + b"\0" for key, value in params.items()
    )
    packet = struct.pack("!i", len(body) + 5) + body + b"\0"
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(packet)
        head = sock.recv(5, socket.MSG_WAITALL)
        kind, length = chr(head[0]), struct.unpack("!i", head[1:5])[0]
        payload = sock.recv(length - 4, socket.MSG_WAITALL)
    fields = {chr(part[0]): part[1:].decode() for part in payload.split(b"\0") if part}
    return kind, fields.get("M", "")


@pytest.mark.parametrize("options", ["-c search_path=cmx_probe_schema", "-csearch_path=cmx_probe_schema"])
def test_search_path_in_options_is_applied_or_refused_through_pgbouncer(inv, options):
    try:
        conn = _connect(inv, "cmx_pgbouncer_port", options)
    except psycopg2.OperationalError as error:
        assert "unsupported startup parameter in options: search_path" in str(error), str(error)
        return
    try:
        assert _show(conn, "search_path") == "cmx_probe_schema", "PgBouncer dropped the client's search_path"
    finally:
        conn.close()


def test_other_settings_in_options_are_refused_through_pgbouncer(inv):
    with pytest.raises(psycopg2.OperationalError) as refused:
        _connect(inv, "cmx_pgbouncer_port", "-c statement_timeout=4321").close()
    assert "unsupported startup parameter in options: statement_timeout" in str(refused.value)


def test_search_path_startup_parameter_is_refused_through_pgbouncer(inv):
    params = {
        "user": inv["cmx_postgres_user"],
        "database": inv["cmx_postgres_db"],
        "search_path": "cmx_probe",
    }
    kind, message = _startup_reply(inv["cmx_pgbouncer_port"], params)
    assert (kind, message) == ("E", "unsupported startup parameter: search_path")
    # PostgreSQL itself takes it: the same packet gets an authentication request.
    assert _startup_reply(inv["cmx_postgres_port"], params)[0] == "R"


def test_the_documented_ways_still_work(inv):
    """Direct connections apply options; through PgBouncer SET LOCAL applies within the transaction."""
    direct = _connect(inv, "cmx_postgres_port", "-c search_path=cmx_probe_schema -c statement_timeout=4321")
    try:
        assert (_show(direct, "search_path"), _show(direct, "statement_timeout")) == (
            "cmx_probe_schema",
            "4321ms",
        )
    finally:
        direct.close()
    pooled = _connect(inv, "cmx_pgbouncer_port", "")
    try:
        with pooled.cursor() as cur:  # psycopg2 opens a transaction: SET LOCAL holds until commit
            cur.execute("SET LOCAL search_path = cmx_probe_schema")
            cur.execute("SHOW search_path")
            assert cur.fetchone()[0] == "cmx_probe_schema"
        pooled.rollback()
    finally:
        pooled.close()
