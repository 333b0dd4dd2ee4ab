"""module_utils/migrations.py against a real PostgreSQL 15 (throwaway cluster on 127.0.0.1)."""

from pathlib import Path

import psycopg2
import pytest
from ansible_collections.cleanmatex.infra.plugins.module_utils import migrations

REPO = Path(__file__).resolve().parents[2]
REPO_MIGRATIONS = REPO / "supabase" / "migrations"
REPO_SEED = REPO / "supabase" / "seed.sql"

# Each file appends its version to a log table, so the order in which they ran is visible.
FIRST = "20240101000000_create_log.sql"
SECOND = "20240102000000_widgets.sql"
THIRD = "20240103000000_gadgets.sql"
SAMPLE_FILES = {
    FIRST: "create table public.run_log (seq serial primary key, version text not null);\n"
    "insert into public.run_log (version) values ('20240101000000');\n",
    SECOND: "create table public.widgets (id int primary key, label text);\n"
    "insert into public.run_log (version) values ('20240102000000');\n",
    THIRD: "create table public.gadgets (id int primary key);\n"
    "insert into public.run_log (version) values ('20240103000000');\n",
}


def write_project(root: Path, files: dict[str, str], seed: str | None = None) -> Path:
    """A supabase/ project under root; returns its migrations directory."""
    migrations_dir = root / "supabase" / "migrations"
    migrations_dir.mkdir(parents=True, exist_ok=True)
    for name, sql in files.items():
        (migrations_dir / name).write_text(sql)
    if seed is not None:
        (root / "supabase" / "seed.sql").write_text(seed)
    return migrations_dir


def run(fresh_db, migrations_dir, **options) -> migrations.MigrationResult:
    connection = migrations.connect(fresh_db.params)
    try:
        return migrations.migrate(connection, str(migrations_dir), **options)
    finally:
        connection.close()


def history(fresh_db) -> list[tuple]:
    return fresh_db.query(
        "select version, name, statements from supabase_migrations.schema_migrations order by 1"
    )


def table_exists(fresh_db, name: str) -> bool:
    return fresh_db.query("select to_regclass(%s) is not null", (name,))[0][0]


def test_fresh_database_gets_every_migration_in_order(fresh_db, tmp_path):
    migrations_dir = write_project(tmp_path, SAMPLE_FILES)
    result = run(fresh_db, migrations_dir)

    assert not result.failed, result.msg
    assert result.changed
    assert result.applied == [FIRST, SECOND, THIRD]
    assert result.already_applied == 0
    assert result.pending == []
    assert [row[0] for row in fresh_db.query("select version from public.run_log order by seq")] == [
        "20240101000000",
        "20240102000000",
        "20240103000000",
    ]
    assert history(fresh_db)[1] == (
        "20240102000000",
        "widgets",
        [
            "create table public.widgets (id int primary key, label text)",
            "insert into public.run_log (version) values ('20240102000000')",
        ],
    )


def test_history_table_has_the_cli_definition(fresh_db, tmp_path):
    run(fresh_db, write_project(tmp_path, SAMPLE_FILES))
    columns = fresh_db.query(
        "select column_name, data_type, is_nullable from information_schema.columns"
        " where table_schema = 'supabase_migrations' and table_name = 'schema_migrations'"
        " order by ordinal_position"
    )
    assert columns == [("version", "text", "NO"), ("statements", "ARRAY", "YES"), ("name", "text", "YES")]
    primary_key = fresh_db.query(
        "select a.attname from pg_index i"
        " join pg_attribute a on a.attrelid = i.indrelid and a.attnum = any(i.indkey)"
        " where i.indrelid = 'supabase_migrations.schema_migrations'::regclass and i.indisprimary"
    )
    assert primary_key == [("version",)]


def test_second_run_changes_nothing(fresh_db, tmp_path):
    migrations_dir = write_project(tmp_path, SAMPLE_FILES)
    run(fresh_db, migrations_dir)
    result = run(fresh_db, migrations_dir)

    assert not result.failed
    assert not result.changed
    assert result.applied == []
    assert result.already_applied == 3
    assert fresh_db.query("select count(*) from public.run_log") == [(3,)]


