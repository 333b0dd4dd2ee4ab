"""PostgreSQL restore never loses the live database (issue 16, items 3 and 12), against a real server.

The throwaway PostgreSQL 15 cluster plays the stack's server; a stand-in ``docker`` script turns
``docker exec <container> psql|pg_dump|pg_restore ...`` into the same program run on this host against
that cluster, so the module's own commands (and the faults injected into them) reach a real server.

Promises checked:
* a failing pg_restore or differing row counts replace nothing: the live rows and the cluster's roles are
  as they were, no scratch database and no role is left behind;
* the swap is one transaction with the backup's roles: a connection dropped after the live database was
  renamed rolls all of it back; a client connected to the restored copy does not make it fail;
* the live database is renamed aside, not dropped; the newest ``keep_previous`` copies are kept and the
  printed rollback command puts the old data back.
"""

from __future__ import annotations

import datetime
import os
import shlex
import subprocess
import sys
import threading
import time

import psycopg2
import pytest
from ansible_collections.cleanmatex.infra.plugins.module_utils import backup_postgres
from ansible_collections.cleanmatex.infra.tests.pg_cluster import POSTGRES_BINDIR, TestDatabase

FAKE_DOCKER = f"""#!{sys.executable}
# docker exec [-i] [-e NAME]... CONTAINER PROGRAM ARGS: PROGRAM from {POSTGRES_BINDIR} on this host.
# CMX_FAKE_DROP_AFTER=<text>: the psql session reading stdin ends its own connection right after the
# first statement containing <text> (a dropped connection at that exact point).
import os, subprocess, sys
args = sys.argv[1:]
assert args[0] == "exec", args
i = 1
while args[i].startswith("-"):
    i += 2 if args[i] == "-e" else 1
program, rest = args[i + 1], args[i + 2:]
env = dict(os.environ, PGHOST="127.0.0.1", PGPORT=os.environ["CMX_FAKE_PGPORT"])
path = os.path.join({str(POSTGRES_BINDIR)!r}, program)
marker = os.environ.get("CMX_FAKE_DROP_AFTER")
if not (marker and program == "psql" and "-i" in args[:i]):
    os.execve(path, [path, *rest], env)
lines, dropped = [], False
for line in sys.stdin.read().splitlines():
    lines.append(line)
    if marker in line and not dropped:
        lines.append("SELECT pg_terminate_backend(pg_backend_pid());")
        dropped = True
sys.exit(subprocess.run([path, *rest], input="\\n".join(lines) + "\\n", text=True, env=env).returncode)
"""


@pytest.fixture
def docker(tmp_path, monkeypatch, throwaway_pg_cluster) -> str:
    path = tmp_path / "docker"
    path.write_text(FAKE_DOCKER)
    path.chmod(0o755)
    monkeypatch.setenv("CMX_FAKE_PGPORT", str(throwaway_pg_cluster.port))
    return str(path)


def admin(db: TestDatabase, sql: str, args=None) -> list[tuple]:
    """One statement on the maintenance database, outside a transaction (DROP DATABASE needs that)."""
    connection = TestDatabase(db.port, "postgres").connect()
    connection.autocommit = True
    try:
        with connection.cursor() as cursor:
            cursor.execute(sql, args)
            return cursor.fetchall() if cursor.description else []
    finally:
        connection.close()


def databases(db: TestDatabase) -> list[str]:
    return [row[0] for row in admin(db, "SELECT datname FROM pg_database ORDER BY 1")]


def rows(db: TestDatabase, name: str | None = None) -> list[str]:
    return [row[0] for row in TestDatabase(db.port, name or db.name).query("SELECT v FROM t ORDER BY v")]


def role(db: TestDatabase, name: str):
    found = admin(db, "SELECT rolconnlimit, rolcanlogin FROM pg_roles WHERE rolname = %s", (name,))
    return found[0] if found else None


