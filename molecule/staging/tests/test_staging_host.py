"""A staging host converged over SSH, checked from outside it (this machine, through the host's address on
the test network): only the intended ports listen, logins are required, PostgreSQL and PgBouncer serve TLS
that verifies and refuse plaintext, no registry was needed, no demo data."""

from __future__ import annotations

import json
import socket
from urllib.parse import urlsplit

import psycopg2
import pytest
import redis
import requests
from conftest import ADDRESS, PROJECT_DIR, STAGING, on_host

SERVICE_PORTS = {
    STAGING["cmx_postgres_port"],
    STAGING["cmx_pgbouncer_port"],
    STAGING["cmx_redis_port"],
    STAGING["cmx_s3_port"],
    STAGING["cmx_s3_console_port"],
    STAGING["cmx_health_port"],
}


def listening() -> set[tuple[str, int]]:
    """(address, port) of every TCP listener in the host's network namespace."""
    sockets = set()
    for line in on_host("ss", "-Hltn").stdout.splitlines():
        local = line.split()[3]
        address, _, port = local.rpartition(":")
        sockets.add((address.strip("[]"), int(port)))
    return sockets


def test_only_the_stack_ports_listen_and_only_on_the_private_address():
    found = listening()
    ours = {(address, port) for address, port in found if port in SERVICE_PORTS}
    assert ours == {(ADDRESS, port) for port in SERVICE_PORTS}
    others = {
        (address, port)
        for address, port in found
        if port not in SERVICE_PORTS and port != 22 and not address.startswith("127.")
    }
    assert others == set(), f"unexpected listeners: {others}"


def test_redis_commander_does_not_run_and_its_port_is_closed():
    names = on_host("docker", "ps", "--format", "{{.Names}}").stdout.split()
    assert not [name for name in names if "redis-commander" in name]
    with pytest.raises(OSError):
        socket.create_connection((ADDRESS, STAGING["cmx_redis_commander_port"]), timeout=3)


def test_health_answers_200_from_outside():
    answer = requests.get(f"http://{ADDRESS}:{STAGING['cmx_health_port']}/health", timeout=10)
    assert answer.status_code == 200
    assert answer.json()["status"] in ("ok", "healthy")


def test_redis_answers_noauth_without_its_password(app_env):
    with socket.create_connection((ADDRESS, STAGING["cmx_redis_port"]), timeout=5) as raw:
        raw.sendall(b"GET any\r\n")
        assert raw.recv(200).startswith(b"-NOAUTH")
    with pytest.raises(redis.exceptions.AuthenticationError):
        redis.Redis(host=ADDRESS, port=STAGING["cmx_redis_port"], password="not-it", socket_timeout=5).ping()
    assert redis.Redis.from_url(app_env["REDIS_URL"], socket_timeout=5).ping() is True


@pytest.mark.parametrize("url_key", ["DATABASE_URL", "DATABASE_POOLED_URL"])
def test_tls_that_verifies_the_ca_connects(app_env, ca_file, url_key):
    url = urlsplit(app_env[url_key])
    with psycopg2.connect(
        host=ADDRESS, port=url.port, user=url.username, password=url.password, dbname=url.path.lstrip("/"),
        sslmode="verify-full", sslrootcert=ca_file, connect_timeout=10,
    ) as connection, connection.cursor() as cursor:  # fmt: skip
        cursor.execute("select 1")
        assert cursor.fetchone() == (1,)
        if url.port == STAGING["cmx_postgres_port"]:
            cursor.execute("select ssl from pg_stat_ssl where pid = pg_backend_pid()")
            assert cursor.fetchone() == (True,)


@pytest.mark.parametrize("url_key", ["DATABASE_URL", "DATABASE_POOLED_URL"])
def test_plaintext_from_outside_is_refused(app_env, url_key):
    url = urlsplit(app_env[url_key])
    with pytest.raises(psycopg2.OperationalError) as refused:
        psycopg2.connect(
            host=ADDRESS, port=url.port, user=url.username, password=url.password,
            dbname=url.path.lstrip("/"), sslmode="disable", connect_timeout=10,
        )  # fmt: skip
    message = str(refused.value)
    assert "authentication failed" not in message  # refused before any password is looked at
    assert any(word in message for word in ("SSL", "encryption", "pg_hba")), message


@pytest.mark.parametrize("url_key", ["DATABASE_URL", "DATABASE_POOLED_URL"])
def test_a_wrong_password_is_refused(app_env, ca_file, url_key):
    url = urlsplit(app_env[url_key])
    # PostgreSQL says "password authentication failed", PgBouncer "SASL authentication failed".
    with pytest.raises(psycopg2.OperationalError, match="authentication failed"):
        psycopg2.connect(
            host=ADDRESS, port=url.port, user=url.username, password="not-the-password",
            dbname=url.path.lstrip("/"), sslmode="verify-full", sslrootcert=ca_file, connect_timeout=10,
        )  # fmt: skip


def test_a_certificate_from_another_ca_is_not_trusted(app_env, tmp_path):
    url = urlsplit(app_env["DATABASE_URL"])
    other_ca = on_host("cat", "/etc/ssl/certs/ca-certificates.crt").stdout  # public CAs, not the stack's
    (tmp_path / "other.crt").write_text(other_ca)
    with pytest.raises(psycopg2.OperationalError, match="certificate verify failed"):
        psycopg2.connect(
            host=ADDRESS, port=url.port, user=url.username, password=url.password,
            dbname=url.path.lstrip("/"), sslmode="verify-full", sslrootcert=str(tmp_path / "other.crt"),
            connect_timeout=10,
        )  # fmt: skip


def test_no_demo_data_in_staging(app_env, ca_file):
    url = urlsplit(app_env["DATABASE_URL"])
    with psycopg2.connect(
        host=ADDRESS, port=url.port, user=url.username, password=url.password, dbname=url.path.lstrip("/"),
        sslmode="verify-full", sslrootcert=ca_file, connect_timeout=10,
    ) as connection, connection.cursor() as cursor:  # fmt: skip
        cursor.execute("select count(*) from public.tenants")
        assert cursor.fetchone() == (0,)


def test_the_host_never_saw_a_registry_and_keeps_no_shipped_archive():
    info = json.loads(on_host("docker", "info", "--format", "{{json .}}").stdout)
    assert not info.get("RegistryConfig", {}).get("Mirrors")
    images = on_host("docker", "images", "--format", "{{.Repository}}:{{.Tag}}").stdout.split()
    assert images and all(image.startswith("cmx/") for image in images), images
    leftovers = on_host("sh", "-c", f"ls -A {PROJECT_DIR}/images-incoming 2>/dev/null || true").stdout.split()
    assert leftovers == []


def test_dockerd_runs_with_the_server_settings():
    settings = json.loads(on_host("cat", "/etc/docker/daemon.json").stdout)
    assert settings["live-restore"] is True
    assert settings["log-opts"]["max-size"]
    assert on_host("docker", "info", "--format", "{{.LiveRestoreEnabled}}").stdout.strip() == "true"


def test_secrets_are_private_on_the_host():
    modes = dict(
        line.split(" ", 1)[::-1]
        for line in on_host(
            "stat", "-c", "%a %n", f"{PROJECT_DIR}/secrets", f"{PROJECT_DIR}/app",
            f"{PROJECT_DIR}/app/.env", f"{PROJECT_DIR}/.env",
            f"{PROJECT_DIR}/secrets/tls/ca.key", f"{PROJECT_DIR}/secrets/tls/server.key",
        ).stdout.splitlines()
    )  # fmt: skip
    assert modes[f"{PROJECT_DIR}/secrets"] == "700"
    assert modes[f"{PROJECT_DIR}/app"] == "700"
    for name in ("app/.env", ".env", "secrets/tls/ca.key", "secrets/tls/server.key"):
        assert modes[f"{PROJECT_DIR}/{name}"] == "600", name


def test_the_deploy_account_owns_the_stack_and_may_operate_it():
    user = STAGING["cmx_deploy_user"]
    owners = dict(
        line.split(" ", 1)[::-1]
        for line in on_host(
            "stat", "-c", "%U:%G %n", PROJECT_DIR, f"{PROJECT_DIR}/docker-compose.yml",
            f"{PROJECT_DIR}/secrets", f"{PROJECT_DIR}/app", f"{PROJECT_DIR}/app/.env",
        ).stdout.splitlines()
    )  # fmt: skip
    assert set(owners.values()) == {f"{user}:{user}"}, owners
    home = on_host("getent", "passwd", user).stdout.split(":")[5]
    assert not PROJECT_DIR.startswith(home.rstrip("/") + "/"), "the stack's folder is outside any home"
    # In the docker group: it can look at its stack without root.
    names = on_host("su", "-s", "/bin/sh", "-c", "docker ps --format '{{.Names}}'", user).stdout.split()
    assert "cmx-postgres" in names


def test_every_container_log_is_rotated():
    names = on_host("docker", "ps", "--format", "{{.Names}}").stdout.split()
    for name in names:
        shown = on_host("docker", "inspect", "--format", "{{json .HostConfig.LogConfig}}", name).stdout
        config = json.loads(shown)
        assert config["Type"] == "json-file" and config["Config"]["max-size"], (name, config)
