"""An app host converged with every data service external, checked from outside through docker exec: no data
service container on it, migrations in the managed PostgreSQL, bucket and CORS on the managed S3, /health
following a stand-in going away and coming back, and a backup -> restore round trip through the network."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from conftest import (
    APP,
    PROJECT,
    PROJECT_DIR,
    REDIS,
    REPO,
    SETTINGS,
    ansible_playbook,
    docker_exec,
    health,
    on_app,
    sql,
    wait_for,
)

S3_REQUEST = (Path(__file__).parent / "s3_request.py").read_text()


def test_only_pgbouncer_and_health_run_on_the_app_host():
    names = set(on_app("docker", "ps", "--all", "--format", "{{.Names}}").stdout.split())
    assert names == {f"{PROJECT}-pgbouncer", f"{PROJECT}-health"}, names
    volumes = on_app("docker", "volume", "ls", "--format", "{{.Name}}").stdout.split()
    assert not [v for v in volumes if any(word in v for word in ("postgres", "redis", "storage"))], volumes


def test_migrations_were_applied_in_the_managed_postgresql():
    files = sorted(p.name.split("_", 1)[0] for p in (REPO / "supabase/migrations").glob("*.sql"))
    applied = sql("select version from supabase_migrations.schema_migrations order by version").split()
    assert applied == files
    # Staging: never the seed.
    assert sql("select count(*) from public.tenants") == "0"


def test_the_app_roles_were_created_by_the_converge():
    users = set(sql("select rolname from pg_roles").split())
    for key in ("cmx_postgres_app_user", "cmx_postgres_migration_user", "cmx_postgres_health_user"):
        assert SETTINGS[key] in users, key


def s3(app_env, method: str, query: str) -> dict:
    endpoint = SETTINGS["cmx_s3_endpoint"].rstrip("/")
    ca_file = f"{PROJECT_DIR}/secrets/ca/s3.crt"
    keys = {name: app_env[name] for name in ("S3_ACCESS_KEY", "S3_SECRET_KEY")}
    bucket_url = f"{endpoint}/{SETTINGS['cmx_s3_bucket']}"
    result = docker_exec(
        APP, "python3", "-", method, bucket_url, query, SETTINGS["cmx_s3_region"], ca_file,
        stdin=S3_REQUEST, env=keys,
    )  # fmt: skip
    return json.loads(result.stdout)


def test_the_bucket_and_its_cors_rules_are_on_the_managed_s3(app_env):
    assert s3(app_env, "HEAD", "")["status"] == 200
    cors = s3(app_env, "GET", "cors=")
    assert cors["status"] == 200, cors
    for origin in SETTINGS["cmx_s3_cors_origins"]:
        assert f"<AllowedOrigin>{origin}</AllowedOrigin>" in cors["body"], cors["body"]


def test_health_follows_the_managed_redis_going_away_and_coming_back():
    status, body = health()
    assert status == 200, body
    assert json.loads(body)["status"] in ("ok", "healthy")
    subprocess.run(["docker", "stop", REDIS], check=True, capture_output=True, timeout=60)
    try:
        down = wait_for(lambda: (answer := health())[0] == 503 and answer)
        assert down, "GET /health did not answer 503 with the Redis stand-in stopped"
        assert "redis" in down[1].lower(), down[1]
    finally:
        subprocess.run(["docker", "start", REDIS], check=True, capture_output=True, timeout=60)
    up = wait_for(lambda: (answer := health())[0] == 200 and answer)
    assert up, "GET /health did not come back to 200 after the Redis stand-in started again"


def test_backup_then_restore_through_the_network():
    sql("create table if not exists public.managed_round_trip (id int primary key)")
    sql("truncate public.managed_round_trip")
    sql("insert into public.managed_round_trip values (1), (2)")
    backup = ansible_playbook("playbooks/backup.yml")
    assert backup.returncode == 0, backup.stdout[-4000:]
    sql("insert into public.managed_round_trip values (3)")
    confirm = f"cmx_restore_confirm={SETTINGS['cmx_environment']}"
    restore = ansible_playbook("playbooks/restore.yml", "-e", confirm)
    assert restore.returncode == 0, restore.stdout[-4000:]
    assert sql("select id from public.managed_round_trip order by id").split() == ["1", "2"]
    status, body = health()
    assert status == 200, body
