"""Shared fixtures for the verify step: the ci inventory's values and small Docker helpers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import boto3
import psycopg2
import pytest
import redis
import yaml
from ansible_collections.cleanmatex.infra.tests.strict_ci import fail_on_skips_in_ci
from ansible_collections.cleanmatex.infra.tests.waiting import wait_until as wait_until  # for the tests
from botocore.config import Config

INVENTORY = Path(os.environ.get("CMX_INVENTORY", Path(__file__).parents[3] / "inventories" / "ci"))
PROJECT_DIR = Path(os.environ.get("CMX_PROJECT_DIR", Path(__file__).parents[3] / ".cmx-ci"))

APP_ENV = PROJECT_DIR / "app" / ".env"  # the applications' .env the converge renders


def app_env() -> dict[str, str]:
    """The rendered app .env as a dict (KEY=value lines; quotes around a value removed)."""
    values = {}
    for line in APP_ENV.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#") and "=" in line:
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip().strip('"')
    return values


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "host_disruptive: changes the whole Docker host (restarts dockerd); runs only when asked"
    )


def pytest_collection_modifyitems(config, items):
    """Host-disruptive tests run only with CMX_HOST_DISRUPTIVE=1 (tests/run.sh, CI only), and then alone."""
    wanted = os.environ.get("CMX_HOST_DISRUPTIVE") == "1"
    keep = [item for item in items if (item.get_closest_marker("host_disruptive") is not None) == wanted]
    dropped = [item for item in items if item not in keep]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep


def pytest_sessionfinish(session, exitstatus):
    fail_on_skips_in_ci(session)


class _InventoryLoader(yaml.SafeLoader):
    """Reads inventory YAML; vaulted values (!vault) are not needed here and load as None."""


_InventoryLoader.add_constructor("!vault", lambda loader, node: None)


def _plain_vars() -> dict:
    """The inventory's literal values (templated ones, like cmx_project_dir, are skipped)."""
    values: dict = {}
    for path in sorted((INVENTORY / "group_vars" / "all").glob("*.yml")):
        text = path.read_text()
        if text.startswith("$ANSIBLE_VAULT"):
            continue
        for key, value in (yaml.load(text, Loader=_InventoryLoader) or {}).items():
            if not (isinstance(value, str) and "{{" in value):
                values[key] = value
    return values


@pytest.fixture(scope="session")
def inv() -> dict:
    return _plain_vars()


PROJECT = _plain_vars()["cmx_project_name"]


def container(service: str) -> str:
    """The stack's container of `service` (compose service name): <project>-<service>."""
    return f"{PROJECT}-{service}"


def docker(*args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=check, timeout=timeout)


def inspect(container: str) -> dict:
    return json.loads(docker("inspect", container).stdout)[0]


def stack_containers() -> list[str]:
    label = f"label=com.docker.compose.project={PROJECT}"
    out = docker("ps", "--filter", label, "--format", "{{.Names}}").stdout
    return sorted(out.split())


def all_healthy() -> bool:
    names = stack_containers()
    return bool(names) and all(
        inspect(name)["State"].get("Health", {}).get("Status") == "healthy" for name in names
    )


# Real clients of the stack, always through the ports published on 127.0.0.1.


def pg_connect(inv: dict, port_key: str = "cmx_postgres_port", password: str | None = None, autocommit=True):
    conn = psycopg2.connect(
        host="127.0.0.1",
        port=inv[port_key],
        user=inv["cmx_postgres_user"],
        password=inv["cmx_postgres_password"] if password is None else password,
        dbname=inv["cmx_postgres_db"],
        sslmode="disable",
        connect_timeout=5,
    )
    conn.autocommit = autocommit
    return conn


def redis_client(inv: dict, db: int = 0) -> redis.Redis:
    return redis.Redis(
        host="127.0.0.1", port=inv["cmx_redis_port"], password=inv["cmx_redis_password"], db=db
    )


def s3_client(inv: dict, secret: str | None = None):
    return boto3.client(
        "s3",
        endpoint_url=f"http://127.0.0.1:{inv['cmx_s3_port']}",
        aws_access_key_id=inv["cmx_s3_access_key"],
        aws_secret_access_key=secret or inv["cmx_s3_secret_key"],
        region_name="us-east-1",
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 2}),
    )


def converge(*extra: str, playbook: str = "dev.yml") -> str:
    """ansible-playbook dev.yml (or `playbook`) on the ci inventory with `extra` arguments; its output
    (it must succeed)."""
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "ANSIBLE_NOCOLOR": "1"}
    done = subprocess.run(
        [str(bin_dir / "ansible-playbook"), "-i", str(INVENTORY), playbook, *extra],
        cwd=Path(__file__).resolve().parents[3],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout
