"""The stack's database roles (pg_roles) against the throwaway PostgreSQL cluster: the app role reads and
writes the migrated tables but cannot run programs, create roles or tables; the health role cannot write;
the migration role applies supabase/migrations and the seed with the Supabase CLI's history table; a
database migrated by the superuser before these roles existed is handed over; a second run changes
nothing; a changed password is set as a verifier only when rotation is asked for."""

from __future__ import annotations

import itertools
from pathlib import Path

import psycopg2
import pytest
from ansible_collections.cleanmatex.infra.plugins.module_utils import migrations
from ansible_collections.cleanmatex.infra.plugins.module_utils.pg_roles import (
    PasswordMismatch,
    Role,
    RoleError,
    apply_roles,
    check_roles,
    password_matches,
)
from ansible_collections.cleanmatex.infra.plugins.module_utils.pg_scram import scram_verifier
from ansible_collections.cleanmatex.infra.tests.pg_cluster import SUPERUSER

REPO = Path(__file__).resolve().parents[2]
MIGRATIONS = REPO / "supabase" / "migrations"
SEED = REPO / "supabase" / "seed.sql"
_ids = itertools.count(1)


def role_set(suffix: str | None = None) -> dict[str, Role]:
    n = suffix or str(next(_ids))
    return {
        "migration": Role(f"t{n}_migrator", f"mig-pä$s'{n}", "migration"),
        "app": Role(f"t{n}_app", f'app "pass" {n}', "app"),
        "health": Role(f"t{n}_health", f"health:{n}#", "health"),
        "pgbouncer_admin": Role(f"t{n}_pgb_admin", f"pgb {n}", "pgbouncer_admin"),
    }


def apply(db, roles, **options):
    connection = db.connect()
    try:
        return apply_roles(connection, list(roles.values()), read_roles=["cmx_readonly"], **options)
    finally:
        connection.close()


def login(db, role: Role):
    connection = psycopg2.connect(
        host=db.host, port=db.port, user=role.name, password=role.password, dbname=db.name, sslmode="disable"
    )
    connection.autocommit = True
    return connection


def migrate_as(db, role: Role | None, seed: bool = True):
    params = db.params if role is None else {**db.params, "user": role.name, "password": role.password}
    connection = migrations.connect(params)
    try:
        result = migrations.migrate(connection, str(MIGRATIONS), seed_file=str(SEED), seed=seed)
    finally:
        connection.close()
    assert not result.failed, result.msg
    return result


def sql_error(connection, statement: str, args=None) -> str:
    """The SQLSTATE with which `statement` fails (it must fail)."""
    with connection.cursor() as cursor, pytest.raises(psycopg2.Error) as caught:
        cursor.execute(statement, args)
    return caught.value.pgcode


def owners(db) -> set[str]:
    rows = db.query(
        "SELECT DISTINCT c.relowner::regrole::text FROM pg_class c "
        "JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname IN ('public', 'supabase_migrations') AND c.relkind IN ('r', 'S', 'v')"
    )
    return {row[0] for row in rows}


def assert_app_works(db, roles):
    with login(db, roles["app"]) as app, app.cursor() as cursor:
        cursor.execute("SELECT current_user, usesuper FROM pg_user WHERE usename = current_user")
        assert cursor.fetchone() == (roles["app"].name, False)
        cursor.execute("SELECT count(*) FROM public.tenants")
        tenants = cursor.fetchone()[0]
        cursor.execute(
            "INSERT INTO public.tenants (slug, name) VALUES (%s, 'Roles test') RETURNING id",
            (f"t-{next(_ids)}",),
        )
        tenant = cursor.fetchone()[0]
        cursor.execute("UPDATE public.tenants SET name = 'Renamed' WHERE id = %s", (tenant,))
        cursor.execute("SELECT count(*) FROM public.tenants")
        assert cursor.fetchone()[0] == tenants + 1
        cursor.execute("DELETE FROM public.tenants WHERE id = %s", (tenant,))
        # The functions of the schema run (the trigger above used one; and a direct call).
        cursor.execute("SELECT has_function_privilege('public.set_updated_at()', 'EXECUTE')")
        assert cursor.fetchone() == (True,)


