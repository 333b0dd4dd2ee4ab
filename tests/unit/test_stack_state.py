"""Fast re-run decision: same fingerprint and every container healthy, or a reason to converge."""

from __future__ import annotations

import os
import subprocess

import pytest
from ansible_collections.cleanmatex.infra.plugins.filter.fingerprint import tree_hash
from ansible_collections.cleanmatex.infra.plugins.module_utils import stack_state
from ansible_collections.cleanmatex.infra.plugins.module_utils.stack_state import (
    STAMP,
    _states_from_api,
    _states_from_cli,
    container_states,
    docker_socket_path,
    read_stamp,
    stamp_content,
    task_result,
    why_not_up_to_date,
)

needs_engine = pytest.mark.skipif(
    not os.path.exists("/var/run/docker.sock")
    or subprocess.run(["docker", "info"], capture_output=True).returncode != 0,
    reason="needs a Docker engine on /var/run/docker.sock",
)

HEALTHY = {"cmx-postgres": ("running", "healthy"), "cmx-redis": ("running", "healthy")}


def test_no_stamp_means_a_full_converge(tmp_path):
    assert why_not_up_to_date(str(tmp_path), "abc", ["cmx-postgres"], HEALTHY) == [
        f"no record of a completed converge in {tmp_path}"
    ]


def test_same_fingerprint_and_healthy_containers_is_up_to_date(tmp_path):
    (tmp_path / STAMP).write_text(stamp_content("abc"))
    assert why_not_up_to_date(str(tmp_path), "abc", ["cmx-postgres", "cmx-redis"], HEALTHY) == []


def test_changed_fingerprint_and_unhealthy_or_missing_containers_are_reasons(tmp_path):
    (tmp_path / STAMP).write_text(stamp_content("abc"))
    states = {"cmx-postgres": ("running", "starting"), "cmx-redis": ("exited", "unhealthy")}
    reasons = why_not_up_to_date(str(tmp_path), "xyz", ["cmx-postgres", "cmx-redis", "cmx-health"], states)
    assert reasons == [
        "the inventory or the collection changed since the last converge",
        "cmx-postgres is starting",
        "cmx-redis is exited",
        "cmx-health is missing",
    ]


def test_tree_hash_follows_content_and_paths_not_mtimes(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "f.txt").write_text("one")
    first = tree_hash([str(tmp_path / "a")])
    (tmp_path / "a" / "f.txt").write_text("one")
    assert tree_hash([str(tmp_path / "a")]) == first
    (tmp_path / "a" / "f.txt").write_text("two")
    assert tree_hash([str(tmp_path / "a")]) != first
    (tmp_path / "a" / "f.txt").write_text("one")
    (tmp_path / "a" / "f.txt").rename(tmp_path / "a" / "g.txt")
    assert tree_hash([str(tmp_path / "a")]) != first


def test_the_socket_is_used_only_where_the_cli_would_use_it(tmp_path):
    home = {"HOME": str(tmp_path)}
    assert docker_socket_path(home) == "/var/run/docker.sock"
    assert docker_socket_path({**home, "DOCKER_HOST": "unix:///run/user/1000/docker.sock"}) == (
        "/run/user/1000/docker.sock"
    )
    assert docker_socket_path({**home, "DOCKER_HOST": "tcp://127.0.0.1:2375"}) is None
    assert docker_socket_path({**home, "DOCKER_CONTEXT": "desktop-linux"}) is None
    (tmp_path / ".docker").mkdir()
    (tmp_path / ".docker" / "config.json").write_text('{"currentContext": "colima"}')
    assert docker_socket_path(home) is None
    (tmp_path / ".docker" / "config.json").write_text('{"currentContext": "default"}')
    assert docker_socket_path(home) == "/var/run/docker.sock"


@needs_engine
def test_the_api_and_the_cli_see_the_same_states():
    names = ["cmx-ci-unit-no-such-container"]
    running = subprocess.run(
        ["docker", "ps", "--format", "{{.Names}}"], capture_output=True, text=True, check=True
    ).stdout.split()
    names += running[:3]
    path = docker_socket_path()
    assert path is not None, "this machine's engine answers on a unix socket"
    assert _states_from_api(path, names, 10) == _states_from_cli(names, 10)


def test_a_socket_that_does_not_answer_falls_back_to_the_cli(tmp_path, monkeypatch):
    dead = tmp_path / "dead.sock"
    dead.write_text("")  # exists, but nothing listens
    monkeypatch.setenv("DOCKER_HOST", f"unix://{dead}")
    calls = []
    monkeypatch.setattr(stack_state, "_states_from_cli", lambda names, timeout: calls.append(names) or {})
    assert container_states(["cmx-x"]) == {}
    assert calls == [["cmx-x"]]


def test_a_recorded_converge_hands_its_summary_to_an_up_to_date_check(tmp_path, monkeypatch):
    monkeypatch.setattr(
        stack_state, "container_states", lambda names: dict.fromkeys(names, ("running", "healthy"))
    )
    params = {"project_dir": str(tmp_path), "fingerprint": "abc", "containers": ["cmx-redis"], "record": True,
              "summary": ["CleanMateX dev stack is healthy", "Redis  redis://localhost:6379"]}  # fmt: skip
    assert task_result(params, check_mode=False)["changed"] is True
    assert oct((tmp_path / STAMP).stat().st_mode & 0o777) == "0o600"
    assert read_stamp(str(tmp_path))["summary"] == params["summary"]
    check = task_result({**params, "record": False, "summary": []}, check_mode=False)
    assert check["up_to_date"] is True and check["summary"] == params["summary"]
    changed = task_result({**params, "record": False, "fingerprint": "xyz"}, check_mode=False)
    assert changed["up_to_date"] is False and changed["summary"] == []


def test_an_unreadable_record_is_no_record(tmp_path):
    (tmp_path / STAMP).write_text("[1, 2]")
    assert read_stamp(str(tmp_path)) == {}
    (tmp_path / STAMP).write_text("{not json")
    assert why_not_up_to_date(str(tmp_path), "abc", [], {}) == [
        f"no record of a completed converge in {tmp_path}"
    ]


def test_the_code_a_converge_reads_is_defined_once(tmp_path):
    from ansible_collections.cleanmatex.infra.plugins.filter.fingerprint import code_hash
    from ansible_collections.cleanmatex.infra.plugins.module_utils import launch_state

    assert set(stack_state.CODE_TREES) <= set(launch_state.TREES)
    for tree in (*stack_state.CODE_TREES, "docs"):
        (tmp_path / tree).mkdir()
        (tmp_path / tree / "f").write_text("1")
    first = code_hash(str(tmp_path))
    assert first == tree_hash([str(tmp_path / tree) for tree in stack_state.CODE_TREES])
    (tmp_path / "docs" / "f").write_text("2")  # not read by a converge
    assert code_hash(str(tmp_path)) == first
    (tmp_path / "plugins" / "f").write_text("2")
    assert code_hash(str(tmp_path)) != first