def test_check_mode_lists_pending_and_changes_nothing(fresh_db, tmp_path):
    migrations_dir = write_project(tmp_path, SAMPLE_FILES)
    result = run(fresh_db, migrations_dir, check_mode=True)

    assert result.changed
    assert result.pending == [FIRST, SECOND, THIRD]
    assert result.applied == []
    assert not table_exists(fresh_db, "supabase_migrations.schema_migrations")
    assert not table_exists(fresh_db, "public.run_log")

    run(fresh_db, migrations_dir)
    (migrations_dir / "20240104000000_more.sql").write_text("create table public.more (id int);")
    result = run(fresh_db, migrations_dir, check_mode=True)
    assert result.pending == ["20240104000000_more.sql"]
    assert result.already_applied == 3
    assert not table_exists(fresh_db, "public.more")


def test_check_mode_reports_the_seed_it_would_load(fresh_db, tmp_path):
    migrations_dir = write_project(tmp_path, SAMPLE_FILES, seed="insert into public.widgets values (1, 'a');")
    result = run(
        fresh_db,
        migrations_dir,
        seed=True,
        seed_file=str(tmp_path / "supabase" / "seed.sql"),
        check_mode=True,
    )
    assert result.seed_applied
    assert not table_exists(fresh_db, "supabase_migrations.seed_files")


def test_changed_applied_file_is_drift_and_fails_by_default(fresh_db, tmp_path):
    migrations_dir = write_project(tmp_path, SAMPLE_FILES)
    run(fresh_db, migrations_dir)
    (migrations_dir / SECOND).write_text(
        SAMPLE_FILES[SECOND] + "alter table public.widgets add column size int;\n"
    )
    (migrations_dir / "20240104000000_more.sql").write_text("create table public.more (id int);")

    result = run(fresh_db, migrations_dir)

    assert result.failed
    assert result.drift == [
        {
            "version": "20240102000000",
            "name": "widgets",
            "file": SECOND,
            "reason": "file content differs from the statements recorded when it was applied",
        }
    ]
    assert SECOND in result.msg
    assert result.applied == []
    assert not table_exists(fresh_db, "public.more")


def test_drift_only_warns_when_asked_and_is_never_reapplied(fresh_db, tmp_path):
    migrations_dir = write_project(tmp_path, SAMPLE_FILES)
    run(fresh_db, migrations_dir)
    (migrations_dir / SECOND).write_text("-- edited after it was applied\n" + SAMPLE_FILES[SECOND])
    (migrations_dir / "20240104000000_more.sql").write_text("create table public.more (id int);")

    result = run(fresh_db, migrations_dir, fail_on_drift=False)

    assert not result.failed
    assert [item["file"] for item in result.drift] == [SECOND]
    assert any("drift" in warning for warning in result.warnings)
    assert result.applied == ["20240104000000_more.sql"]
    assert fresh_db.query("select count(*) from public.run_log") == [(3,)]


def test_layout_only_edit_is_not_drift(fresh_db, tmp_path):
    migrations_dir = write_project(tmp_path, SAMPLE_FILES)
    run(fresh_db, migrations_dir)
    (migrations_dir / SECOND).write_text(
        "create table public.widgets (\n  id int primary key,\n  label text\n);\n\n"
        "insert into public.run_log (version)\n  values ('20240102000000');;\n"
    )

    result = run(fresh_db, migrations_dir)

    assert not result.failed, result.msg
    assert result.drift == []
    assert not result.changed


def test_semicolons_in_quotes_comments_and_bodies_do_not_split(fresh_db, tmp_path):
    sql = (
        "create table public.labels (id int primary key, txt text, \"odd;name\" text default 'a;b');\n"
        "/* outer /* inner; */ outer; */\n"
        "create function public.label_count() returns bigint language plpgsql as $body$\n"
        "begin\n  return (select count(*) from public.labels); -- ;\nend;\n$body$;\n"
        "create function public.band(kg numeric) returns text language sql\n"
        "begin atomic\n  select case when kg > 10 then 'bulk;' else 'single' end;\nend;\n"
        "create rule labels_notify as on delete to public.labels do also (notify labels; notify audit);\n"
        "insert into public.labels (id, txt) values (1, E'it\\'s; \\\\'), (2, $$x; y$$), (3, 'don''t;');\n"
    )
    migrations_dir = write_project(tmp_path, {"20240101000000_labels.sql": sql})

    result = run(fresh_db, migrations_dir)

    assert not result.failed, result.msg
    assert len(history(fresh_db)[0][2]) == 5  # the block comment belongs to the function after it
    assert fresh_db.query("select txt from public.labels order by id") == [
        ("it's; \\",),
        ("x; y",),
        ("don't;",),
    ]
    assert fresh_db.query("select public.label_count(), public.band(12)") == [(3, "bulk;")]