def assert_app_is_not_the_owner(db, roles):
    app = login(db, roles["app"])
    try:
        # 42501 insufficient_privilege: COPY ... PROGRAM needs pg_execute_server_program or superuser.
        assert sql_error(app, "COPY (SELECT 1) TO PROGRAM 'true'") == "42501"
        assert sql_error(app, "CREATE ROLE intruder SUPERUSER") == "42501"
        assert sql_error(app, "CREATE TABLE public.sneaky (id int)") == "42501"
        assert sql_error(app, "DROP TABLE public.orders") == "42501"
        assert sql_error(app, "ALTER ROLE CURRENT_USER SUPERUSER") == "42501"
        assert sql_error(app, "SELECT * FROM supabase_migrations.schema_migrations") == "42501"
    finally:
        app.close()


def assert_health_cannot_write(db, roles):
    health = login(db, roles["health"])
    try:
        with health.cursor() as cursor:
            cursor.execute("SELECT 1")
            assert cursor.fetchone() == (1,)
        # 25006 read_only_sql_transaction (default_transaction_read_only), before any privilege check.
        assert sql_error(health, "CREATE TEMP TABLE t (id int)") == "25006"
        assert sql_error(health, "INSERT INTO public.tenants (slug, name) VALUES ('x-health', 'x')") in (
            "25006",
            "42501",
        )
        with health.cursor() as cursor:
            cursor.execute("SET default_transaction_read_only = off")
        assert (
            sql_error(health, "INSERT INTO public.tenants (slug, name) VALUES ('x-health', 'x')") == "42501"
        )
        assert sql_error(health, "SELECT * FROM public.tenants") == "42501"
    finally:
        health.close()


def test_a_new_database_migrated_by_the_migration_role(fresh_db):
    roles = role_set()
    first = apply(fresh_db, roles)
    assert first.changed and sorted(first.created) == sorted(role.name for role in roles.values())
    result = migrate_as(fresh_db, roles["migration"])
    assert result.applied and result.seed_applied
    # The Supabase CLI's history table, owned and written by the migration role.
    assert fresh_db.query("SELECT count(*) FROM supabase_migrations.schema_migrations")[0][0] == len(
        list(MIGRATIONS.glob("*.sql"))
    )
    assert owners(fresh_db) == {roles["migration"].name}
    assert_app_works(fresh_db, roles)
    assert_app_is_not_the_owner(fresh_db, roles)
    assert_health_cannot_write(fresh_db, roles)
    # Re-running: nothing pending, nothing changed.
    assert not migrate_as(fresh_db, roles["migration"]).applied
    assert not apply(fresh_db, roles).changed


def test_a_database_migrated_by_the_superuser_before_the_roles_is_handed_over(fresh_db):
    migrate_as(fresh_db, None)  # a stack converged before this change: everything owned by the superuser
    assert owners(fresh_db) == {SUPERUSER}
    roles = role_set()
    result = apply(fresh_db, roles)
    assert result.changed and "public.orders" in result.owners_moved
    assert "supabase_migrations" in result.owners_moved
    assert owners(fresh_db) == {roles["migration"].name}
    # Extension functions stay with the superuser (the extension owns them).
    assert fresh_db.query(
        "SELECT proowner::regrole::text FROM pg_proc WHERE proname = 'uuid_generate_v4'"
    ) == [(SUPERUSER,)]
    assert_app_works(fresh_db, roles)
    assert_app_is_not_the_owner(fresh_db, roles)
    assert_health_cannot_write(fresh_db, roles)
    # The migration role now owns the history: a new migration applies and its table reaches the app.
    assert not apply(fresh_db, roles).changed
    assert not migrate_as(fresh_db, roles["migration"]).applied


