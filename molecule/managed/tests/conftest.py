"""The managed scenario seen from outside: commands run through `docker exec` in the app host or in a
stand-in, never from this machine to the test network; the inventory's settings; the app .env on the host."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from ansible_collections.cleanmatex.infra.tests.strict_ci import fail_on_skips_in_ci

REPO = Path(__file__).resolve().parents[3]
SCENARIO = REPO / "molecule/managed"
APP = "cmx-managed-app"
APP_ADDRESS = "10.231.78.10"  # inventory/hosts.yml: cmx_bind_address
POSTGRES = "cmx-managed-postgres"
REDIS = "cmx-managed-redis"
S3 = "cmx-managed-s3"
SETTINGS = yaml.safe_load((SCENARIO / "inventory/group_vars/all/stack.yml").read_text())
PROJECT = SETTINGS["cmx_project_name"]
PROJECT_DIR = SETTINGS["cmx_project_dir"]
HEALTH_URL = f"http://{APP_ADDRESS}:{SETTINGS['cmx_health_port']}/health"


def pytest_sessionfinish(session, exitstatus):
    fail_on_skips_in_ci(session)


def docker_exec(container: str, *argv: str, stdin: str | None = None, env: dict | None = None, check=True):
    """argv inside a container; env goes by name (docker exec --env NAME): no value on a command line."""
    env = env or {}
    names = [f"--env={name}" for name in env]
    return subprocess.run(
        ["docker", "exec", "--interactive", *names, container, *argv],
        input=stdin, capture_output=True, text=True, check=check, timeout=180, env={**os.environ, **env},
    )  # fmt: skip


def on_app(*argv: str, **kwargs) -> subprocess.CompletedProcess:
    """A command inside the app host (as root on it)."""
    return docker_exec(APP, *argv, **kwargs)


def sql(query: str) -> str:
    """A query in the stand-in PostgreSQL as its master user, over the stand-in's own socket."""
    login = [f"--username={SETTINGS['cmx_postgres_user']}", f"--dbname={SETTINGS['cmx_postgres_db']}"]
    return docker_exec(
        POSTGRES, "psql", "--no-psqlrc", "--tuples-only", "--no-align", "-v", "ON_ERROR_STOP=1", *login,
        f"--command={query}",
    ).stdout.strip()  # fmt: skip


_HEALTH_SCRIPT = """
import json, sys, urllib.error, urllib.request
try:
    answer = urllib.request.urlopen(sys.argv[1], timeout=15)
    status, body = answer.status, answer.read()
except urllib.error.HTTPError as error:
    status, body = error.code, error.read()
print(json.dumps({"status": status, "body": body.decode()}))
"""


def health() -> tuple[int, str]:
    """GET /health from inside the app host, to the address it is published on."""
    answer = json.loads(on_app("python3", "-c", _HEALTH_SCRIPT, HEALTH_URL).stdout)
    return answer["status"], answer["body"]


def wait_for(condition, timeout: float = 90.0, step: float = 1.0):
    """Poll condition() until it returns something true; that value, or the last one after the timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(step)


def ansible_playbook(playbook: str, *extra: str) -> subprocess.CompletedProcess:
    """A playbook of the project against this scenario's inventory (as an operator runs it)."""
    env = dict(os.environ)
    env.setdefault("ANSIBLE_VAULT_PASSWORD_FILE", str(SCENARIO / ".vault-pass-test"))
    env.setdefault("ANSIBLE_HOST_KEY_CHECKING", "false")
    env.setdefault("ANSIBLE_ROLES_PATH", str(REPO / "roles"))
    env.setdefault("ANSIBLE_COLLECTIONS_PATH", str(REPO / ".collections"))
    ansible = Path(os.environ.get("VIRTUAL_ENV", REPO / ".venv")) / "bin/ansible-playbook"
    return subprocess.run(
        [str(ansible), "-i", str(SCENARIO / "inventory/hosts.yml"), str(REPO / playbook), *extra],
        capture_output=True, text=True, env=env, cwd=REPO, timeout=900,
    )  # fmt: skip


@pytest.fixture(scope="session")
def app_env() -> dict[str, str]:
    values = {}
    for line in on_app("cat", f"{PROJECT_DIR}/app/.env").stdout.splitlines():
        if line.strip() and not line.startswith("#") and "=" in line:
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip().strip("'\"")
    return values
