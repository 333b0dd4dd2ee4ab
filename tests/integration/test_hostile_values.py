"""Inventory values with quotes, $, :, #, spaces and non-ASCII characters converge a real stack (its own
project, folder and free ports), and each real client logs in with them: psycopg2 to PostgreSQL and to
PgBouncer, redis-py (and Redis Commander's own connection), boto3 to the S3 API. One converge; the stack
and its volumes are removed afterwards. Names the stack cannot quote stop the validation instead."""

from __future__ import annotations

import json
import shutil
import socket
import tempfile
import time
import uuid
from pathlib import Path

import boto3
import psycopg2
import pytest
import redis
from botocore.config import Config
from conftest import ROOT, needs_docker, project_containers, run_playbook

PROJECT = "cmxhostile"  # its own compose project: a running dev or ci stack is neither used nor touched
VAULT = {"ANSIBLE_VAULT_PASSWORD_FILE": str(ROOT / "inventories" / "ci" / ".vault-pass-ci")}
HOSTILE = {
    "cmx_postgres_user": "_hostile_user",
    "cmx_postgres_db": "hostile_db",
    "cmx_postgres_password": "pg pä$s'w\"o:r#d \\ ${HOME} x",
    "cmx_postgres_settings": {
        "search_path": '"$user", public',
        # PostgreSQL itself turns non-ASCII in application_name into \xNN: a custom setting carries it.
        "application_name": "cmx it's $HOME: #1",
        "cmx.hostile_note": "ä ${X} 'q' \"d\" # : \\",
    },
    "cmx_redis_password": "rä$d'i\"s:#p w\\x ${X},y",
    "cmx_s3_access_key": "hostile$AK#x",
    "cmx_s3_secret_key": "s3 $ecr'et\"#:ä-long-enough",
    "cmx_s3_bucket": "cmx-hostile",
}
PORTS = ("postgres", "pgbouncer", "redis", "s3", "s3_console", "health", "redis_commander")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def project_args(project_dir: Path, project: str = PROJECT) -> list[str]:
    return [
        "-i",
        "inventories/ci",
        "-e",
        f"cmx_project_name={project}",
        "-e",
        f"cmx_project_dir={project_dir}",
    ]


@pytest.fixture(scope="module")
def stack():
    """One converge with the hostile values; down with the volumes afterwards, whatever happened."""
    project_dir = Path(tempfile.mkdtemp(prefix=f"{PROJECT}-"))
    ports = {name: free_port() for name in PORTS}
    values = {**HOSTILE, **{f"cmx_{name}_port": port for name, port in ports.items()}}
    values_file = project_dir.parent / f"{project_dir.name}-values.json"
    values_file.write_text(json.dumps(values))
    try:
        result = run_playbook(
            *project_args(project_dir), "dev.yml", "-e", f"@{values_file}", env=VAULT, timeout=1800
        )
        assert result.returncode == 0, (result.stdout + result.stderr)[-6000:]
        yield {"ports": ports, "dir": project_dir}
    finally:
        down = run_playbook(
            *project_args(project_dir), "playbooks/down.yml", "-e", "cmx_down_remove_volumes=true", env=VAULT
        )
        values_file.unlink(missing_ok=True)
        shutil.rmtree(project_dir, ignore_errors=True)
        assert down.returncode == 0, (down.stdout + down.stderr)[-3000:]


def pg_connect(port: int):
    return psycopg2.connect(
        host="127.0.0.1",
        port=port,
        user=HOSTILE["cmx_postgres_user"],
        password=HOSTILE["cmx_postgres_password"],
        dbname=HOSTILE["cmx_postgres_db"],
        sslmode="disable",
        connect_timeout=10,
    )


@needs_docker
def test_postgres_takes_the_password_and_the_settings_as_written(stack):
    connection = pg_connect(stack["ports"]["postgres"])
    try:
        with connection.cursor() as cursor:
            for name, value in HOSTILE["cmx_postgres_settings"].items():
                cursor.execute("SELECT current_setting(%s)", (name,))
                assert cursor.fetchone() == (value,)
    finally:
        connection.close()


@needs_docker
def test_pgbouncer_lets_the_password_in(stack):
    connection = pg_connect(stack["ports"]["pgbouncer"])
    try:
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute("SELECT current_user, current_database()")
            assert cursor.fetchone() == (HOSTILE["cmx_postgres_user"], HOSTILE["cmx_postgres_db"])
    finally:
        connection.close()


@needs_docker
def test_redis_and_redis_commander_use_exactly_the_password(stack):
    client = redis.Redis(
        host="127.0.0.1", port=stack["ports"]["redis"], password=HOSTILE["cmx_redis_password"]
    )
    assert client.ping()
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(host="127.0.0.1", port=stack["ports"]["redis"], password="\\u00e4").ping()
    # Redis Commander logs in from its container with the password from its JSON config.
    deadline = time.monotonic() + 60
    while not any(entry.get("name") == "redis-commander" for entry in client.client_list()):
        assert time.monotonic() < deadline, "Redis Commander never logged in to Redis"
        time.sleep(0.5)


@needs_docker
def test_s3_signs_with_the_keys(stack):
    s3 = boto3.client(
        "s3",
        endpoint_url=f"http://127.0.0.1:{stack['ports']['s3']}",
        aws_access_key_id=HOSTILE["cmx_s3_access_key"],
        aws_secret_access_key=HOSTILE["cmx_s3_secret_key"],
        region_name="us-east-1",
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 2}),
    )
    key = f"hostile/{uuid.uuid4()}.txt"
    s3.put_object(Bucket=HOSTILE["cmx_s3_bucket"], Key=key, Body=b"ok")
    assert s3.get_object(Bucket=HOSTILE["cmx_s3_bucket"], Key=key)["Body"].read() == b"ok"


@needs_docker
def test_a_name_the_stack_cannot_quote_stops_before_anything_starts():
    project = f"{PROJECT}-names"
    project_dir = Path(tempfile.mkdtemp(prefix=f"{project}-"))
    # JSON: the key=value form of -e would split the name at its space. Free ports all the same.
    values = {"cmx_postgres_db": "hostile dbä", **{f"cmx_{name}_port": free_port() for name in PORTS}}
    try:
        result = run_playbook(
            *project_args(project_dir, project), "dev.yml", "-e", json.dumps(values), env=VAULT
        )
    finally:
        if project_containers(project):  # only when the check let it through: leave nothing behind
            run_playbook(
                *project_args(project_dir, project),
                "playbooks/down.yml",
                "-e",
                "cmx_down_remove_volumes=true",
                env=VAULT,
            )
        shutil.rmtree(project_dir, ignore_errors=True)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "cmx_postgres_db: 'hostile dbä' cannot be used as a name" in output
    assert "^[a-z_][a-z0-9_]{0,62}$" in output and "e.g. hostile_db" in output
    assert "Start the stack" not in output
    assert project_containers(project) == []
