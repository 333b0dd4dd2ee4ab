"""Outside dev and ci, a host without systemd gets no unsupervised dockerd (issue 17, item 7).

The engine is made unreachable for the playbook only (DOCKER_HOST points nowhere): the running dockerd is
neither stopped nor restarted."""

from __future__ import annotations

from pathlib import Path

import pytest
from ansible_collections.cleanmatex.infra.plugins.module_utils.docker_host import pid1_is_systemd
from conftest import run_playbook

VAULT_PASS = Path(__file__).resolve().parents[2] / "inventories" / "ci" / ".vault-pass-ci"


@pytest.mark.skipif(pid1_is_systemd(), reason="with systemd the role uses docker.service (unit-tested)")
def test_staging_host_without_systemd_is_refused_before_anything_is_installed():
    result = run_playbook(
        "-i",
        "inventories/ci",
        "playbooks/host.yml",
        "-e",
        "cmx_environment=staging",
        "-e",
        "cmx_docker_install=always",
        env={
            "DOCKER_HOST": "unix:///nonexistent/docker.sock",
            "ANSIBLE_VAULT_PASSWORD_FILE": str(VAULT_PASS),
        },
    )
    output = " ".join((result.stdout + result.stderr).split())
    assert result.returncode != 0
    assert "Stop when dockerd would run without a supervisor" in output
    assert "dockerd is not running on localhost and this host has no systemd" in output
    assert "systemctl enable --now docker" in output
    assert "Install the Docker engine" not in output
    assert "Start dockerd in the background" not in output
