"""Least privilege in the running stack (docs/security.md): the apps' .env logs in as the app role, through
PgBouncer with SCRAM, and that role is not a superuser; the migrations were applied by the migration role;
/health's container uses its own read-only role; PgBouncer's admin console answers its own user only."""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

import psycopg2
import pytest
import requests
from conftest import PROJECT_DIR, app_env, container, inspect, pg_connect


@pytest.mark.parametrize(("variable", "port_key"), [("DATABASE_POOLED_URL", "cmx_pgbouncer_port"),
                                                   ("DATABASE_URL", "cmx_postgres_port")])  # fmt: skip
def test_app_env_logs_in_as_the_app_role_which_is_not_superuser(inv, variable, port_key):
    url = app_env()[variable]
    parts = urlsplit(url)
    assert unquote(parts.username) == inv["cmx_postgres_app_user"] != inv["cmx_postgres_user"]
    assert parts.port == inv[port_key]
    conn = psycopg2.connect(url, connect_timeout=5, sslmode="disable")
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT current_user, rolsuper, rolcreaterole, rolcreatedb, rolbypassrls "
                        "FROM pg_roles WHERE rolname = current_user")  # fmt: skip
            assert cur.fetchone() == (inv["cmx_postgres_app_user"], False, False, False, False)
            # It reads and writes the migrated tables ...
            cur.execute("BEGIN")
            cur.execute("INSERT INTO public.tenants (slug, name) VALUES ('roles-test', 'Roles') RETURNING id")
            cur.execute("DELETE FROM public.tenants WHERE id = %s", (cur.fetchone()[0],))
            cur.execute("COMMIT")
            # ... and cannot run programs on the server, create roles or change the schema.
            for statement in (
                "COPY (SELECT 1) TO PROGRAM 'id'",
                "CREATE ROLE intruder SUPERUSER",
                "CREATE TABLE public.intruder (id int)",
                "DROP TABLE public.order_items",
            ):
                with pytest.raises(psycopg2.errors.InsufficientPrivilege):
                    cur.execute(statement)
    finally:
        conn.close()


def test_pgbouncer_uses_scram_for_the_app_role():
    userlist = (PROJECT_DIR / "secrets" / "pgbouncer" / "userlist.txt").read_text()
    env = app_env()
    app = unquote(urlsplit(env["DATABASE_POOLED_URL"]).username)
    assert any(line.startswith(f'"{app}" "SCRAM-SHA-256$') for line in userlist.splitlines())
    ini = (PROJECT_DIR / "pgbouncer" / "pgbouncer.ini").read_text()
    assert "auth_type = scram-sha-256" in ini


def test_migrations_were_applied_by_the_migration_role(inv):
    with pg_connect(inv) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM supabase_migrations.schema_migrations")
        assert cur.fetchone()[0] >= 3
        cur.execute(
            "SELECT DISTINCT c.relowner::regrole::text FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname IN ('public', 'supabase_migrations') AND c.relkind IN ('r', 'S')"
        )
        assert {row[0] for row in cur.fetchall()} == {inv["cmx_postgres_migration_user"]}
        cur.execute("SELECT rolsuper FROM pg_roles WHERE rolname = %s", (inv["cmx_postgres_migration_user"],))
        assert cur.fetchone() == (False,)


def test_health_uses_its_own_read_only_role(inv):
    env = {
        item.split("=", 1)[0]: item.split("=", 1)[1] for item in inspect(container("health"))["Config"]["Env"]
    }
    user = inv["cmx_postgres_health_user"]
    assert urlsplit(env["HEALTH_DATABASE_URL"]).username == user
    assert urlsplit(env["HEALTH_PGBOUNCER_URL"]).username == user
    assert requests.get(f"http://127.0.0.1:{inv['cmx_health_port']}/health", timeout=10).status_code == 200
    conn = psycopg2.connect(host="127.0.0.1", port=inv["cmx_pgbouncer_port"], user=user,
                            password=inv["cmx_postgres_health_password"], dbname=inv["cmx_postgres_db"],
                            sslmode="disable", connect_timeout=5)  # fmt: skip
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
            assert cur.fetchone() == (False,)
            with pytest.raises(psycopg2.errors.ReadOnlySqlTransaction):
                cur.execute("INSERT INTO public.tenants (slug, name) VALUES ('health-write', 'x')")
    finally:
        conn.close()


def test_pgbouncer_admin_console_is_its_own_user(inv):
    ini = (PROJECT_DIR / "pgbouncer" / "pgbouncer.ini").read_text()
    admin = inv["cmx_pgbouncer_admin_user"]
    assert f"admin_users = {admin}" in ini and f"stats_users = {admin}" in ini
    console = {
        "host": "127.0.0.1",
        "port": inv["cmx_pgbouncer_port"],
        "dbname": "pgbouncer",
        "sslmode": "disable",
    }
    conn = psycopg2.connect(user=admin, password=inv["cmx_pgbouncer_admin_password"], **console)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute("SHOW POOLS")
            assert cur.fetchall()
    finally:
        conn.close()
    # The app's role is not an admin: PgBouncer refuses it the console.
    with pytest.raises(psycopg2.OperationalError, match="not allowed"):
        psycopg2.connect(
            user=inv["cmx_postgres_app_user"], password=inv["cmx_postgres_app_password"], **console
        )
    # It is no PostgreSQL login.
    with pytest.raises(psycopg2.OperationalError):
        psycopg2.connect(host="127.0.0.1", port=inv["cmx_postgres_port"], user=admin,
                         password=inv["cmx_pgbouncer_admin_password"], dbname=inv["cmx_postgres_db"],
                         sslmode="disable", connect_timeout=5).close()  # fmt: skip
