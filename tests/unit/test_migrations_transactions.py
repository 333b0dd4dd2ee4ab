"""A migration is all-or-nothing: transaction control in a file is refused before anything runs (issue 16).

Reproduced before the fix: ``begin; create table a; commit; create table b; select 1/0;`` failed, left both
tables behind with no history row, and every re-run failed on "relation a already exists".
"""

import pytest
from ansible_collections.cleanmatex.infra.plugins.module_utils import migrations
from test_migrations import run, write_project

GOOD = "20240101000000_good.sql"
REPRO = "20240102000000_repro.sql"
REPRO_SQL = "begin;\ncreate table public.a (id int);\ncommit;\ncreate table public.b (id int);\nselect 1/0;\n"


def tables(fresh_db) -> list[str]:
    return [
        row[0]
        for row in fresh_db.query("select tablename from pg_tables where schemaname = 'public' order by 1")
    ]


def history_versions(fresh_db) -> list[str]:
    if not fresh_db.query("select to_regclass('supabase_migrations.schema_migrations') is not null")[0][0]:
        return []
    return [
        row[0]
        for row in fresh_db.query("select version from supabase_migrations.schema_migrations order by 1")
    ]


@pytest.mark.parametrize("check_mode", [False, True], ids=["real", "check"])
def test_the_reproduction_is_refused_before_anything_is_applied(fresh_db, tmp_path, check_mode):
    files = {GOOD: "create table public.good (id int);\n", REPRO: REPRO_SQL}
    migrations_dir = write_project(tmp_path, files)

    result = run(fresh_db, migrations_dir, check_mode=check_mode)

    assert result.failed
    assert result.failed_file == REPRO
    assert f"{REPRO} line 1: begin" in result.msg
    assert f"{REPRO} line 3: commit" in result.msg
    assert "nothing applied" in result.msg
    assert result.applied == []
    # Not even the good file before it: the problem is reported before anything runs.
    assert tables(fresh_db) == []
    assert history_versions(fresh_db) == []

    # Without the transaction control the file is all-or-nothing: the error leaves nothing behind...
    (migrations_dir / REPRO).write_text(REPRO_SQL.replace("begin;\n", "").replace("commit;\n", ""))
    result = run(fresh_db, migrations_dir)
    assert result.failed and "division by zero" in result.msg
    assert tables(fresh_db) == ["good"]
    assert history_versions(fresh_db) == ["20240101000000"]
    # ...and the corrected file applies on the next run.
    (migrations_dir / REPRO).write_text("create table public.a (id int);\ncreate table public.b (id int);\n")
    result = run(fresh_db, migrations_dir)
    assert not result.failed, result.msg
    assert tables(fresh_db) == ["a", "b", "good"]


def test_every_offending_file_and_line_is_listed_at_once(fresh_db, tmp_path):
    files = {
        "20240101000000_one.sql": "create table public.one (id int);\n-- done\nEND;\n",
        "20240102000000_two.sql": (
            "start transaction isolation level serializable;\n"
            "create table public.two (id int);\n"
            "/* give up */\n  ROLLBACK;\n"
            "abort;\n"
        ),
        "20240103000000_fine.sql": "create table public.fine (id int);\n",
        "20240104000000_four.sql": (
            "commit and chain;\nprepare transaction 'x';\nbegin isolation level read committed;\n"
        ),
    }
    result = run(fresh_db, write_project(tmp_path, files))

    assert result.failed
    assert result.failed_file == "20240101000000_one.sql"
    for expected in (
        "20240101000000_one.sql line 3: END",
        "20240102000000_two.sql line 1: start transaction isolation level serializable",
        "20240102000000_two.sql line 4: ROLLBACK",
        "20240102000000_two.sql line 5: abort",
        "20240104000000_four.sql line 1: commit and chain",
        "20240104000000_four.sql line 2: prepare transaction 'x'",
        "20240104000000_four.sql line 3: begin isolation level read committed",
    ):
        assert expected in result.msg
    assert "fine.sql" not in result.msg
    assert tables(fresh_db) == []


def test_words_in_strings_comments_bodies_and_savepoints_are_not_transaction_control(fresh_db, tmp_path):
    sql = (
        "create table public.log (note text);\n"
        "insert into public.log values ('begin; commit;'), (E'rollback\\'s end'), ($$end;$$);\n"
        "-- commit;\n"
        "/* begin; /* nested */ rollback; */\n"
        "create function public.f() returns int language plpgsql as $body$\n"
        "begin\n  return 1;\nend;\n$body$;\n"
        "create function public.g() returns int language sql begin atomic select 1; end;\n"
        "do $$ begin perform 1; end $$;\n"
        "savepoint before_risk;\n"
        "insert into public.log values ('discarded');\n"
        "rollback to savepoint before_risk;\n"
        "savepoint s2;\n"
        "release savepoint s2;\n"
        "prepare q as select 1;\n"
        "deallocate q;\n"
        'create table public."commit" ("begin" int, "end" int);\n'
    )
    result = run(fresh_db, write_project(tmp_path, {GOOD: sql}))

    assert not result.failed, result.msg
    assert result.applied == [GOOD]
    assert fresh_db.query("select count(*) from public.log where note = 'discarded'")[0][0] == 0
    assert fresh_db.query("select public.f() + public.g()")[0][0] == 2


def test_a_seed_with_transaction_control_is_refused(fresh_db, tmp_path):
    migrations_dir = write_project(
        tmp_path,
        {GOOD: "create table public.good (id int);\n"},
        seed="insert into public.good values (1);\ncommit;\n",
    )
    seed_file = str(tmp_path / "supabase" / "seed.sql")

    result = run(fresh_db, migrations_dir, seed=True, seed_file=seed_file)

    assert result.failed
    assert "seed.sql line 2: commit" in result.msg
    assert tables(fresh_db) == []


def test_a_statement_that_ends_the_transaction_anyway_stops_the_file_at_once(fresh_db, tmp_path):
    # The backstop behind the check: apply_migration alone, given a file the check would have refused.
    # What the COMMIT committed stays (hence the check before anything runs); nothing after it runs.
    path = write_project(tmp_path, {REPRO: REPRO_SQL}) / REPRO
    migration = migrations.MigrationFile("20240102000000", "repro", str(path), REPRO_SQL)
    connection = migrations.connect(fresh_db.params)
    try:
        migrations.ensure_history_table(connection)
        with pytest.raises(
            migrations.MigrationError, match="statement 3/5 starting at line 3 ended the file's"
        ):
            migrations.apply_migration(connection, migration)
    finally:
        connection.close()
    assert tables(fresh_db) == ["a"]
    assert history_versions(fresh_db) == []


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("BEGIN", (1, "BEGIN")),
        ("begin work", (1, "begin work")),
        ("-- why\n/* c */ Commit", (2, "Commit")),
        ("\n\nEND TRANSACTION", (3, "END TRANSACTION")),
        ("rollback and chain", (1, "rollback and chain")),
        ("commit prepared 'gid'", (1, "commit prepared 'gid'")),
        ("rollback prepared 'gid'", (1, "rollback prepared 'gid'")),
        ("START\nTRANSACTION", (1, "START")),
        ("savepoint s", None),
        ("release s", None),
        ("rollback to s", None),
        ("ROLLBACK TO SAVEPOINT s", None),
        ("prepare p(int) as select $1", None),
        ("select 1 as commit", None),
        ("create table begin_log (id int)", None),
        ("update t set x = 1 where y = 'commit'", None),
    ],
)
def test_transaction_control_classification(sql, expected):
    (statement,) = migrations.split_statements(sql)
    assert migrations.transaction_control(statement) == expected