def test_applied_migration_without_local_file_is_drift(fresh_db, tmp_path):
    migrations_dir = write_project(tmp_path, SAMPLE_FILES)
    run(fresh_db, migrations_dir)
    (migrations_dir / THIRD).unlink()

    result = run(fresh_db, migrations_dir, check_mode=True)

    assert result.failed
    assert result.drift == [
        {
            "version": "20240103000000",
            "name": "gadgets",
            "file": None,
            "reason": "applied in the database but no local migration file has this version",
        }
    ]


def test_failing_migration_stops_names_file_and_error_and_keeps_earlier_ones(fresh_db, tmp_path):
    broken = (
        "create table public.half_done (id int);\n"
        "\n"
        "insert into public.run_log (version)\n"
        "select label from public.no_such_table;\n"
    )
    files = {FIRST: SAMPLE_FILES[FIRST], "20240102000000_broken.sql": broken, THIRD: SAMPLE_FILES[THIRD]}
    migrations_dir = write_project(tmp_path, files)

    result = run(fresh_db, migrations_dir)

    assert result.failed
    assert result.failed_file == "20240102000000_broken.sql"
    assert result.applied == [FIRST]
    assert result.pending == ["20240102000000_broken.sql", THIRD]
    assert result.msg.startswith("20240102000000_broken.sql: statement 2/2 at line 4, column 19: ")
    assert 'relation "public.no_such_table" does not exist' in result.msg
    assert "[SQLSTATE 42P01]" in result.msg
    assert result.msg.endswith(
        "     4 | select label from public.no_such_table;\n       |                   ^"
    )
    # Earlier migration kept and recorded; the failed one rolled back entirely and not recorded.
    assert [row[0] for row in history(fresh_db)] == ["20240101000000"]
    assert table_exists(fresh_db, "public.run_log")
    assert not table_exists(fresh_db, "public.half_done")
    assert not table_exists(fresh_db, "public.gadgets")

    (migrations_dir / "20240102000000_broken.sql").write_text("create table public.half_done (id int);\n")
    result = run(fresh_db, migrations_dir)
    assert result.applied == ["20240102000000_broken.sql", THIRD]


def test_error_inside_a_function_body_points_at_the_file_line(fresh_db, tmp_path):
    body = (
        "create function public.broken() returns int language plpgsql as $$\nbegin\n  retur 1;\nend;\n$$;\n"
    )
    migrations_dir = write_project(tmp_path, {"20240101000000_fn.sql": body})
    result = run(fresh_db, migrations_dir)
    assert result.failed
    assert "at line 3, column 3" in result.msg
    assert 'syntax error at or near "retur"' in result.msg


def test_comment_only_statements_are_fine(fresh_db, tmp_path):
    migrations_dir = write_project(tmp_path, {"20240101000000_c.sql": "select 1;\n-- the end\n"})
    result = run(fresh_db, migrations_dir)
    assert result.applied == ["20240101000000_c.sql"]
    assert history(fresh_db)[0][2] == ["select 1", "-- the end"]


def test_migration_settings_do_not_leak_into_the_next_one(fresh_db, tmp_path):
    files = {
        "20240101000000_path.sql": "set search_path = pg_catalog;",
        "20240102000000_table.sql": "create table widgets (id int);",
    }
    run(fresh_db, write_project(tmp_path, files))
    assert table_exists(fresh_db, "public.widgets")


def test_pending_migration_older_than_applied_ones_is_applied_with_a_warning(fresh_db, tmp_path):
    migrations_dir = write_project(tmp_path, {FIRST: SAMPLE_FILES[FIRST], THIRD: SAMPLE_FILES[THIRD]})
    run(fresh_db, migrations_dir)
    (migrations_dir / SECOND).write_text(SAMPLE_FILES[SECOND])

    result = run(fresh_db, migrations_dir)

    assert result.applied == [SECOND]
    assert any(SECOND in warning and "older" in warning for warning in result.warnings)


