"""TLS for PostgreSQL and PgBouncer (cmx_tls_enabled): a real stack converged on this machine's Docker engine.

A private copy of inventories/ci with its own compose project (cmx-tls), its own folder (a temporary one)
and its own ports (ci's + 10000: 25432, 26432, 26379, 29000, 29001, 28080, 28081), TLS on and no
certificate given, so the stack role creates a CA and a server certificate on the host. Everything is
checked from outside through the ports published on 127.0.0.1: a client verifying the CA
(sslmode=verify-full) gets in to PostgreSQL and PgBouncer, a plaintext one and a wrong password are
refused, /health answers 200, bin/cmx-health and bin/cmx-smoke pass, a second converge changes nothing.
The project is removed afterwards (docker compose down -v). Never touches the cmx or cmx-ci projects.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from conftest import ROOT, needs_docker, project_containers, run_playbook

psycopg2 = pytest.importorskip("psycopg2")

PROJECT = "cmx-tls"
PORTS = {
    "cmx_postgres_port": 25432,
    "cmx_pgbouncer_port": 26432,
    "cmx_redis_port": 26379,
    "cmx_s3_port": 29000,
    "cmx_s3_console_port": 29001,
    "cmx_health_port": 28080,
    "cmx_redis_commander_port": 28081,
}
VAULT_PASS = ROOT / "inventories" / "ci" / ".vault-pass-ci"
pytestmark = [needs_docker]


def _compose_down(project_dir: Path) -> None:
    compose = project_dir / "docker-compose.yml"
    args = ["docker", "compose", "-p", PROJECT]
    if compose.is_file():
        args += ["--project-directory", str(project_dir), "-f", str(compose), "--profile", "tools"]
    subprocess.run([*args, "down", "-v", "--remove-orphans"], capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def tls_stack(tmp_path_factory):
    """Converge the private TLS stack once: playbook arguments, project dir, first run; removed afterwards."""
    base = tmp_path_factory.mktemp("cmx-tls")
    inventory = base / "inventory"
    shutil.copytree(ROOT / "inventories" / "ci", inventory)
    project_dir = base / "project"
    overrides = {
        "cmx_project_name": PROJECT,
        "cmx_project_dir": str(project_dir),
        "cmx_tls_enabled": True,
        **PORTS,
    }
    stack_vars = inventory / "group_vars" / "all" / "stack.yml"
    text = stack_vars.read_text(encoding="utf-8")
    for key in overrides:  # drop ci's own values of these keys, then append ours
        text = re.sub(rf"(?m)^{key}:.*\n", "", text)
    text += "\n# test_tls_stack.py: a private project, its own ports, TLS on\n"
    text += "".join(f"{key}: {json.dumps(value)}\n" for key, value in overrides.items())
    stack_vars.write_text(text, encoding="utf-8")
    if project_containers(PROJECT):
        _compose_down(project_dir)
    args = ("-i", str(inventory), "--vault-password-file", str(VAULT_PASS), "playbooks/site.yml")
    first = run_playbook(*args, timeout=1200)
    try:
        yield {"args": args, "dir": project_dir, "first": first}
    finally:
        _compose_down(project_dir)


def _recap_changed(output: str) -> int:
    match = re.search(r"changed=(\d+)", output.split("PLAY RECAP", 1)[-1])
    assert match, output[-3000:]
    return int(match.group(1))


def _app_env(project_dir: Path) -> dict:
    values = {}
    for line in (project_dir / "app" / ".env").read_text(encoding="utf-8").splitlines():
        if "=" in line and not line.lstrip().startswith("#"):
            key, value = line.split("=", 1)
            values[key.strip()] = value.strip().strip("'\"")
    return values


@pytest.fixture(scope="module")
def stack(tls_stack):
    first = tls_stack["first"]
    assert first.returncode == 0, (first.stdout + first.stderr)[-6000:]
    return tls_stack


def _connect(port: int, stack, **params):
    env = _app_env(stack["dir"])
    ca = str(stack["dir"] / "app" / "postgres-ca.crt")
    kwargs = {
        "host": "127.0.0.1",
        "port": port,
        "user": "cmx_app",
        "password": "cmx_app_pass_ci",
        "dbname": "cmx_db",
        "connect_timeout": 5,
        "sslmode": "verify-full",
        "sslrootcert": ca,
    }
    kwargs.update(params)
    assert env  # the app env file was rendered
    return psycopg2.connect(**kwargs)


def test_files_keys_private_and_ca_next_to_the_env(stack):
    tls = stack["dir"] / "secrets" / "tls"
    assert stat.S_IMODE(tls.stat().st_mode) == 0o700
    for key in ("ca.key", "server.key"):
        assert stat.S_IMODE((tls / key).stat().st_mode) == 0o600, key
    assert (tls / "server.key").stat().st_uid == 999  # the postgres/pgbouncer images' uid
    ca = stack["dir"] / "app" / "postgres-ca.crt"
    assert stat.S_IMODE(ca.stat().st_mode) == 0o644
    assert ca.read_bytes() == (tls / "ca.crt").read_bytes()
    env = _app_env(stack["dir"])
    query = f"?sslmode=verify-full&sslrootcert={ca}"
    assert env["DATABASE_URL"].endswith(query), env["DATABASE_URL"]
    assert env["DATABASE_POOLED_URL"].endswith(query), env["DATABASE_POOLED_URL"]
    assert f":{PORTS['cmx_pgbouncer_port']}/" in env["DATABASE_POOLED_URL"]


@pytest.mark.parametrize("port", [PORTS["cmx_postgres_port"], PORTS["cmx_pgbouncer_port"]])
def test_verifying_client_connects_with_the_env_url(stack, port):
    env = _app_env(stack["dir"])
    url = env["DATABASE_URL" if port == PORTS["cmx_postgres_port"] else "DATABASE_POOLED_URL"]
    with psycopg2.connect(url, connect_timeout=5) as conn, conn.cursor() as cur:
        cur.execute("SELECT current_user")
        assert cur.fetchone()[0] == "cmx_app"
        assert conn.info.ssl_in_use
    conn.close()


def test_postgres_sees_tls_from_pgbouncer_and_the_client(stack):
    conn = _connect(PORTS["cmx_postgres_port"], stack, user="cmx_user", password="cmx_pass_dev")
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            assert cur.fetchone()[0] is True
            # PgBouncer's server connections (and /health's) are TLS too: no plaintext TCP session at all.
            cur.execute(
                "SELECT count(*) FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) "
                "WHERE a.client_addr IS NOT NULL AND NOT s.ssl"
            )
            assert cur.fetchone()[0] == 0
    finally:
        conn.close()


@pytest.mark.parametrize("port", [PORTS["cmx_postgres_port"], PORTS["cmx_pgbouncer_port"]])
def test_plaintext_client_is_refused(stack, port):
    with pytest.raises(psycopg2.OperationalError) as refused:
        _connect(port, stack, sslmode="disable", sslrootcert=None)
    text = str(refused.value)
    # PostgreSQL: pg_hba.conf's hostnossl ... reject; PgBouncer: client_tls_sslmode = require.
    expected = "no encryption" if port == PORTS["cmx_postgres_port"] else "SSL required"
    assert expected in text, text


@pytest.mark.parametrize("port", [PORTS["cmx_postgres_port"], PORTS["cmx_pgbouncer_port"]])
def test_wrong_password_is_refused(stack, port):
    with pytest.raises(psycopg2.OperationalError) as refused:
        _connect(port, stack, password="not-the-password")
    # PostgreSQL names the role; PgBouncer says only that SCRAM failed.
    text = str(refused.value)
    assert "password authentication failed" in text or "SASL authentication failed" in text, text


@pytest.mark.parametrize("port", [PORTS["cmx_postgres_port"], PORTS["cmx_pgbouncer_port"]])
def test_client_with_another_ca_is_refused(stack, port, tmp_path):
    other = tmp_path / "other-ca.crt"
    other.write_text(Path("/etc/ssl/certs/ca-certificates.crt").read_text(encoding="utf-8"))
    with pytest.raises(psycopg2.OperationalError) as refused:
        _connect(port, stack, sslrootcert=str(other))
    assert "certificate verify failed" in str(refused.value), str(refused.value)


def test_health_endpoint_is_200_with_the_databases_up(stack):
    with urllib.request.urlopen(
        f"http://127.0.0.1:{PORTS['cmx_health_port']}/health", timeout=10
    ) as response:
        assert response.status == 200
        report = json.loads(response.read())
    text = json.dumps(report)
    assert '"down"' not in text, text


def test_cmx_health_and_smoke_work_against_the_tls_stack(stack):
    env = {**os.environ, "CMX_PROJECT_DIR": str(stack["dir"])}
    health = subprocess.run(
        [sys.executable, str(ROOT / "bin" / "cmx-health"), "check"], env=env, capture_output=True, text=True
    )
    assert health.returncode == 0, health.stdout + health.stderr
    smoke = subprocess.run(
        [sys.executable, str(ROOT / "bin" / "cmx-smoke"), str(stack["dir"] / "app" / ".env")],
        env=env,
        capture_output=True,
        text=True,
    )
    assert smoke.returncode == 0, smoke.stdout + smoke.stderr
    assert "PostgreSQL" in smoke.stdout


def test_second_converge_changes_nothing(stack):
    again = run_playbook(*stack["args"], timeout=900)
    assert again.returncode == 0, (again.stdout + again.stderr)[-6000:]
    changed = re.findall(r"TASK \[([^\]]+)\][^\n]*\n(?:[^\n]*\n)*?changed: ", again.stdout)
    assert _recap_changed(again.stdout) == 0, changed or again.stdout[-6000:]


def test_destroy_removes_the_project(tls_stack):
    _compose_down(tls_stack["dir"])
    assert project_containers(PROJECT) == []
    volumes = subprocess.run(
        ["docker", "volume", "ls", "-q", "--filter", f"label=com.docker.compose.project={PROJECT}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert volumes == []
