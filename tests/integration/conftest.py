"""Helpers for tests that run the real playbooks against the local Docker engine."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _docker_answers() -> bool:
    if shutil.which("docker") is None:
        return False
    return subprocess.run(["docker", "info"], capture_output=True).returncode == 0


needs_docker = pytest.mark.skipif(not _docker_answers(), reason="needs a running Docker engine")


def run_playbook(
    *args: str, env: dict | None = None, timeout: float = 600, unset: tuple = ()
) -> subprocess.CompletedProcess:
    """Run ansible-playbook from the repo root with the venv's Python (without the `unset` variables)."""
    bin_dir = Path(sys.executable).parent
    full_env = {
        **{key: value for key, value in os.environ.items() if key not in unset},
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "ANSIBLE_FORCE_COLOR": "0",
        "ANSIBLE_NOCOLOR": "1",
        **(env or {}),
    }
    return subprocess.run(
        [str(bin_dir / "ansible-playbook"), *args],
        cwd=ROOT,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def project_containers(project: str) -> list[str]:
    out = subprocess.run(
        [
            "docker",
            "ps",
            "-a",
            "--filter",
            f"label=com.docker.compose.project={project}",
            "--format",
            "{{.Names}}",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return out.split()


@pytest.fixture(scope="session")
def built_postgres_image() -> str:
    """The newest PostgreSQL image the images role built (a converge ran before the integration tests)."""
    done = subprocess.run(
        ["docker", "images", "cmx/postgres", "--format", "{{json .}}"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    refs = [json.loads(line) for line in done.stdout.splitlines()]
    if not refs:
        pytest.skip("no cmx/postgres image: converge first (bin/cmx up)")
    return f"{refs[0]['Repository']}:{refs[0]['Tag']}"