def test_files_not_named_like_migrations_are_skipped_with_a_warning(fresh_db, tmp_path):
    migrations_dir = write_project(tmp_path, {FIRST: SAMPLE_FILES[FIRST], "notes.sql": "garbage"})
    result = run(fresh_db, migrations_dir)
    assert result.applied == [FIRST]
    assert any("notes.sql" in warning for warning in result.warnings)


def test_two_files_with_one_version_are_refused(fresh_db, tmp_path):
    migrations_dir = write_project(tmp_path, {"1_a.sql": "select 1;", "1_b.sql": "select 2;"})
    with pytest.raises(migrations.MigrationError, match="share version 1"):
        run(fresh_db, migrations_dir)


SEED = (
    "insert into public.widgets (id, label) values (1, 'one'), (2, 'two') on conflict do nothing;\n"
    "insert into public.gadgets (id) values (1) on conflict do nothing;\n"
)


def test_seed_runs_only_when_asked_and_only_once_per_content(fresh_db, tmp_path):
    migrations_dir = write_project(tmp_path, SAMPLE_FILES, seed=SEED)
    seed_file = str(tmp_path / "supabase" / "seed.sql")

    result = run(fresh_db, migrations_dir, seed_file=seed_file, seed=False)
    assert not result.seed_applied
    assert fresh_db.query("select count(*) from public.widgets") == [(0,)]

    result = run(fresh_db, migrations_dir, seed_file=seed_file, seed=True)
    assert result.seed_applied and result.changed
    assert fresh_db.query("select count(*) from public.widgets") == [(2,)]
    assert fresh_db.query("select path, hash from supabase_migrations.seed_files") == [
        ("supabase/seed.sql", migrations.file_sha256(seed_file))
    ]

    result = run(fresh_db, migrations_dir, seed_file=seed_file, seed=True)
    assert not result.seed_applied and not result.changed

    # Changed seed content runs again; its idempotent SQL only adds what is new.
    Path(seed_file).write_text(
        SEED + "insert into public.widgets (id, label) values (3, 'three') on conflict do nothing;\n"
    )
    result = run(fresh_db, migrations_dir, seed_file=seed_file, seed=True)
    assert result.seed_applied
    assert fresh_db.query("select count(*) from public.widgets") == [(3,)]


def test_failing_seed_names_the_file_and_leaves_no_half_seed(fresh_db, tmp_path):
    seed = "insert into public.widgets values (1, 'x');\ninsert into public.nowhere values (1);\n"
    migrations_dir = write_project(tmp_path, SAMPLE_FILES, seed=seed)
    result = run(fresh_db, migrations_dir, seed_file=str(tmp_path / "supabase" / "seed.sql"), seed=True)
    assert result.failed
    assert result.failed_file == "seed.sql"
    assert result.msg.startswith("seed.sql: statement 2/2 at line 2")
    assert result.applied == [FIRST, SECOND, THIRD]
    assert fresh_db.query("select count(*) from public.widgets") == [(0,)]


def test_connect_accepts_a_dsn_with_explicit_fields_winning(fresh_db):
    dsn = f"host=127.0.0.1 port={fresh_db.port} dbname=postgres user=postgres password=wrong"
    connection = migrations.connect({"dsn": dsn, "password": fresh_db.password, "dbname": fresh_db.name})
    with connection.cursor() as cursor:
        cursor.execute("select current_database(), current_setting('application_name')")
        assert cursor.fetchone() == (fresh_db.name, "cmx_migrate")
    connection.close()


# --- the CleanMateX schema in supabase/ -----------------------------------------------------------


@pytest.fixture
def cleanmatex(fresh_db):
    result = run(fresh_db, REPO_MIGRATIONS, seed=True, seed_file=str(REPO_SEED))
    assert not result.failed, result.msg
    return fresh_db