@pytest.fixture
def backed_up(fresh_db, docker, tmp_path):
    """A database whose backup holds rows a, b and roles in a known state; then "today's" changes:
    row c added, one role dropped (the backup must bring it back), one role's attribute changed."""
    tag = fresh_db.name
    fresh_db.query("CREATE TABLE t (v text)")
    fresh_db.query("INSERT INTO t VALUES ('a'), ('b')")
    admin(fresh_db, f'CREATE ROLE "{tag}_new" LOGIN CONNECTION LIMIT 3')
    admin(fresh_db, f'CREATE ROLE "{tag}_old" CONNECTION LIMIT 3')
    fresh_db.query(f'GRANT SELECT ON t TO "{tag}_new"')
    folder = tmp_path / "backup"
    dumped = backup_postgres.dump(
        connection=fresh_db.params, container="fake", folder=str(folder), docker=docker
    )
    fresh_db.query("INSERT INTO t VALUES ('c')")
    fresh_db.query(f'REVOKE ALL ON t FROM "{tag}_new"')
    admin(fresh_db, f'DROP ROLE "{tag}_new"')
    admin(fresh_db, f'ALTER ROLE "{tag}_old" CONNECTION LIMIT 5')
    yield folder, dumped["postgres"], tag
    for name in databases(fresh_db):
        if name.startswith(fresh_db.name + "_"):
            admin(fresh_db, f'DROP DATABASE "{name}" WITH (FORCE)')


def restore(db: TestDatabase, folder, section, docker, **options) -> dict:
    return backup_postgres.restore(
        connection=db.params,
        container="fake",
        folder=str(folder),
        section=section,
        managed_roles=[db.user],
        docker=docker,
        **options,
    )


def assert_nothing_replaced(db: TestDatabase, tag: str) -> None:
    assert rows(db) == ["a", "b", "c"], "the live rows changed"
    assert role(db, f"{tag}_new") is None, "a role of the backup was left behind"
    assert role(db, f"{tag}_old") == (5, False), "the backup's roles were applied"
    assert [name for name in databases(db) if name.startswith(db.name + "_")] == [], "leftover database"


