"""The seed's "Infrastructure" tests, with the values an application reads: the rendered app .env."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import uuid
from pathlib import Path

import boto3
import psycopg2
import redis
from botocore.config import Config
from conftest import APP_ENV, app_env

ROOT = Path(__file__).resolve().parents[3]


def test_app_env_file_is_private():
    assert stat.S_IMODE(os.stat(APP_ENV).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(APP_ENV.parent).st_mode) == 0o700


def test_postgresql_is_accessible_direct_and_pooled():
    env = app_env()
    for url in (env["DATABASE_URL"], env["DATABASE_POOLED_URL"]):
        conn = psycopg2.connect(url, connect_timeout=5, sslmode="disable")
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT NOW()")
                assert len(cur.fetchall()) == 1
        finally:
            conn.close()


def test_redis_is_accessible():
    env = app_env()
    client = redis.Redis.from_url(env["REDIS_URL"], password=env.get("REDIS_PASSWORD") or None)
    key = f"test:{uuid.uuid4().hex}"
    client.set(key, "value", ex=60)
    assert client.get(key) == b"value"
    client.close()


def test_s3_is_accessible():
    env = app_env()
    s3 = boto3.client(
        "s3",
        endpoint_url=env["S3_ENDPOINT"],
        aws_access_key_id=env["S3_ACCESS_KEY"],
        aws_secret_access_key=env["S3_SECRET_KEY"],
        region_name=env.get("S3_REGION") or "us-east-1",
        config=Config(s3={"addressing_style": "path"}),
    )
    buckets = s3.list_buckets()["Buckets"]
    assert env["S3_BUCKET"] in [b["Name"] for b in buckets]


def test_smoke_script_prints_a_tick_per_service():
    # Supabase local (`supabase start`) needs its own registry images, which cannot run here.
    env = {**os.environ, "SUPABASE_ENABLED": "false"}
    done = subprocess.run(
        [sys.executable, str(ROOT / "bin" / "cmx-smoke"), str(APP_ENV)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    for service in ("PostgreSQL", "Redis", "Storage"):
        assert any(
            line.startswith("✓") and service.lower() in line.lower() for line in done.stdout.splitlines()
        )
