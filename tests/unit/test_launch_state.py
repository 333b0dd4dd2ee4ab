"""The instant no-op of a plain `bin/cmx up` (plugins/module_utils/launch_state.py): it answers only when
every byte it could read is unchanged, the converge stamp is the one it recorded, the inventory allows the
fast re-run and every recorded container is running and healthy; anything else sends the run to ansible-
playbook."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from ansible_collections.cleanmatex.infra.plugins.module_utils import launch_state, stack_state

HEALTHY = {
    "p-postgres": ("running", "healthy"),
    "p-redis": ("running", "healthy"),
    "p-tools": ("exited", "none"),
}
ENV = {"HOME": "/root", "CMX_X": "1", "PATH": "/usr/bin"}


@pytest.fixture
def checkout(tmp_path: Path) -> tuple[Path, Path]:
    root = tmp_path / "repo"
    for tree in launch_state.TREES:
        (root / tree).mkdir(parents=True)
    (root / "inventories" / "dev.yml").write_text("cmx_a: 1\n")
    (root / "roles" / "main.yml").write_text("- debug: {}\n")
    (root / "dev.yml").write_text("- import_playbook: site.yml\n")
    project = root / ".cmx"
    project.mkdir()
    (project / "docker-compose.yml").write_text(
        "services:\n  postgres:\n    container_name: p-postgres\n  redis:\n    container_name: 'p-redis'\n"
        "  tools:\n    container_name: p-tools\n"
    )
    (project / stack_state.STAMP).write_text(stack_state.stamp_content("f", ["line 1", "line 2"]))
    return root, project


def test_a_recorded_unchanged_healthy_stack_needs_no_converge(checkout):
    root, project = checkout
    assert launch_state.why_not(str(root), str(project), ENV, HEALTHY) == [
        f"no record of a plain bin/cmx up in {project}"
    ]
    assert launch_state.record(str(root), str(project), ENV, HEALTHY)
    record = json.loads((project / launch_state.RECORD).read_text())
    # Only the containers running at the time are expected (a profile that is off is not).
    assert record["containers"] == ["p-postgres", "p-redis"]
    assert stat.S_IMODE(os.stat(project / launch_state.RECORD).st_mode) == 0o600
    assert launch_state.why_not(str(root), str(project), ENV, HEALTHY) == []
    assert launch_state.summary(str(project)) == ["line 1", "line 2"]
    # PATH is not something a converge reads: changing it keeps the record valid.
    assert launch_state.why_not(str(root), str(project), {**ENV, "PATH": "/bin"}, HEALTHY) == []


def fast_rerun_off(root: Path) -> None:
    folder = root / "inventories" / "dev" / "group_vars"
    folder.mkdir(parents=True)
    (folder / "stack.yml").write_text("cmx_a: 1\ncmx_fast_rerun: false  # always converge\n")


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda root, project: (root / "inventories" / "dev.yml").write_text("cmx_a: 2\n"), "changed"),
        (lambda root, project: (root / "roles" / "new.yml").write_text(""), "changed"),
        (lambda root, project: (root / "dev.yml").write_text("# edited\n"), "changed"),
        (
            lambda root, project: (project / stack_state.STAMP).write_text(
                stack_state.stamp_content("g", [])
            ),
            "a converge ran since by other means",
        ),
        (lambda root, project: fast_rerun_off(root), "cmx_fast_rerun"),
        (lambda root, project: (project / stack_state.STAMP).unlink(), "none completed"),
    ],
)
def test_any_change_sends_the_run_to_ansible(checkout, change, reason):
    root, project = checkout
    launch_state.record(str(root), str(project), ENV, HEALTHY)
    change(root, project)
    reasons = launch_state.why_not(str(root), str(project), ENV, HEALTHY)
    assert any(reason in text for text in reasons), reasons


def test_environment_and_container_health_count(checkout):
    root, project = checkout
    launch_state.record(str(root), str(project), ENV, HEALTHY)
    assert launch_state.why_not(str(root), str(project), {**ENV, "ANSIBLE_VAULT_PASSWORD_FILE": "x"}, HEALTHY)
    assert launch_state.why_not(str(root), str(project), {**ENV, "CMX_X": "2"}, HEALTHY)
    sick = {**HEALTHY, "p-redis": ("running", "unhealthy")}
    assert launch_state.why_not(str(root), str(project), ENV, sick) == ["p-redis is unhealthy"]
    gone = {"p-postgres": ("running", "healthy")}
    assert launch_state.why_not(str(root), str(project), ENV, gone) == ["p-redis is missing"]


def test_no_converge_stamp_no_record(checkout):
    root, project = checkout
    (project / stack_state.STAMP).unlink()
    assert not launch_state.record(str(root), str(project), ENV, HEALTHY)
    assert not (project / launch_state.RECORD).exists()


def test_the_script_runs_on_a_bare_python_and_says_why_it_converges():
    """bin/cmx runs it as `python3 -S` (no site-packages): it must import with the standard library only."""
    repo = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, "-S", str(repo / "bin" / "cmx-up-check"), "-v"],
        capture_output=True, text=True, timeout=60, env={**os.environ, "CMX_TEST_NONCE": os.urandom(4).hex()},
    )  # fmt: skip
    # A new CMX_* variable changes the fingerprint: whatever the checkout's state, the answer is "converge".
    assert done.returncode == 1, done.stdout + done.stderr
    assert "ModuleNotFoundError" not in done.stderr and "Traceback" not in done.stderr
