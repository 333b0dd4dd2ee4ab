"""cmx_migrate and the real Supabase CLI (pinned in package.json) agree on the migration history.

Needs ``npm ci`` at the repository root (node_modules/.bin/supabase) and the PostgreSQL 15 server binaries.
The CLI runs fully offline: telemetry off, the daily update check pre-answered, HOME in a temp dir, and
it only ever talks to the throwaway cluster on 127.0.0.1.
"""

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from ansible_collections.cleanmatex.infra.plugins.module_utils import migrations
from ansible_collections.cleanmatex.infra.tests.unit.test_migrations_split import SPLIT_CASES

REPO = Path(__file__).resolve().parents[2]
SUPABASE_CLI = REPO / "node_modules" / ".bin" / "supabase"
CLI_VERSION = "2.117.0"

pytestmark = pytest.mark.skipif(
    not SUPABASE_CLI.exists(),
    reason="Supabase CLI not installed: run `npm ci` in the repository root (node_modules/.bin/supabase)",
)

# Executable SQL with every construct in which ';' does not end a statement. Both tools must run it:
# our module in one test, `supabase db push` in another.
TRICKY_MIGRATION = """\
-- Garment notes; a migration written to exercise statement splitting.
create table public.garment_notes (
  id int primary key,
  note text not null default 'n/a; none', -- a default with a semicolon
  "label;with;semicolons" text
);
/* a block comment; /* nested; */ still inside; */
create function public.note_count() returns bigint language plpgsql as $fn$
begin
  -- $$ and ; inside a tagged body
  return (select count(*) from public.garment_notes);
end;
$fn$;
create function public.weight_price(kg numeric) returns numeric language sql immutable
begin atomic
  select round(kg * 2.5, 2);
end;
create rule garment_notes_log as on delete to public.garment_notes
  do also (notify garment_notes; notify laundry);
insert into public.garment_notes (id, note) values
  (1, 'Don''t tumble dry; hang'),
  (2, E'starch\\\\light;'),
  (3, $$collar; cuffs$$);
-- the end
"""


def run_cli(project: Path, *args: str, **extra_env: str) -> subprocess.CompletedProcess:
    home = project / ".home"
    home.mkdir(exist_ok=True)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "SUPABASE_TELEMETRY_DISABLED": "1",
        "DO_NOT_TRACK": "1",
        **extra_env,
    }
    return subprocess.run(
        [str(SUPABASE_CLI), *args], cwd=project, env=env, capture_output=True, text=True, timeout=120
    )


def new_project(root: Path, with_repository_files: bool = True) -> Path:
    """A CLI working directory: a copy of the repository's supabase/ (or an empty one)."""
    project = root / "project"
    if with_repository_files:
        shutil.copytree(
            REPO / "supabase", project / "supabase", ignore=shutil.ignore_patterns(".temp", ".branches")
        )
    else:
        (project / "supabase" / "migrations").mkdir(parents=True)
        shutil.copy(REPO / "supabase" / "config.toml", project / "supabase" / "config.toml")
    # The CLI checks GitHub for a newer release unless this stamp is younger than 10 hours.
    (project / "supabase" / ".temp").mkdir(exist_ok=True)
    (project / "supabase" / ".temp" / "cli-latest").write_text(f"v{CLI_VERSION}")
    return project


def listed_migrations(output: str) -> dict[str, str]:
    """`supabase migration list` table as {local or remote version: remote version ('' if not applied)}."""
    rows = {}
    for line in output.splitlines():
        cells = [cell.strip().strip("`") for cell in line.split("|")]
        if len(cells) == 3 and (cells[0] + cells[1]).isdigit():
            rows[cells[0] or cells[1]] = cells[1]
    return rows


def our_migrate(fresh_db, project: Path, **options) -> migrations.MigrationResult:
    connection = migrations.connect(fresh_db.params)
    try:
        return migrations.migrate(connection, str(project / "supabase" / "migrations"), **options)
    finally:
        connection.close()


def test_cli_version_is_the_pinned_one(tmp_path):
    completed = run_cli(new_project(tmp_path), "--version")
    assert completed.stdout.strip() == CLI_VERSION