def test_tables_created_later_by_the_migration_role_reach_the_app(fresh_db, tmp_path):
    roles = role_set()
    apply(fresh_db, roles)
    folder = tmp_path / "migrations"
    folder.mkdir()
    (folder / "20990101000000_later.sql").write_text(
        "create table public.later (id bigint generated always as identity primary key, note text);\n"
        "create function public.later_count() returns bigint language sql\n"
        "  as $$ select count(*) from public.later $$;\n"
    )
    connection = migrations.connect(
        {**fresh_db.params, "user": roles["migration"].name, "password": roles["migration"].password}
    )
    try:
        assert not migrations.migrate(connection, str(folder)).failed
    finally:
        connection.close()
    with login(fresh_db, roles["app"]) as app, app.cursor() as cursor:
        cursor.execute("INSERT INTO public.later (note) VALUES ('x') RETURNING id")
        assert cursor.fetchone()[0] == 1
        cursor.execute("SELECT public.later_count()")
        assert cursor.fetchone() == (1,)
    assert not apply(fresh_db, roles).changed


def test_attributes_are_corrected_and_check_mode_changes_nothing(fresh_db, admin_cursor):
    roles = role_set()
    apply(fresh_db, roles)
    admin_cursor.execute(f'ALTER ROLE "{roles["app"].name}" SUPERUSER CREATEROLE')
    assert apply(fresh_db, roles, check_mode=True).changed
    admin_cursor.execute("SELECT rolsuper FROM pg_roles WHERE rolname = %s", (roles["app"].name,))
    assert admin_cursor.fetchone() == (True,)
    assert apply(fresh_db, roles).changed
    admin_cursor.execute(
        "SELECT rolsuper, rolcreaterole, rolcreatedb, rolbypassrls, rolcanlogin "
        "FROM pg_roles WHERE rolname = %s",
        (roles["app"].name,),
    )
    assert admin_cursor.fetchone() == (False, False, False, False, True)
    admin_cursor.execute(
        "SELECT rolcanlogin FROM pg_roles WHERE rolname = %s", (roles["pgbouncer_admin"].name,)
    )
    assert admin_cursor.fetchone() == (False,)
    assert not apply(fresh_db, roles).changed


def test_a_changed_password_needs_rotation_and_is_sent_as_a_verifier(fresh_db):
    roles = role_set()
    apply(fresh_db, roles)
    old = roles["app"].password
    roles["app"] = Role(roles["app"].name, "a new päss'word", "app")
    with pytest.raises(PasswordMismatch, match=r"cmx_postgres_password_rotate=true"):
        apply(fresh_db, roles)
    login(fresh_db, Role(roles["app"].name, old, "app")).close()  # unchanged
    result = apply(fresh_db, roles, rotate=True)
    assert result.changed and result.passwords_set == [roles["app"].name]
    login(fresh_db, roles["app"]).close()
    stored = fresh_db.query("SELECT rolpassword FROM pg_authid WHERE rolname = %s", (roles["app"].name,))[0][
        0
    ]
    assert password_matches(stored, roles["app"].password) and not password_matches(stored, old)
    assert not apply(fresh_db, roles).changed


def test_password_matching_is_done_on_the_client():
    verifier = scram_verifier("sëcret", b"0123456789abcdef")
    assert password_matches(verifier, "sëcret")
    assert not password_matches(verifier, "secret")
    assert not password_matches(None, "x") and not password_matches("md5abc", "x")


@pytest.mark.parametrize(
    ("roles", "message"),
    [
        ([Role("cmx_user", "x", "app")], "cannot be the superuser"),
        ([Role("a", "x", "app"), Role("a", "y", "health")], "have the same name"),
        ([Role("Bad Name", "x", "app")], "is not a role name"),
        ([Role("a", "", "app")], "empty password"),
        ([Role("a", "x", "app"), Role("b", "y", "app")], "two roles of kind app"),
    ],
)
def test_unusable_roles_are_refused(roles, message):
    with pytest.raises(RoleError, match=message):
        check_roles(roles, "cmx_user")
