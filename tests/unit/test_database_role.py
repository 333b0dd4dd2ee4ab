"""The database role for real (ansible-playbook on localhost, the throwaway PostgreSQL cluster): on a remote
target the migrations folder holds exactly the controller's files (issue 16).

The remote case is simulated on localhost: ``__database_local=false`` makes the role copy into
``database_remote_dir`` (a temporary folder) and read it from there, as it does over SSH.
Before the fix, copy never deleted: a renamed migration stayed under its old name too (a broken one was
retried forever, a good one applied twice) and a deleted one was still there, so its drift went unseen.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ANSIBLE_PLAYBOOK = REPO / ".venv" / "bin" / "ansible-playbook"

pytestmark = pytest.mark.skipif(
    shutil.which("ansible-playbook", path=str(ANSIBLE_PLAYBOOK.parent)) is None,
    reason="needs the repository's .venv (./bootstrap.sh)",
)

PLAY = """\
- name: Database
  hosts: all
  gather_facts: false
  roles:
    - role: cleanmatex.infra.database
"""
A = "20240101000000_a.sql"
B = "20240102000000_b.sql"
B_RENAMED = "20240103000000_b.sql"


def run_role(tmp_path: Path, fresh_db, controller: Path, remote: Path) -> subprocess.CompletedProcess:
    play = tmp_path / "play.yml"
    play.write_text(PLAY, encoding="utf-8")
    extra = {
        "ansible_connection": "local",
        "ansible_python_interpreter": sys.executable,
        "__database_local": False,  # take the remote path: copy into database_remote_dir
        "cmx_environment": "staging",  # no seed
        "database_supabase_dir": str(controller),
        "database_remote_dir": str(remote),
        "cmx_postgres_port": fresh_db.port,
        # The role runs the migrations as the migration role; the superuser stands in for it here.
        "cmx_postgres_migration_user": fresh_db.user,
        "cmx_postgres_migration_password": fresh_db.password,
        "cmx_postgres_db": fresh_db.name,
    }
    env = {
        "PATH": f"{ANSIBLE_PLAYBOOK.parent}:/usr/bin:/bin",
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_FORCE_COLOR": "0",
    }
    return subprocess.run(
        [str(ANSIBLE_PLAYBOOK), "-i", "localhost,", str(play), "-e", json.dumps(extra)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )


def recap(result) -> dict:
    match = re.search(r"ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", result.stdout)
    assert match, result.stdout + result.stderr
    return dict(zip(("ok", "changed", "unreachable", "failed"), map(int, match.groups()), strict=True))


def applied_versions(fresh_db) -> list[str]:
    return [
        row[0]
        for row in fresh_db.query("select version from supabase_migrations.schema_migrations order by 1")
    ]


def test_remote_migrations_folder_follows_renames_and_deletions(fresh_db, tmp_path):
    controller = tmp_path / "controller" / "supabase"
    migrations_dir = controller / "migrations"
    migrations_dir.mkdir(parents=True)
    (controller / "seed.sql").write_text("select 1;\n")
    remote = tmp_path / "remote" / "supabase"
    (migrations_dir / A).write_text("create table public.a (id int);\n")
    (migrations_dir / B).write_text("create table public.b (id int);\nselect 1/0;\n")

    # A broken migration stops the run; A stays applied.
    first = run_role(tmp_path, fresh_db, controller, remote)
    assert recap(first)["failed"] == 1
    assert "division by zero" in first.stdout
    assert applied_versions(fresh_db) == ["20240101000000"]

    # The fix renames it (new timestamp): the old name must not reach the applied set again.
    (migrations_dir / B).unlink()
    (migrations_dir / B_RENAMED).write_text("create table public.b (id int);\n")
    second = run_role(tmp_path, fresh_db, controller, remote)
    assert recap(second)["failed"] == 0, second.stdout + second.stderr
    assert sorted(path.name for path in (remote / "migrations").iterdir()) == [A, B_RENAMED]
    assert applied_versions(fresh_db) == ["20240101000000", "20240103000000"]

    # In sync: nothing to copy, nothing to remove, nothing to apply.
    again = run_role(tmp_path, fresh_db, controller, remote)
    assert recap(again)["changed"] == 0, again.stdout

    # A deleted applied migration is gone remotely too, so its drift is seen (and fails by default).
    (migrations_dir / B_RENAMED).unlink()
    third = run_role(tmp_path, fresh_db, controller, remote)
    assert recap(third)["failed"] == 1
    assert "migration drift, nothing applied: 20240103000000" in third.stdout
    assert sorted(path.name for path in (remote / "migrations").iterdir()) == [A]
    assert fresh_db.password not in third.stdout + third.stderr
