"""Every service is healthy, answers real clients on 127.0.0.1, and refuses wrong passwords."""

from __future__ import annotations

import re
import uuid

import psycopg2
import pytest
import redis
from conftest import PROJECT, container, inspect, pg_connect, s3_client, stack_containers

EXPECTED = [container(s) for s in ("health", "pgbouncer", "postgres", "redis", "redis-commander", "storage")]


def test_every_service_is_running_and_healthy():
    assert stack_containers() == EXPECTED
    for name in EXPECTED:
        state = inspect(name)["State"]
        assert state["Health"]["Status"] == "healthy", f"{name}: {state['Health']['Log'][-1:]}"


def test_every_published_port_is_bound_to_loopback():
    for name in EXPECTED:
        ports = inspect(name)["NetworkSettings"]["Ports"]
        bindings = [b for spec in ports.values() if spec for b in spec]
        assert bindings, f"{name} publishes nothing"
        assert {b["HostIp"] for b in bindings} == {"127.0.0.1"}, f"{name}: {bindings}"


def test_no_anonymous_volumes():
    for name in EXPECTED:
        for mount in inspect(name)["Mounts"]:
            if mount["Type"] == "volume":
                assert not re.fullmatch(r"[0-9a-f]{64}", mount["Name"]), (
                    f"{name}: anonymous volume at {mount}"
                )
                assert mount["Name"].startswith(f"{PROJECT}_"), mount


def test_postgres_answers_a_real_query_with_checksums_and_settings(inv):
    with pg_connect(inv) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT now(), current_setting('data_checksums'), current_setting('shared_buffers'),"
            " current_setting('max_connections')::int"
        )
        now, checksums, shared_buffers, max_connections = cur.fetchone()
    assert now is not None
    assert checksums == "on"
    assert shared_buffers == inv["cmx_postgres_settings"]["shared_buffers"]
    assert max_connections == inv["cmx_postgres_max_connections"]


def test_init_sql_extensions_and_readonly_role_with_default_privileges(inv):
    table = f"t_{uuid.uuid4().hex[:8]}"
    with pg_connect(inv) as conn, conn.cursor() as cur:
        cur.execute("SELECT extname FROM pg_extension WHERE extname IN ('uuid-ossp', 'pgcrypto') ORDER BY 1")
        assert [r[0] for r in cur.fetchall()] == ["pgcrypto", "uuid-ossp"]
        # A table created after init is still readable by cmx_readonly (ALTER DEFAULT PRIVILEGES).
        cur.execute(f"CREATE TABLE {table} (id int)")
        cur.execute(f"INSERT INTO {table} VALUES (7)")
        cur.execute("SET ROLE cmx_readonly")
        cur.execute(f"SELECT id FROM {table}")
        assert cur.fetchone() == (7,)
        cur.execute("RESET ROLE")
        cur.execute(f"DROP TABLE {table}")


def test_pgbouncer_answers_through_scram(inv):
    with pg_connect(inv, "cmx_pgbouncer_port") as conn, conn.cursor() as cur:
        cur.execute("SELECT current_user")
        assert cur.fetchone() == (inv["cmx_postgres_user"],)


@pytest.mark.parametrize("port_key", ["cmx_postgres_port", "cmx_pgbouncer_port"])
def test_wrong_postgres_password_is_refused(inv, port_key):
    with pytest.raises(psycopg2.OperationalError, match=r"(password|SASL) authentication failed"):
        pg_connect(inv, port_key, password="not-the-password")


def test_redis_set_get_and_wrong_password_refused(inv):
    client = redis.Redis(host="127.0.0.1", port=inv["cmx_redis_port"], password=inv["cmx_redis_password"])
    key = f"cmx:test:{uuid.uuid4().hex}"
    assert client.set(key, "value", ex=60)
    assert client.get(key) == b"value"
    assert client.config_get("appendonly")["appendonly"] == "yes"
    assert client.config_get("appendfsync")["appendfsync"] == "everysec"
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(host="127.0.0.1", port=inv["cmx_redis_port"], password="wrong").ping()
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(host="127.0.0.1", port=inv["cmx_redis_port"]).get(key)


def test_s3_bucket_object_roundtrip_cors_and_wrong_secret(inv):
    client = s3_client(inv)
    names = [b["Name"] for b in client.list_buckets()["Buckets"]]
    assert inv["cmx_s3_bucket"] in names
    key = f"test/{uuid.uuid4().hex}.txt"
    client.put_object(Bucket=inv["cmx_s3_bucket"], Key=key, Body=b"hello")
    assert client.get_object(Bucket=inv["cmx_s3_bucket"], Key=key)["Body"].read() == b"hello"
    client.delete_object(Bucket=inv["cmx_s3_bucket"], Key=key)
    rules = client.get_bucket_cors(Bucket=inv["cmx_s3_bucket"])["CORSRules"]
    assert rules[0]["AllowedOrigins"] == inv["cmx_s3_cors_origins"]
    with pytest.raises(Exception, match=r"(SignatureDoesNotMatch|AccessDenied|InvalidAccessKeyId|403)"):
        s3_client(inv, secret="wrong-secret-key").list_buckets()