def test_repository_migrations_and_seed_apply_and_rerun_cleanly(cleanmatex):
    again = run(cleanmatex, REPO_MIGRATIONS, seed=True, seed_file=str(REPO_SEED))
    assert not again.changed
    assert again.drift == []
    assert again.already_applied == len(list(REPO_MIGRATIONS.glob("*.sql")))
    counts = dict(
        cleanmatex.query(
            "select 'tenants', count(*) from tenants"
            " union all select 'branches', count(*) from branches"
            " union all select 'customers', count(*) from customers"
            " union all select 'orders', count(*) from orders"
            " union all select 'order_items', count(*) from order_items"
        )
    )
    assert counts == {"tenants": 1, "branches": 2, "customers": 4, "orders": 5, "order_items": 7}


def test_seed_sql_is_idempotent_on_its_own(cleanmatex):
    before = cleanmatex.query("select id, total_amount, updated_at from orders order by id")
    cleanmatex.query(REPO_SEED.read_text())
    assert cleanmatex.query("select id, total_amount, updated_at from orders order by id") == before


def test_every_tenant_table_has_tenant_id_and_timestamps(cleanmatex):
    tables = [
        "branches",
        "users",
        "customers",
        "services",
        "price_lists",
        "price_list_items",
        "orders",
        "order_items",
    ]
    for table in tables:
        columns = {
            row[0]
            for row in cleanmatex.query(
                "select column_name from information_schema.columns"
                " where table_schema = 'public' and table_name = %s",
                (table,),
            )
        }
        assert {"tenant_id", "created_at", "updated_at"} <= columns, table


def test_order_totals_follow_their_items(cleanmatex):
    def total():
        return cleanmatex.query("select total_amount::text from orders where order_number = 'DT-0001'")[0][0]

    assert total() == "29.25"  # 4.2 kg x 2.50 + 5 shirts x 3.75
    cleanmatex.query("update order_items set quantity = 2 where id = '90000000-0000-4000-8000-000000000002'")
    assert total() == "18.00"
    cleanmatex.query("delete from order_items where id = '90000000-0000-4000-8000-000000000001'")
    assert total() == "7.50"


def test_order_status_follows_the_lifecycle(cleanmatex):
    def set_status(order_number, status):
        cleanmatex.query("update orders set status = %s where order_number = %s", (status, order_number))

    set_status("DT-0001", "processing")
    set_status("DT-0001", "ready")
    set_status("DT-0001", "delivered")
    row = cleanmatex.query(
        "select ready_at is not null, delivered_at is not null from orders where order_number = 'DT-0001'"
    )
    assert row == [(True, True)]
    events = cleanmatex.query(
        "select from_status::text, to_status::text from order_status_events e"
        " join orders o on o.id = e.order_id where o.order_number = 'DT-0001' order by e.id"
    )
    assert events == [
        (None, "received"),
        ("received", "processing"),
        ("processing", "ready"),
        ("ready", "delivered"),
    ]

    for order_number, status in [("DT-0001", "cancelled"), ("DT-0002", "delivered"), ("DT-0003", "received")]:
        with pytest.raises(psycopg2.errors.CheckViolation, match="illegal status change"):
            set_status(order_number, status)


def test_rows_cannot_point_at_another_tenants_data(cleanmatex):
    other_tenant = cleanmatex.query(
        "insert into tenants (slug, name) values ('other', 'Other') returning id"
    )[0][0]
    customer = cleanmatex.query(
        "insert into customers (tenant_id, full_name) values (%s, 'Eve') returning id", (other_tenant,)
    )[0][0]
    demo_branch = "20000000-0000-4000-8000-000000000001"
    with pytest.raises(psycopg2.errors.ForeignKeyViolation):
        cleanmatex.query(
            "insert into orders (tenant_id, branch_id, customer_id, order_number, currency) "
            "values (%s, %s, %s, 'X-1', 'USD')",
            (other_tenant, demo_branch, customer),
        )


def test_deleting_a_tenant_removes_all_its_rows(cleanmatex):
    cleanmatex.query("delete from tenants where slug = 'demo-laundry'")
    for table in ["branches", "users", "customers", "services", "price_lists", "orders", "order_items"]:
        assert cleanmatex.query(f"select count(*) from {table}") == [(0,)], table


def test_a_referenced_service_cannot_be_deleted(cleanmatex):
    with pytest.raises(psycopg2.errors.ForeignKeyViolation):
        cleanmatex.query("delete from services where code = 'SHIRT'")
