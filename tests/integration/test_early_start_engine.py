"""Early start against the real engine (plugins/module_utils/early_start.py): a recorded, unchanged stack that
is down starts at once and is healthy when the step returns; a changed file, a taken host port, a missing
image or a volume of another PostgreSQL major start nothing (the last one stops the converge with the
guard's message)."""

from __future__ import annotations

import socket
import subprocess
import uuid

import pytest
from ansible_collections.cleanmatex.infra.plugins.module_utils import early_start, stack_state
from conftest import needs_docker, project_containers

pytestmark = needs_docker


def _docker(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=180)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def image(built_postgres_image) -> str:
    return built_postgres_image


@pytest.fixture
def stack(tmp_path, image):
    """A one-service project, recorded as a converge records it; (project dir, name, recipe, port)."""
    name = f"cmxtest-early-{uuid.uuid4().hex[:8]}"
    port = _free_port()
    (tmp_path / "docker-compose.yml").write_text(
        f"name: {name}\n"
        "services:\n"
        "  postgres:\n"
        f"    image: {image}\n"
        f"    container_name: {name}-postgres\n"
        "    entrypoint: [sleep, infinity]\n"
        "    init: true\n"
        f"    ports: ['127.0.0.1:{port}:5432']\n"
        "    volumes: ['postgres_data:/var/lib/postgresql/data']\n"
        "    healthcheck: {test: [CMD, 'true'], interval: 1s, start_period: 0s}\n"
        "volumes:\n  postgres_data: {}\n"
    )
    recipe = {
        "profiles": [],
        "images": [image],
        "project": name,
        "ports": [{"service": "postgres", "port": port, "bind_address": "127.0.0.1", "variable": "p_port"}],
        "postgres": {
            "volume": f"{name}_postgres_data",
            "image": image,
            "major": 17,
            "container": f"{name}-postgres",
        },
        "redis": {},
        "wal_volume": "",
    }
    record = {
        "project_dir": str(tmp_path),
        "fingerprint": "f",
        "record": True,
        "summary": [],
        "start": recipe,
    }
    stack_state.task_result(record, check_mode=False)
    yield tmp_path, name, recipe, port
    subprocess.run(
        ["docker", "compose", "--project-directory", str(tmp_path), "down", "-v", "--timeout", "1"],
        capture_output=True,
        timeout=120,
    )


def _compare(project_dir, name: str) -> dict:
    params = {
        "project_dir": str(project_dir), "fingerprint": "f", "containers": [f"{name}-postgres"],
        "record": False, "summary": [], "start": {}, "early_start": True, "timeout": 60,
    }  # fmt: skip
    return stack_state.task_result(params, check_mode=False)


def test_an_unchanged_stack_that_is_down_starts_healthy_at_once(stack):
    project_dir, name, _, _ = stack
    result = _compare(project_dir, name)
    assert result["early_started"] and result["changed"] and not result["up_to_date"], result
    assert result["warnings"] == []
    assert stack_state.container_states([f"{name}-postgres"]) == {f"{name}-postgres": ("running", "healthy")}
    # Now it is what the record says: the next check finds it up to date and starts nothing.
    again = _compare(project_dir, name)
    assert again["up_to_date"] and not again["early_started"]


def test_a_changed_file_starts_nothing(stack):
    project_dir, name, _, _ = stack
    compose = project_dir / "docker-compose.yml"
    compose.write_text(compose.read_text().replace("interval: 1s", "interval: 2s"))
    result = _compare(project_dir, name)
    assert not result["early_started"] and not result["changed"]
    assert result["early_start"].startswith(f"not started early: the files in {project_dir} differ")
    assert project_containers(name) == []


def test_a_taken_host_port_starts_nothing(stack):
    project_dir, name, _, port = stack
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", port))
        holder.listen()
        result = _compare(project_dir, name)
    assert not result["early_started"] and "a host port is taken" in result["early_start"]
    assert project_containers(name) == []


def test_a_missing_image_starts_nothing(stack):
    project_dir, name, recipe, _ = stack
    gone = {**recipe, "images": [*recipe["images"], f"cmx/none:{uuid.uuid4().hex[:8]}"]}
    stamp = stack_state.read_stamp(str(project_dir))
    (project_dir / stack_state.STAMP).write_text(stack_state.stamp_content("f", [], gone, stamp["rendered"]))
    result = _compare(project_dir, name)
    assert not result["early_started"] and "an image of the last converge is gone" in result["early_start"]
    assert project_containers(name) == []


def test_a_volume_of_another_major_is_refused_with_nothing_started(stack, image):
    project_dir, name, recipe, _ = stack
    volume = recipe["postgres"]["volume"]
    assert _docker("volume", "create", volume).returncode == 0
    done = _docker(
        "run", "--rm", "--network", "none", "--user", "root", "--entrypoint", "sh",
        "--mount", f"type=volume,source={volume},target=/d", image, "-c", "printf '15\\n' > /d/PG_VERSION",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    result = _compare(project_dir, name)
    assert result["failed"] and not result["early_started"]
    assert "written by PostgreSQL 15" in result["msg"] and "Nothing was started" in result["msg"]
    assert project_containers(name) == []
    stamp = stack_state.read_stamp(str(project_dir))
    assert early_start.rendered_digest(str(project_dir)) == stamp["rendered"]
