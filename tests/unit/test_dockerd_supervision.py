"""dockerd is run so that something restarts it (issue 17, item 7): systemd's service on servers, a background
start only in dev/ci, refused elsewhere; its log, when we write one, is rotated in place."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from ansible_collections.cleanmatex.infra.plugins.module_utils.docker_host import dockerd_plan, rotate_log

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("environment", ["dev", "ci", "staging", "production", ""])
def test_systemd_hosts_use_the_package_service(environment):
    assert dockerd_plan(False, True, False, environment, "h1")["action"] == "systemd"
    # Running but not enabled at boot: enable it.
    assert dockerd_plan(True, True, False, environment, "h1")["action"] == "systemd"
    assert dockerd_plan(True, True, True, environment, "h1")["action"] == "none"


@pytest.mark.parametrize("environment", ["dev", "ci"])
def test_without_systemd_dev_and_ci_start_it_in_the_background(environment):
    assert dockerd_plan(False, False, None, environment, "laptop")["action"] == "background"


@pytest.mark.parametrize("environment", ["staging", "production", ""])
def test_without_systemd_other_environments_are_refused_naming_host_and_fix(environment):
    plan = dockerd_plan(False, False, None, environment, "stage-1.example")
    assert plan["action"] == "refuse"
    message = plan["message"]
    assert "dockerd is not running on stage-1.example and this host has no systemd" in message
    assert "systemctl enable --now docker" in message and "cmx_environment dev or ci" in message
    if environment:
        assert f"in {environment} environment" in message


def test_a_running_engine_without_systemd_is_left_alone():
    """We did not start it, so we do not judge its supervisor."""
    assert dockerd_plan(True, False, None, "production", "h")["action"] == "none"


def test_the_role_starts_dockerd_only_as_planned():
    """install.yml's start tasks follow the plan; a refused plan stops before anything is installed."""
    tasks = yaml.safe_load((ROOT / "roles" / "docker_host" / "tasks" / "install.yml").read_text())
    by_name = {task["name"]: task for task in tasks}
    names = [task["name"] for task in tasks]
    refuse = by_name["Stop when dockerd would run without a supervisor"]
    assert "dockerd_plan.action == 'refuse'" in refuse["when"]
    assert names.index(refuse["name"]) < names.index(
        "Install the Docker engine and the image build tools from the distribution's packages"
    )
    background = by_name["Start dockerd in the background (no systemd on this host)"]
    assert "__docker_host.dockerd_plan.action == 'background'" in background["when"]
    systemd = by_name["Start dockerd with systemd"]
    assert "__docker_host.dockerd_plan.action == 'systemd'" in systemd["when"]
    assert systemd["ansible.builtin.systemd_service"]["enabled"] is True


def _log(tmp_path: Path, size: int) -> Path:
    path = tmp_path / "dockerd.log"
    path.write_bytes(b"x" * size)
    return path


def test_small_log_is_left_alone(tmp_path):
    path = _log(tmp_path, 100)
    assert rotate_log(str(path), 1000, 3) is False
    assert path.stat().st_size == 100 and not (tmp_path / "dockerd.log.1").exists()


def test_missing_log_is_no_error(tmp_path):
    assert rotate_log(str(tmp_path / "none.log"), 10, 3) is False


def test_large_log_is_copied_truncated_in_place_and_old_copies_capped(tmp_path):
    path = _log(tmp_path, 2000)
    inode = path.stat().st_ino
    for round_number in range(5):
        path.write_bytes(str(round_number).encode() * 2000)
        assert rotate_log(str(path), 1000, 3) is True
        assert path.stat().st_ino == inode and path.stat().st_size == 0
    kept = sorted(p.name for p in tmp_path.iterdir())
    assert kept == ["dockerd.log", "dockerd.log.1", "dockerd.log.2", "dockerd.log.3"]
    assert (tmp_path / "dockerd.log.1").read_bytes()[:1] == b"4"
    assert (tmp_path / "dockerd.log.3").read_bytes()[:1] == b"2"


def test_a_process_appending_keeps_writing_to_the_start_after_rotation(tmp_path):
    """The writer opened the log with O_APPEND (`>> log`, as the role starts dockerd): after the truncation
    its next line lands at offset 0, no hole of the old size."""
    path = tmp_path / "dockerd.log"
    # The child writes each line of its stdin to the log, then acknowledges it on stderr.
    child = (
        "import sys\nfor line in sys.stdin:\n"
        "    sys.stdout.write(line); sys.stdout.flush(); sys.stderr.write('w\\n'); sys.stderr.flush()"
    )
    log_fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    writer = subprocess.Popen(
        [sys.executable, "-c", child], stdin=subprocess.PIPE, stdout=log_fd, stderr=subprocess.PIPE, text=True
    )
    os.close(log_fd)
    try:
        writer.stdin.write("a" * 3000 + "\n")
        writer.stdin.flush()
        assert writer.stderr.readline() == "w\n"
        assert rotate_log(str(path), 1000, 2) is True
        writer.stdin.write("after rotation\n")
        writer.stdin.flush()
        assert writer.stderr.readline() == "w\n"
    finally:
        writer.stdin.close()
        writer.wait(timeout=10)
    assert path.read_text() == "after rotation\n"
    assert (tmp_path / "dockerd.log.1").read_text() == "a" * 3000 + "\n"
