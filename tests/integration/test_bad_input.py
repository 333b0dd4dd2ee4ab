"""Bad input stops the playbook before anything starts, with a message naming the thing and the fix."""

from __future__ import annotations

import json
import socket

from conftest import needs_docker, project_containers, run_playbook

# A project name of its own, so a running ci/dev stack is neither used nor disturbed.
PROJECT = "cmxbadinput"
COMMON = [
    "-i",
    "inventories/ci",
    "dev.yml",
    "-e",
    f"cmx_project_name={PROJECT}",
    "-e",
    f"cmx_project_dir=/tmp/{PROJECT}",
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@needs_docker
def test_taken_port_stops_in_preflight_naming_port_service_and_variable():
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        ports = [
            f"cmx_{name}_port={free_port()}"
            for name in ("pgbouncer", "redis", "s3", "s3_console", "redis_commander")
        ]
        extra = [arg for pair in ports for arg in ("-e", pair)]
        result = run_playbook(*COMMON, "-e", f"cmx_postgres_port={port}", *extra)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert f"port {port}" in output
    assert "postgres" in output
    assert "cmx_postgres_port" in output
    assert "preflight" in output
    assert project_containers(PROJECT) == []


@needs_docker
def test_unknown_storage_engine_is_rejected_by_the_argument_spec():
    result = run_playbook(*COMMON, "-e", "cmx_storage_engine=ceph")
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "cmx_storage_engine" in output
    assert "seaweedfs" in output and "minio" in output
    assert project_containers(PROJECT) == []


@needs_docker
def test_image_that_cannot_be_pulled_names_the_image_source_hint():
    result = run_playbook(
        *COMMON,
        "--tags",
        "images",
        "-e",
        "cmx_image_source=pull",
        "-e",
        "cmx_redis_image=cmx-test.invalid/redis:never",
        timeout=300,
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "cmx-test.invalid/redis:never" in output
    assert "cmx_image_source" in output
    assert project_containers(PROJECT) == []


def test_missing_docker_engine_gives_one_clear_message():
    result = run_playbook(
        *COMMON,
        "--tags",
        "preflight",
        "-e",
        "cmx_docker_install=never",
        env={"DOCKER_HOST": "unix:///nonexistent/docker.sock"},
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "Docker is not ready" in output
    assert "cmx_docker_install" in output


def test_broken_environment_stops_before_anything_starts_listing_every_problem():
    values = {"APP_PORT": "not-a-port", "S3_ENDPOINT": "ftp://localhost:9000", "JWT_EXPIRES_IN": "soon"}
    broken = json.dumps({"env_values": values})
    result = run_playbook(*COMMON, "-e", broken)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    for variable in ("APP_PORT", "S3_ENDPOINT", "JWT_EXPIRES_IN"):
        assert variable in output
    assert "Validate the application" in output
    assert "Start the stack" not in output
    assert project_containers(PROJECT) == []


def test_missing_vault_password_stops_first_in_one_line():
    result = run_playbook(*COMMON, unset=("ANSIBLE_VAULT_PASSWORD_FILE", "ANSIBLE_VAULT_IDENTITY_LIST"))
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "The vault cannot be opened" in output
    assert "vault_cmx_jwt_secret" in output
    assert "--ask-vault-pass" in output and "ANSIBLE_VAULT_PASSWORD_FILE" in output
    assert "Traceback" not in output
    # It is the first task: nothing else ran.
    assert "Fingerprint" not in output and "Validate the application" not in output
    assert project_containers(PROJECT) == []
