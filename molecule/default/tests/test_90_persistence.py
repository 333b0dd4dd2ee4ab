"""Data written before `compose down`/`up` and before a dockerd restart is still there afterwards."""

from __future__ import annotations

import os
import subprocess
import uuid

import pytest
from conftest import (
    PROJECT,
    PROJECT_DIR,
    all_healthy,
    docker,
    pg_connect,
    redis_client,
    s3_client,
    wait_until,
)

MARK = uuid.uuid4().hex


def write_everything(inv, tag: str) -> None:
    conn = pg_connect(inv)
    try:
        with conn.cursor() as cur:
            cur.execute("CREATE TABLE IF NOT EXISTS persistence_check (tag text PRIMARY KEY)")
            cur.execute("INSERT INTO persistence_check VALUES (%s)", (tag,))
    finally:
        conn.close()
    assert redis_client(inv).set(f"persist:{tag}", tag)
    s3_client(inv).put_object(Bucket=inv["cmx_s3_bucket"], Key=f"persist/{tag}", Body=tag.encode())


def assert_everything_there(inv, tag: str) -> None:
    conn = pg_connect(inv)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT tag FROM persistence_check WHERE tag = %s", (tag,))
            assert cur.fetchone() == (tag,), "PostgreSQL row lost"
    finally:
        conn.close()
    assert redis_client(inv).get(f"persist:{tag}") == tag.encode(), "Redis key lost"
    body = s3_client(inv).get_object(Bucket=inv["cmx_s3_bucket"], Key=f"persist/{tag}")["Body"].read()
    assert body == tag.encode(), "S3 object lost"


def test_data_survives_compose_down_and_up(inv):
    tag = f"down-up-{MARK}"
    write_everything(inv, tag)
    compose = ["docker", "compose", "--project-directory", str(PROJECT_DIR), "--profile", "tools"]
    subprocess.run([*compose, "down"], check=True, capture_output=True, timeout=180)
    assert docker("ps", "-q", "--filter", f"label=com.docker.compose.project={PROJECT}").stdout.strip() == ""
    subprocess.run([*compose, "up", "-d", "--wait"], check=True, capture_output=True, timeout=300)
    assert_everything_there(inv, tag)


def _dockerd_pids() -> list[str]:
    found = subprocess.run(["pgrep", "-x", "dockerd"], capture_output=True, text=True)
    return found.stdout.split()


# Restarts the Docker engine, and with it every container on the machine: tests/run.sh runs it only in
# CI (CI=true), against the dev-shaped stack, after the dev stack guard has been compared.
@pytest.mark.host_disruptive
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
