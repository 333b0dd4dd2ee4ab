"""Data written before `compose down`/`up` and before a dockerd restart is still there afterwards."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid

import boto3
import psycopg2
import pytest
import redis
from botocore.config import Config
from conftest import PROJECT_DIR, all_healthy, docker, wait_until

MARK = uuid.uuid4().hex


def _pg(inv):
    conn = psycopg2.connect(
        host="127.0.0.1",
        port=inv["cmx_postgres_port"],
        user=inv["cmx_postgres_user"],
        password=inv["cmx_postgres_password"],
        dbname=inv["cmx_postgres_db"],
        sslmode="disable",
        connect_timeout=5,
    )
    conn.autocommit = True
    return conn


def _redis(inv):
    return redis.Redis(host="127.0.0.1", port=inv["cmx_redis_port"], password=inv["cmx_redis_password"])


def _s3(inv):
    return boto3.client(
        "s3",
        endpoint_url=f"http://127.0.0.1:{inv['cmx_s3_port']}",
        aws_access_key_id=inv["cmx_s3_access_key"],
        aws_secret_access_key=inv["cmx_s3_secret_key"],
        region_name="us-east-1",
        config=Config(s3={"addressing_style": "path"}),
    )


def write_everything(inv, tag: str) -> None:
    conn = _pg(inv)
    try:
        with conn.cursor() as cur:
            cur.execute("CREATE TABLE IF NOT EXISTS persistence_check (tag text PRIMARY KEY)")
            cur.execute("INSERT INTO persistence_check VALUES (%s)", (tag,))
    finally:
        conn.close()
    assert _redis(inv).set(f"persist:{tag}", tag)
    _s3(inv).put_object(Bucket=inv["cmx_s3_bucket"], Key=f"persist/{tag}", Body=tag.encode())


def assert_everything_there(inv, tag: str) -> None:
    conn = _pg(inv)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT tag FROM persistence_check WHERE tag = %s", (tag,))
            assert cur.fetchone() == (tag,), "PostgreSQL row lost"
    finally:
        conn.close()
    assert _redis(inv).get(f"persist:{tag}") == tag.encode(), "Redis key lost"
    body = _s3(inv).get_object(Bucket=inv["cmx_s3_bucket"], Key=f"persist/{tag}")["Body"].read()
    assert body == tag.encode(), "S3 object lost"


def test_data_survives_compose_down_and_up(inv):
    tag = f"down-up-{MARK}"
    write_everything(inv, tag)
    compose = ["docker", "compose", "--project-directory", str(PROJECT_DIR), "--profile", "tools"]
    subprocess.run([*compose, "down"], check=True, capture_output=True, timeout=180)
    assert docker("ps", "-q", "--filter", "label=com.docker.compose.project=cmx").stdout.strip() == ""
    subprocess.run([*compose, "up", "-d", "--wait"], check=True, capture_output=True, timeout=300)
    assert_everything_there(inv, tag)


def _dockerd_pids() -> list[str]:
    found = subprocess.run(["pgrep", "-x", "dockerd"], capture_output=True, text=True)
    return found.stdout.split()


@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("dockerd") is None, reason="needs root and a local dockerd"
)
def test_data_survives_a_dockerd_restart(inv):
    tag = f"dockerd-{MARK}"
    write_everything(inv, tag)
    if os.path.exists("/run/systemd/system"):
        subprocess.run(["systemctl", "restart", "docker"], check=True, timeout=180)
    else:
        pids = _dockerd_pids()
        assert pids, "dockerd is not running as a local process"
        subprocess.run(["kill", "-TERM", *pids], check=True)
        wait_until(lambda: not _dockerd_pids(), 120, "dockerd to stop")
        with open("/var/log/dockerd.log", "ab") as log:
            subprocess.Popen(
                ["dockerd"], stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True
            )
    wait_until(lambda: docker("info", check=False).returncode == 0, 60, "dockerd to answer")
    wait_until(all_healthy, 180, "the stack to be healthy again after the dockerd restart")
    assert_everything_there(inv, tag)
