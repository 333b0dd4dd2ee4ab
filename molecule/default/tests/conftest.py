"""Shared fixtures for the verify step: the ci inventory's values and small Docker helpers."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest
import yaml

INVENTORY = Path(os.environ.get("CMX_INVENTORY", Path(__file__).parents[3] / "inventories" / "ci"))
PROJECT_DIR = Path(os.environ.get("CMX_PROJECT_DIR", Path(__file__).parents[3] / ".cmx"))


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


def docker(*args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=check, timeout=timeout)


def inspect(container: str) -> dict:
    return json.loads(docker("inspect", container).stdout)[0]


def wait_until(condition, timeout: float, what: str, interval: float = 0.25):
    """Poll `condition` until it returns a truthy value; fail naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            result = condition()
            if result:
                return result
        except Exception as error:  # the service may still be starting
            last_error = error
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what} (last error: {last_error})")


def stack_containers() -> list[str]:
    out = docker("ps", "--filter", "label=com.docker.compose.project=cmx", "--format", "{{.Names}}").stdout
    return sorted(out.split())


def all_healthy() -> bool:
    names = stack_containers()
    return bool(names) and all(
        inspect(name)["State"].get("Health", {}).get("Status") == "healthy" for name in names
    )
