"""Status and the daily verbs against the ci stack: bin/cmx status/health/smoke with no extra variables."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

from conftest import PROJECT, PROJECT_DIR, converge, docker, wait_until

ROOT = Path(__file__).resolve().parents[3]
CMX = str(ROOT / "bin" / "cmx")


def cmx(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    full = {**os.environ, "CMX_PROJECT_DIR": str(PROJECT_DIR), **(env or {})}
    return subprocess.run([CMX, *args], capture_output=True, text=True, timeout=300, env=full)


def test_status_json_lists_every_service_with_its_real_version_and_no_credentials(inv):
    done = cmx("status", "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout)
    assert report["project"] == PROJECT and report["environment"] == "ci"
    by_service = {s["service"]: s for s in report["services"]}
    assert set(by_service) == {"postgres", "pgbouncer", "redis", "storage", "health", "redis-commander"}
    assert all(s["health"] == "healthy" and s["uptime_seconds"] >= 0 for s in by_service.values())
    assert re.fullmatch(r"PostgreSQL \d+\.\d+", by_service["postgres"]["version"])
    assert re.fullmatch(r"Redis \d+\.\d+\.\d+", by_service["redis"]["version"])
    # Built here (cmx_image_source: build), the majors are those pull mode's images have: PostgreSQL
    # cmx_postgres_major (postgres:<major>-alpine) and Redis 7 (redis:7-alpine).
    assert by_service["postgres"]["version"].startswith(f"PostgreSQL {inv.get('cmx_postgres_major', 17)}.")
    assert by_service["redis"]["version"].startswith("Redis 7.")
    assert by_service["postgres"]["url"] == (
        f"postgresql://{inv['cmx_postgres_user']}@localhost:{inv['cmx_postgres_port']}/{inv['cmx_postgres_db']}"
    )
    # The server's own answer agrees with the version shown.
    shown = by_service["postgres"]["version"].split()[1]
    psql = docker("exec", f"{PROJECT}-postgres", "psql", "-U", inv["cmx_postgres_user"], "-d",
                  inv["cmx_postgres_db"], "-Atc", "SHOW server_version")  # fmt: skip
    assert psql.stdout.startswith(shown)
    for secret in (inv["cmx_postgres_password"], inv["cmx_redis_password"], inv["cmx_s3_secret_key"]):
        assert secret not in done.stdout  # ci is not dev: never credentials


def test_status_playbook_json_and_text():
    # The report itself: printed as nested YAML or JSON, whichever result format the callback uses.
    json_out = converge("-e", "cmx_status_format=json", playbook="playbooks/status.yml")
    assert re.search(rf"\bproject\W+{PROJECT}\b", json_out), json_out
    assert re.search(r"\bversion\W+PostgreSQL \d", json_out), json_out
    # One string of aligned lines (a block under the yaml result format; escaped newlines under json).
    text = converge(playbook="playbooks/status.yml").replace("\\n", "\n")
    assert re.search(rf"^\s+postgres\s+{PROJECT}-postgres\s+\S+\s+PostgreSQL \d", text, re.M)


def test_health_and_smoke_need_no_variables_and_a_down_service_is_named():
    health = cmx("health")
    assert health.returncode == 0, health.stdout + health.stderr
    assert json.loads(health.stdout)["status"] == "healthy"
    smoke = cmx("smoke")
    assert smoke.returncode == 0, smoke.stdout + smoke.stderr
    assert "✓ PostgreSQL OK" in smoke.stdout and "- Supabase skipped" in smoke.stdout
    docker("stop", f"{PROJECT}-redis")
    try:
        down = cmx("health")
        assert down.returncode == 2
        assert "redis: down - " in down.stderr
    finally:
        docker("start", f"{PROJECT}-redis")
        wait_until(lambda: cmx("health").returncode == 0, 120, "the stack to be healthy again")


def test_logs_and_restart_verbs_act_on_this_project_only():
    before = json.loads(docker("inspect", f"{PROJECT}-pgbouncer").stdout)[0]["State"]["StartedAt"]
    restarted = cmx("restart", "pgbouncer")
    assert restarted.returncode == 0, restarted.stderr
    after = json.loads(docker("inspect", f"{PROJECT}-pgbouncer").stdout)[0]["State"]["StartedAt"]
    assert after != before
    wait_until(lambda: cmx("health").returncode == 0, 120, "PgBouncer to be healthy after the restart")
    logs = cmx("logs", "pgbouncer")
    assert logs.returncode == 0 and logs.stdout
    assert all(line.startswith(f"{PROJECT}-pgbouncer") for line in logs.stdout.splitlines() if line.strip())


def test_unknown_verb_is_refused_with_usage():
    done = cmx("frobnicate")
    assert done.returncode == 64
    assert "unknown verb 'frobnicate'" in done.stderr and "bin/cmx <verb>" in done.stderr
