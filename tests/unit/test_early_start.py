"""Early start (plugins/module_utils/early_start.py): which files the record's digest covers, and when the
recorded recipe may start the stack (same fingerprint, same files, a recipe). Starting it against the real
engine: tests/integration/test_early_start_engine.py."""

from __future__ import annotations

import json
import os

import pytest
from ansible_collections.cleanmatex.infra.plugins.module_utils import early_start, stack_state

RECIPE = {"profiles": [], "images": ["cmx/x:1"], "postgres": {}, "redis": {}, "ports": [], "wal_volume": ""}


@pytest.fixture
def project(tmp_path):
    (tmp_path / "docker-compose.yml").write_text("services: {}\n")
    (tmp_path / ".env").write_text("CMX_PROJECT_NAME=p\n")
    (tmp_path / "secrets" / "pgbouncer").mkdir(parents=True)
    (tmp_path / "secrets" / "pgbouncer" / "userlist.txt").write_text('"app" "SCRAM-SHA-256$x"\n')
    for name in ("app", "build", "backups"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "f").write_text("1")
    return tmp_path


def test_the_digest_covers_every_rendered_file_content_and_mode(project):
    before = early_start.rendered_digest(str(project))
    userlist = project / "secrets" / "pgbouncer" / "userlist.txt"
    userlist.write_text('"app" "SCRAM-SHA-256$y"\n')
    changed_content = early_start.rendered_digest(str(project))
    assert changed_content != before
    os.chmod(userlist, 0o600)
    assert early_start.rendered_digest(str(project)) not in (before, changed_content)
    (project / "pgbouncer").mkdir()
    (project / "pgbouncer" / "pgbouncer.ini").write_text("[pgbouncer]\n")
    assert early_start.rendered_digest(str(project)) != changed_content


def test_the_digest_leaves_out_records_env_files_build_contexts_and_backups(project):
    before = early_start.rendered_digest(str(project))
    for name in ("app", "build", "backups"):
        (project / name / "f").write_text("2")
        (project / name / "new").write_text("3")
    (project / stack_state.STAMP).write_text("{}")
    (project / ".launched").write_text("{}")
    assert early_start.rendered_digest(str(project)) == before
    # The same names below the top are rendered files like any other.
    (project / "secrets" / "app").write_text("x")
    assert early_start.rendered_digest(str(project)) != before


def test_a_record_with_its_recipe_lets_the_same_inputs_and_files_start(project):
    result = stack_state.task_result(
        {"project_dir": str(project), "fingerprint": "f1", "record": True, "summary": ["s"], "start": RECIPE},
        check_mode=False,
    )
    assert result["changed"]
    stamp = stack_state.read_stamp(str(project))
    assert stamp["start"] == RECIPE and stamp["rendered"] == early_start.rendered_digest(str(project))
    assert early_start.why_not(stamp, "f1", str(project)) == ""


def test_changed_inputs_changed_files_or_no_recipe_do_not_start(project):
    (project / stack_state.STAMP).write_text(
        stack_state.stamp_content("f1", [], RECIPE, early_start.rendered_digest(str(project)))
    )
    stamp = stack_state.read_stamp(str(project))
    assert early_start.why_not(stamp, "f2", str(project)) == "the inventory or the collection changed"
    (project / "docker-compose.yml").write_text("services: {x: {}}\n")
    assert early_start.why_not(stamp, "f1", str(project)).startswith(f"the files in {project} differ")
    # A record written before early starts existed (or by a converge that did not start the stack).
    old = json.loads(stack_state.stamp_content("f1", ["s"]))
    assert "start" not in old and "rendered" not in old
    assert early_start.why_not(old, "f1", str(project)) == "the last converge recorded no start recipe"


def test_an_early_start_is_off_unless_asked_and_never_in_check_mode(project, monkeypatch):
    (project / stack_state.STAMP).write_text(
        stack_state.stamp_content("f1", [], RECIPE, early_start.rendered_digest(str(project)))
    )
    calls = []
    monkeypatch.setattr(
        early_start, "start", lambda *args: calls.append(args) or {"started": True, "msg": ""}
    )
    monkeypatch.setattr(stack_state, "container_states", lambda names: {})
    params = {
        "project_dir": str(project), "fingerprint": "f1", "containers": ["p-postgres"], "record": False,
        "summary": [], "start": {}, "timeout": 30,
    }  # fmt: skip
    for early, check_mode in ((False, False), (True, True)):
        result = stack_state.task_result({**params, "early_start": early}, check_mode)
        assert not result["up_to_date"] and not result["early_started"] and not result["changed"]
    assert calls == []
    result = stack_state.task_result({**params, "early_start": True}, False)
    assert result["early_started"] and result["changed"] and calls
