"""The staging and production inventories as committed: their placeholders stop the playbook before it
contacts any host, listing every one; a wildcard bind address outside dev is allowed but warned about."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import needs_docker, project_containers, run_playbook

CI_VAULT_PASSWORD = Path(__file__).resolve().parents[2] / "inventories" / "ci" / ".vault-pass-ci"

BOOTSTRAP_PASSWORD = "cmx-bootstrap-vault-password-public-placeholders-only"  # public: placeholders only


@pytest.mark.parametrize("environment", ["staging", "production"])
def test_placeholders_stop_the_server_playbook_before_any_host_is_contacted(environment, tmp_path):
    password_file = tmp_path / "vault-pass"
    password_file.write_text(BOOTSTRAP_PASSWORD + "\n")
    result = run_playbook(
        "-i", f"inventories/{environment}", "playbooks/staging.yml",
        "--vault-password-file", str(password_file), unset=("ANSIBLE_VAULT_PASSWORD_FILE",), timeout=300,
    )  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert f"values for environment {environment}: INVALID" in output
    assert "is a placeholder" in output and "REDIS_PASSWORD" in output and "S3_ACCESS_KEY" in output
    assert "UNREACHABLE" not in output and "unreachable=0" in output, "no host was contacted"


@needs_docker
def test_a_wildcard_bind_address_outside_dev_is_warned_about():
    project = "cmx-ci-wildcard"
    result = run_playbook(
        "-i", "inventories/ci", "dev.yml", "--tags", "preflight",
        "-e", "cmx_bind_address=0.0.0.0", "-e", f"cmx_project_name={project}",
        "-e", "cmx_fast_rerun=false", "-e", f"cmx_project_dir=/tmp/{project}",
        env={"ANSIBLE_VAULT_PASSWORD_FILE": str(CI_VAULT_PASSWORD)},
    )  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert "cmx_bind_address is 0.0.0.0 in ci" in output
    assert "every interface" in output
    assert project_containers(project) == []
