"""The staging test host, seen from outside: its address on the test network, the app .env the converge
rendered there (read through the host container, the way an operator would look at it), and its CA."""

from __future__ import annotations

import subprocess
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml
from ansible_collections.cleanmatex.infra.tests.strict_ci import fail_on_skips_in_ci

REPO = Path(__file__).resolve().parents[3]
HOST = "cmx-staging-test"
ADDRESS = "10.231.77.10"  # molecule/staging/inventory/hosts.yml: cmx_bind_address
STAGING = yaml.safe_load((REPO / "inventories/staging/group_vars/all/stack.yml").read_text())
PROJECT_DIR = STAGING["cmx_project_dir"]


def pytest_sessionfinish(session, exitstatus):
    fail_on_skips_in_ci(session)


def on_host(*argv: str, check: bool = True) -> subprocess.CompletedProcess:
    """A command inside the host container (as root on the host)."""
    return subprocess.run(
        ["docker", "exec", HOST, *argv], capture_output=True, text=True, check=check, timeout=120
    )


@pytest.fixture(scope="session")
def app_env() -> dict[str, str]:
    values = {}
    for line in on_host("cat", f"{PROJECT_DIR}/app/.env").stdout.splitlines():
        if line.strip() and not line.startswith("#") and "=" in line:
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip().strip("'\"")
    return values


@pytest.fixture(scope="session")
def ca_file(app_env, tmp_path_factory) -> str:
    """The CA the apps are given (sslrootcert of DATABASE_URL), copied to this machine."""
    remote = parse_qs(urlsplit(app_env["DATABASE_URL"]).query)["sslrootcert"][0]
    local = tmp_path_factory.mktemp("ca") / "ca.crt"
    local.write_text(on_host("cat", remote).stdout)
    return str(local)
