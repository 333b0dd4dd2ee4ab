"""Secrets never reach a message or a log (issue 16): SQL string literals masked whole, container log tails
in cmx_wait_healthy's failure and the /health server's log masked.

Before the fix ``'[^']*'`` stopped at the first quote: ``PASSWORD 'pa''ss-word'`` became
``PASSWORD '***''ss-word'``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from ansible.plugins.filter.core import regex_replace
from ansible_collections.cleanmatex.infra.plugins.module_utils import health_report as hr
from ansible_collections.cleanmatex.infra.plugins.module_utils import probes
from ansible_collections.cleanmatex.infra.plugins.module_utils.backup_postgres import mask_secrets

REPO = Path(__file__).resolve().parents[2]
BACKUP_VARS = REPO / "roles" / "backup" / "vars" / "main.yml"

# (text, what must be left; every fragment of the secret "pa'ss-word" / "s3cr3t" must be gone)
SQL_CASES = {
    "doubled quote": (
        "ERROR: ALTER ROLE cmx_user PASSWORD 'pa''ss-word' VALID UNTIL 'infinity'",
        "ERROR: ALTER ROLE cmx_user PASSWORD '***' VALID UNTIL 'infinity'",
    ),
    "doubled quote at the end": (
        "CREATE ROLE a LOGIN PASSWORD 'pa''ss-word'''",
        "CREATE ROLE a LOGIN PASSWORD '***'",
    ),
    "E string": (r"ALTER ROLE a PASSWORD E'pa\'ss-word' LOGIN", "ALTER ROLE a PASSWORD '***' LOGIN"),
    "dollar quote": ("ALTER ROLE a PASSWORD $q$pa'ss-word$q$;", "ALTER ROLE a PASSWORD '***';"),
    "encrypted, lower case": (
        "create role b encrypted password 'SCRAM-SHA-256$4096:c2FsdA==$s3cr3t:s3cr3t';",
        "create role b encrypted password '***';",
    ),
    "two statements": (
        "ALTER ROLE a PASSWORD 'pa''ss-word';\nALTER ROLE b PASSWORD 's3cr3t';",
        "ALTER ROLE a PASSWORD '***';\nALTER ROLE b PASSWORD '***';",
    ),
    "cut off by a truncated message": (
        "LINE 1: ALTER ROLE a PASSWORD 'pa''ss-wo",
        "LINE 1: ALTER ROLE a PASSWORD '***'",
    ),
}


def assert_masked(masked: str, expected: str):
    assert masked == expected
    for fragment in ("pa", "ss-wo", "s3cr3t"):
        assert fragment not in masked.replace("PASSWORD", "").replace("password", "")


@pytest.mark.parametrize(("text", "expected"), SQL_CASES.values(), ids=SQL_CASES.keys())
def test_mask_secrets_masks_whole_sql_literals(text, expected):
    assert_masked(mask_secrets(text), expected)


@pytest.mark.parametrize(("text", "expected"), SQL_CASES.values(), ids=SQL_CASES.keys())
def test_backup_role_pattern_masks_whole_sql_literals(text, expected):
    # The rescue tasks of roles/backup: regex_replace(__backup_secret_pattern, "\1'***'")
    pattern = yaml.safe_load(BACKUP_VARS.read_text())["__backup_secret_pattern"]
    assert_masked(regex_replace(text, pattern, r"\1'***'"), expected)


def test_mask_secrets_keeps_ordinary_text():
    text = 'pg_restore: error: relation "it\'s" already exists; password authentication failed for user "x"'
    assert mask_secrets(text) == text


@pytest.mark.parametrize(
    "text",
    [
        r"invalid dsn: host=db password='pa\'ss-word' dbname=x",
        "host=db password='pa''ss-word' dbname=x",
        'settings: password="pa\\"ss-word" other=1',
    ],
)
def test_redact_masks_whole_quoted_key_values(text):
    masked = probes.redact(text)
    assert "ss-word" not in masked and "password=***" in masked
    assert masked.endswith(("dbname=x", "other=1"))


def test_service_secrets_are_found_in_every_field():
    services = [
        {"name": "db", "type": "postgres", "dsn": "host=db password='pa\\'ss' user=u", "password": "pgpass"},
        {"name": "r", "type": "redis", "url": "redis://:redis%40pw@r:6379/0"},
        {"name": "s3", "type": "s3", "secret_key": "s3-secret"},
        {"name": "api", "type": "http", "url": "http://x", "headers": {"apikey": "anon-key"}},
    ]
    secrets = set(probes.service_secrets(services))
    assert {"pa'ss", "pgpass", "redis@pw", "s3-secret", "anon-key"} <= secrets


# --------------------------------------------------------------------------- cmx_wait_healthy log tails

MODULE = "ansible_collections.cleanmatex.infra.plugins.modules.cmx_wait_healthy"
REDIS_PASSWORD = "redis-secret-4711"
PG_PASSWORD = "pg-secret-0815"


def test_wait_healthy_masks_secrets_in_container_log_tails(tmp_path):
    # A fake docker CLI prints what a container log may hold: a statement with a password, a URL with
    # credentials, a password=value and the raw password of another service.
    fake_docker = tmp_path / "docker"
    log = [
        "2025-01-01T00:00:01.000000000Z STATEMENT:  ALTER ROLE cmx_user PASSWORD 'pa''ss-word'",
        f"2025-01-01T00:00:02.000000000Z connecting to redis://:{REDIS_PASSWORD}@cmx-redis:6379",
        "2025-01-01T00:00:03.000000000Z config: password=hunter2-xyz retry=3",
        f"2025-01-01T00:00:04.000000000Z auth with {PG_PASSWORD} failed",
    ]
    fake_docker.write_text(
        "#!/bin/sh\n" + "".join(f"echo {json.dumps(line)}\n".replace("$", "\\$") for line in log)
    )
    fake_docker.chmod(0o755)
    services = [
        {
            "name": "db",
            "type": "postgres",
            "host": "127.0.0.1",
            "port": 1,
            "user": "u",
            "password": PG_PASSWORD,
            "container": "cmx-postgres",
        },
        {"name": "cache", "type": "redis", "host": "127.0.0.1", "port": 1, "password": REDIS_PASSWORD},
    ]
    args = tmp_path / "args.json"
    args.write_text(
        json.dumps({"ANSIBLE_MODULE_ARGS": {"services": services, "timeout": 0.2, "interval": 0.1}})
    )
    env = dict(
        os.environ,
        PYTHONPATH=str(REPO / ".collections"),
        PATH=f"{tmp_path}{os.pathsep}{os.environ.get('PATH', '')}",
    )
    proc = subprocess.run(
        [sys.executable, "-m", MODULE, str(args)],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=120,
    )
    assert proc.stdout.strip().startswith("{"), proc.stdout + proc.stderr
    result = json.loads(proc.stdout)
    assert result["failed"]
    tail = result["services"]["db"]["log_tail"]
    assert tail == [
        "STATEMENT:  ALTER ROLE cmx_user PASSWORD '***'",
        "connecting to redis://***@cmx-redis:6379",
        "config: password=*** retry=3",
        "auth with *** failed",
    ]
    for secret in ("ss-word", REDIS_PASSWORD, "hunter2-xyz", PG_PASSWORD):
        assert secret not in proc.stdout


# --------------------------------------------------------------------------- /health server log


def test_health_server_log_masks_every_configured_secret():
    env = {
        "HEALTH_DATABASE_URL": f"postgresql://cmx:{PG_PASSWORD}@127.0.0.1:1/db",
        "HEALTH_REDIS_URL": "redis://127.0.0.1:1/0",
        "HEALTH_REDIS_PASSWORD": REDIS_PASSWORD,
        "HEALTH_S3_ENDPOINT": "http://127.0.0.1:1",
        "HEALTH_PROBE_TIMEOUT_MS": "300",
    }
    config = hr.config_from_env(env)
    # A message that carries another service's secret, and one with a password literal.
    config.specs["storage"] = {
        "name": "storage",
        "type": "down",
        "error": f"upstream said: auth {REDIS_PASSWORD} / {PG_PASSWORD} / PASSWORD 'pa''ss-word'",
    }
    lines = []
    hr.HealthService(config, log=lines.append).report()

    logged = "\n".join(lines)
    assert "storage: down - upstream said: auth *** / *** / PASSWORD '***'" in logged
    for secret in (REDIS_PASSWORD, PG_PASSWORD, "ss-word"):
        assert secret not in logged