def test_pg_restore_failing_replaces_nothing(fresh_db, backed_up, docker):
    folder, section, tag = backed_up
    dump = folder / section["dump_file"]
    dump.write_bytes(dump.read_bytes()[: dump.stat().st_size // 2])

    with pytest.raises(
        backup_postgres.PostgresBackupError, match=r"pg_restore of .* failed, nothing was replaced"
    ):
        restore(fresh_db, folder, section, docker)
    assert_nothing_replaced(fresh_db, tag)


def test_differing_row_counts_replace_nothing(fresh_db, backed_up, docker):
    folder, section, tag = backed_up
    section = {**section, "tables": {**section["tables"], "public.t": 3}}

    with pytest.raises(backup_postgres.PostgresBackupError) as failed:
        restore(fresh_db, folder, section, docker)
    assert "row counts after pg_restore differ from the manifest, nothing was replaced" in str(failed.value)
    assert "public.t" in str(failed.value)
    assert_nothing_replaced(fresh_db, tag)


def test_connection_dropped_during_the_swap_replaces_nothing(fresh_db, backed_up, docker, monkeypatch):
    """The connection ends right after the live database was renamed: the rename and the roles roll back."""
    folder, section, tag = backed_up
    monkeypatch.setenv("CMX_FAKE_DROP_AFTER", f"ALTER DATABASE {fresh_db.name} RENAME TO")

    with pytest.raises(backup_postgres.PostgresBackupError, match="nothing was replaced"):
        restore(fresh_db, folder, section, docker)
    assert_nothing_replaced(fresh_db, tag)


def test_swap_sets_the_live_database_aside_and_applies_the_roles(fresh_db, backed_up, docker):
    folder, section, tag = backed_up
    moment = datetime.datetime(2025, 6, 1, 12, 0, 0, tzinfo=datetime.UTC)

    result = restore(fresh_db, folder, section, docker, now=moment)

    previous = f"{fresh_db.name}_before_restore_20250601_120000"
    assert rows(fresh_db) == ["a", "b"]
    assert result["previous_database"] == previous and result["kept_previous"] == [previous]
    assert rows(fresh_db, previous) == ["a", "b", "c"], "today's data is kept aside"
    assert result["created_roles"] == [f"{tag}_new"]
    assert role(fresh_db, f"{tag}_new") == (3, True) and role(fresh_db, f"{tag}_old") == (3, False)
    grants = TestDatabase(fresh_db.port, fresh_db.name).query(
        "SELECT has_table_privilege(%s, 't', 'SELECT')", (f"{tag}_new",)
    )
    assert grants == [(True,)]

    # The printed rollback command puts the previous data back under the live name.
    argv = shlex.split(result["rollback"])
    assert argv[:3] == ["docker", "exec", "fake"]
    subprocess.run(
        [docker, *argv[1:]],
        check=True,
        capture_output=True,
        env=dict(os.environ, PGPASSWORD=fresh_db.password),
    )
    assert rows(fresh_db) == ["a", "b", "c"]
    assert rows(fresh_db, fresh_db.name + "_unwanted_restore") == ["a", "b"]


@pytest.mark.parametrize("keep", [0, 1, 2])
def test_set_aside_copies_beyond_keep_previous_are_dropped(fresh_db, backed_up, docker, keep):
    folder, section, _ = backed_up
    for hour in (9, 10, 11):
        moment = datetime.datetime(2025, 6, 1, hour, 0, 0, tzinfo=datetime.UTC)
        result = restore(fresh_db, folder, section, docker, now=moment, keep_previous=keep)
    expected = [f"{fresh_db.name}_before_restore_20250601_{hour}0000" for hour in (9, 10, 11)]
    expected = expected[len(expected) - keep :] if keep else []
    assert [name for name in databases(fresh_db) if "_before_restore_" in name] == expected
    assert result["kept_previous"] == expected
    assert result["previous_database"] == (expected[-1] if keep else None)
    assert bool(result["rollback"]) == bool(keep)
    assert rows(fresh_db) == ["a", "b"]
    for name in expected:  # the 9:00 copy held today's rows; the later ones the restored rows
        assert rows(fresh_db, name) == ["a", "b"]


def test_a_client_on_the_restored_copy_does_not_cost_the_live_database(fresh_db, backed_up, docker):
    """Before: DROP DATABASE live, then RENAME of the copy failed (being accessed by other users)."""
    folder, section, _ = backed_up
    scratch = backup_postgres.restore_database_name(fresh_db.name)
    held, stop = [], threading.Event()

    def hold_a_connection_to_the_copy():
        while not stop.is_set() and not held:
            try:
                held.append(psycopg2.connect(**{**fresh_db.params, "dbname": scratch}))
            except psycopg2.OperationalError:
                time.sleep(0.005)

    watcher = threading.Thread(target=hold_a_connection_to_the_copy, daemon=True)
    watcher.start()
    try:
        restore(fresh_db, folder, section, docker)
    finally:
        stop.set()
        watcher.join()
        for connection in held:
            connection.close()
    assert held, "the test never reached the restored copy"
    assert rows(fresh_db) == ["a", "b"]


def test_missing_live_database_is_restored_without_a_copy_aside(fresh_db, backed_up, docker):
    folder, section, _ = backed_up
    admin(fresh_db, f'DROP DATABASE "{fresh_db.name}" WITH (FORCE)')

    result = restore(fresh_db, folder, section, docker)

    assert rows(fresh_db) == ["a", "b"]
    assert result["previous_database"] is None and result["rollback"] == ""


def test_previous_names_fit_and_sort():
    moment = datetime.datetime(2025, 6, 1, 12, 0, 0, tzinfo=datetime.UTC)
    long_name = "x" * 63
    name = backup_postgres.previous_database_name(long_name, moment)
    assert len(name.encode()) <= 63 and name.endswith("_before_restore_20250601_120000")
    taken = {name, name + "_2"}
    assert backup_postgres.previous_database_name(long_name, moment, taken) == name + "_3"
    names = ["db_before_restore_20250601_120000_2", "db_before_restore_20250601_120000", "other",
             "db_before_restore_20240101_000000", "db2_before_restore_20250601_120000"]  # fmt: skip
    assert backup_postgres.previous_databases(names, "db") == [
        "db_before_restore_20240101_000000",
        "db_before_restore_20250601_120000",
        "db_before_restore_20250601_120000_2",
    ]


def _two_step_options(db: TestDatabase, folder, section, docker) -> dict:
    return {
        "connection": db.params,
        "container": "fake",
        "folder": str(folder),
        "section": section,
        "managed_roles": [db.user],
        "docker": docker,
    }


def test_load_touches_nothing_live_and_abandon_drops_what_it_made(fresh_db, backed_up, docker):
    """restore.yml's first step: the side database is filled while the live one stays as it is; giving
    up (the backup taken first failed) drops the side database and the roles created for it."""
    folder, section, tag = backed_up
    common = _two_step_options(fresh_db, folder, section, docker)

    loaded = backup_postgres.load(**common)

    scratch = backup_postgres.restore_database_name(fresh_db.name)
    assert loaded["scratch"] == scratch and loaded["created_roles"] == [f"{tag}_new"]
    assert loaded["tables"] == {"public.t": 2} and loaded["problems"] == []
    assert rows(fresh_db, scratch) == ["a", "b"], "the side database holds the backup"
    assert rows(fresh_db) == ["a", "b", "c"] and role(fresh_db, f"{tag}_old") == (5, False)

    assert backup_postgres.abandon(connection=fresh_db.params, loaded=loaded) == []
    assert_nothing_replaced(fresh_db, tag)


def test_load_then_swap_is_the_restore(fresh_db, backed_up, docker):
    folder, section, tag = backed_up
    common = _two_step_options(fresh_db, folder, section, docker)
    moment = datetime.datetime(2025, 6, 1, 12, 0, 0, tzinfo=datetime.UTC)

    loaded = backup_postgres.load(**common)
    fresh_db.query("INSERT INTO t VALUES ('d')")  # written to the live database between the two steps
    result = backup_postgres.swap_in(**common, loaded=loaded, now=moment)

    previous = f"{fresh_db.name}_before_restore_20250601_120000"
    assert rows(fresh_db) == ["a", "b"]
    assert rows(fresh_db, previous) == ["a", "b", "c", "d"], "what was written meanwhile is kept aside"
    assert result["created_roles"] == [f"{tag}_new"] and result["tables"] == {"public.t": 2}
    assert role(fresh_db, f"{tag}_new") == (3, True) and role(fresh_db, f"{tag}_old") == (3, False)


def test_swap_refuses_a_side_database_that_is_not_the_loaded_one(fresh_db, backed_up, docker):
    folder, section, tag = backed_up
    common = _two_step_options(fresh_db, folder, section, docker)
    loaded = backup_postgres.load(**common)
    scratch = loaded["scratch"]
    admin(fresh_db, f'DROP DATABASE "{scratch}"')
    admin(fresh_db, f'CREATE DATABASE "{scratch}"')  # same name, another database

    with pytest.raises(backup_postgres.PostgresBackupError, match=r"is gone .*nothing was replaced"):
        backup_postgres.swap_in(**common, loaded=loaded)
    assert_nothing_replaced(fresh_db, tag)


def test_a_backup_with_the_old_gzip_dump_and_manifest_restores(fresh_db, backed_up, docker):
    """Backups taken before lz4 became the default: a gzip custom-format dump, no compression field."""
    folder, section, _ = backed_up
    assert section["compression"] in ("", "gzip")  # this host's pg_dump 15: pg_dump's default, gzip
    with open(folder / section["dump_file"], "rb") as handle:
        header = handle.read(5)
    assert header == b"PGDMP"
    old = {key: value for key, value in section.items() if key != "compression"}

    result = restore(fresh_db, folder, old, docker)

    assert rows(fresh_db) == ["a", "b"] and result["problems"] == []


@pytest.mark.parametrize(
    ("requested", "version", "used"),
    [
        ("", "17.2 (Debian 17.2-1.pgdg120+1)", "lz4"),
        ("", "16.0", "lz4"),
        ("", "15.10", ""),
        ("", "", ""),
        ("gzip:6", "17.2", "gzip:6"),
        ("zstd:3", "15.1", "zstd:3"),
    ],
)
def test_dump_compression_is_lz4_where_pg_dump_has_it(requested, version, used):
    assert backup_postgres.dump_compression(requested, version) == used
