"""A seed file that is missing stops cmx_migrate before anything is applied (issue 16, item 12).

The fault is injected against a real server (the throwaway cluster): a project with pending migrations,
the seed asked for, no seed.sql. The promise: the run fails naming the missing file, and neither a
migration nor a history row reached the database.
"""

from __future__ import annotations

from ansible_collections.cleanmatex.infra.plugins.modules import cmx_migrate
from ansible_collections.cleanmatex.infra.tests.module_main import run_main


def test_missing_seed_file_fails_before_any_migration(fresh_db, tmp_path):
    migrations_dir = tmp_path / "supabase" / "migrations"
    migrations_dir.mkdir(parents=True)
    (migrations_dir / "20240101000000_widgets.sql").write_text("create table public.widgets (id int);\n")
    seed_file = tmp_path / "supabase" / "seed.sql"  # never written

    result = run_main(
        cmx_migrate,
        {
            "connection": fresh_db.params,
            "migrations_dir": str(migrations_dir),
            "seed_file": str(seed_file),
            "seed": True,
        },
    )

    assert result.get("failed"), result
    assert result["msg"] == f"seed requested but the seed file does not exist: {seed_file}"
    assert fresh_db.query("select to_regclass('public.widgets')") == [(None,)]
    assert fresh_db.query("select to_regclass('supabase_migrations.schema_migrations')") == [(None,)]