def test_cli_sees_migrations_applied_by_our_module(fresh_db, tmp_path):
    project = new_project(tmp_path)
    (project / "supabase" / "migrations" / "20250602000000_tricky.sql").write_text(TRICKY_MIGRATION)
    seed_file = project / "supabase" / "seed.sql"
    result = our_migrate(fresh_db, project, seed=True, seed_file=str(seed_file))
    assert not result.failed, result.msg
    local_versions = [name.split("_")[0] for name in result.applied]

    listing = run_cli(project, "migration", "list", "--db-url", fresh_db.url)
    assert listing.returncode == 0, listing.stderr
    assert listed_migrations(listing.stdout) == {version: version for version in local_versions}

    # Nothing left to push, and the seed our module recorded is not loaded again.
    push = run_cli(project, "db", "push", "--db-url", fresh_db.url, "--include-seed", "--yes")
    assert push.returncode == 0, push.stderr
    assert "Applying migration" not in push.stderr
    assert "Seeding data" not in push.stderr
    assert fresh_db.query("select count(*) from public.garment_notes") == [(3,)]
    assert fresh_db.query("select note from public.garment_notes where id = 2") == [("starch\\light;",)]


def test_our_module_sees_migrations_pushed_by_the_cli(fresh_db, tmp_path):
    project = new_project(tmp_path)
    (project / "supabase" / "migrations" / "20250602000000_tricky.sql").write_text(TRICKY_MIGRATION)
    push = run_cli(project, "db", "push", "--db-url", fresh_db.url, "--include-seed", "--yes")
    assert push.returncode == 0, push.stderr
    assert "Seeding data from supabase/seed.sql" in push.stderr
    files = sorted(path.name for path in (project / "supabase" / "migrations").glob("*.sql"))

    result = our_migrate(fresh_db, project, seed=True, seed_file=str(project / "supabase" / "seed.sql"))

    assert not result.failed, result.msg
    assert result.changed is False
    assert result.applied == []
    assert result.already_applied == len(files)
    assert result.drift == []  # the CLI recorded its own split; the content is what counts
    assert result.seed_applied is False
    assert fresh_db.query("select count(*) from public.orders") == [(5,)]


def test_rows_recorded_by_the_cli_are_not_drift(fresh_db, tmp_path):
    """`migration repair --status applied` records the CLI's split of each file without running it.

    Its splitter cuts some of these files elsewhere than ours; that must not count as drift, while a
    real edit afterwards must.
    """
    project = new_project(tmp_path, with_repository_files=False)
    migrations_dir = project / "supabase" / "migrations"
    versions = []
    for number, (sql, _) in enumerate(SPLIT_CASES.values(), start=1):
        version = f"2024010100{number:04d}"
        (migrations_dir / f"{version}_case.sql").write_text(sql)
        versions.append(version)

    repair = run_cli(
        project, "migration", "repair", "--status", "applied", *versions, "--db-url", fresh_db.url
    )
    assert repair.returncode == 0, repair.stderr
    recorded = dict(fresh_db.query("select version, statements from supabase_migrations.schema_migrations"))
    assert sorted(recorded) == versions
    local, _ = migrations.discover_migrations(str(migrations_dir))
    ours = {migration.version: migration.statement_texts for migration in local}
    assert any(recorded[version] != ours[version] for version in versions), "no case where the splits differ"

    result = our_migrate(fresh_db, project)
    assert not result.failed, result.msg
    assert result.drift == []
    assert result.changed is False
    assert result.applied == []
    assert result.already_applied == len(versions)

    edited = migrations_dir / f"{versions[0]}_case.sql"
    edited.write_text(edited.read_text().replace("garments", "garment_types"))
    result = our_migrate(fresh_db, project, fail_on_drift=False)
    assert [item["version"] for item in result.drift] == [versions[0]]
    assert result.applied == []


def cli_status_without_docker(project: Path) -> str:
    """`supabase status` validates all of config.toml, then looks for containers: there is no Docker here."""
    completed = run_cli(project, "status", DOCKER_HOST=f"unix://{project}/.no-docker.sock")
    return completed.stdout + completed.stderr


def test_config_toml_passes_the_cli_validation(tmp_path):
    output = cli_status_without_docker(new_project(tmp_path))
    assert "Cannot connect to the Docker daemon" in output, output
    assert "WARN" not in output, output


def test_cli_validation_does_reject_a_bad_config(tmp_path):
    project = new_project(tmp_path)
    config = project / "supabase" / "config.toml"
    config.write_text(config.read_text().replace("port = 54324", "port = 0"))
    output = cli_status_without_docker(project)
    assert "Missing required field in config: local_smtp.port" in output, output
