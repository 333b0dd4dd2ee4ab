"""The stack's PostgreSQL roles: who may do what, created and corrected on every converge.

The bootstrap superuser (cmx_postgres_user) is for the converge and the backup tooling only. Everything
else logs in as a role that cannot own the cluster (no SUPERUSER, CREATEDB, CREATEROLE, REPLICATION,
BYPASSRLS, so no ``COPY ... PROGRAM``, no ``CREATE ROLE``):

* ``migration``: owns the schema objects and applies supabase/migrations and the seed (cmx_migrate).
  It may create schemas in the database (supabase_migrations) and objects in the app schemas.
* ``app``: the applications (DATABASE_URL, DATABASE_POOLED_URL). Reads and writes the tables, uses the
  sequences, executes the functions of the app schemas - on objects that exist and, through
  ALTER DEFAULT PRIVILEGES, on those the migration role creates later. Creates nothing.
* ``health``: the /health service. Connects and runs its probe; every transaction read only.
* ``pgbouncer_admin``: PgBouncer's admin_users / stats_users. NOLOGIN in PostgreSQL: PgBouncer checks
  its SCRAM secret from the user list, the server never lets it in.

``apply_roles`` runs as the superuser in one transaction: roles created or corrected, passwords set as
SCRAM verifiers computed here (never the plain password in SQL) when the stored one does not match,
objects in the app schemas that the superuser still owns (a stack initialised before these roles
existed) handed to the migration role, grants and default privileges given. It compares a snapshot of
the catalog before and after, so a converge with nothing to do reports no change. plugins/modules/
cmx_pg_roles.py wraps it.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field

from ansible_collections.cleanmatex.infra.plugins.module_utils.pg_scram import parse_verifier, scram_verifier

KINDS = ("migration", "app", "health", "pgbouncer_admin")
NAME_PATTERN = r"[a-z_][a-z0-9_]{0,62}"
HISTORY_SCHEMA = "supabase_migrations"
# Attributes every managed role gets; only LOGIN differs by kind.
_ATTRIBUTES = "NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS INHERIT CONNECTION LIMIT -1"
_LOGIN = {"migration": True, "app": True, "health": True, "pgbouncer_admin": False}
# Per-role settings (ALTER ROLE ... SET), in every database.
_SETTINGS = {"health": {"default_transaction_read_only": "on"}}
APP_TABLE_PRIVILEGES = "SELECT, INSERT, UPDATE, DELETE"


@dataclass
class Role:
    name: str
    password: str
    kind: str

    def __repr__(self) -> str:  # never the password
        return f"Role({self.name!r}, kind={self.kind!r})"


@dataclass
class Result:
    changed: bool = False
    created: list[str] = field(default_factory=list)
    passwords_set: list[str] = field(default_factory=list)
    owners_moved: list[str] = field(default_factory=list)


class RoleError(ValueError):
    """The roles asked for cannot be applied (bad name, duplicate, the superuser itself)."""


class PasswordMismatch(RuntimeError):
    """A managed role exists with another password, and rotation was not asked for."""


def quote_ident(value: str) -> str:
    return '"' + value.replace('"', '""') + '"'


def quote_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def check_roles(roles: list[Role], superuser: str) -> None:
    """One role per kind at most, names following NAME_PATTERN, all different and none the superuser."""
    problems = []
    seen: dict[str, str] = {}
    kinds: set[str] = set()
    for role in roles:
        if role.kind not in KINDS:
            problems.append(f"{role.name}: unknown kind {role.kind!r} (one of {', '.join(KINDS)})")
        elif role.kind in kinds:
            problems.append(f"two roles of kind {role.kind}")
        kinds.add(role.kind)
        if not re.fullmatch(NAME_PATTERN, role.name):
            problems.append(f"{role.name!r} is not a role name (pattern ^{NAME_PATTERN}$)")
        if role.name == superuser:
            problems.append(f"the {role.kind} role cannot be the superuser {superuser}: give it its own name")
        elif role.name in seen:
            problems.append(f"the {role.kind} and {seen[role.name]} roles have the same name {role.name}")
        seen.setdefault(role.name, role.kind)
        if not role.password:
            problems.append(f"the {role.kind} role {role.name} has an empty password")
    if problems:
        raise RoleError("; ".join(problems))


def password_matches(stored: str | None, password: str) -> bool:
    """Whether pg_authid.rolpassword `stored` is the SCRAM verifier of `password` (checked here, with the
    stored salt and iteration count: the plain password never goes to the server)."""
    if not stored:
        return False
    try:
        iterations, salt = parse_verifier(stored)
    except ValueError:
        return False
    return scram_verifier(password, salt, iterations) == stored


_SNAPSHOT = """
SELECT concat_ws(E'\\n',
  (SELECT string_agg(concat_ws(' ', rolname, rolsuper, rolinherit, rolcreaterole, rolcreatedb, rolcanlogin,
                               rolreplication, rolbypassrls, rolconnlimit, md5(coalesce(rolpassword, ''))),
                     ',' ORDER BY rolname)
     FROM pg_authid WHERE rolname = ANY(%(roles)s)),
  (SELECT string_agg(concat_ws(' ', r.rolname, s.setdatabase, s.setconfig::text), ',' ORDER BY r.rolname)
     FROM pg_db_role_setting s JOIN pg_roles r ON r.oid = s.setrole WHERE r.rolname = ANY(%(roles)s)),
  (SELECT datacl::text FROM pg_database WHERE datname = current_database()),
  (SELECT string_agg(concat_ws(' ', nspname, nspowner, nspacl::text), ',' ORDER BY nspname)
     FROM pg_namespace WHERE nspname = ANY(%(schemas)s)),
  (SELECT string_agg(concat_ws(' ', c.oid, c.relowner, c.relacl::text), ',' ORDER BY c.oid)
     FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = ANY(%(schemas)s)),
  (SELECT string_agg(concat_ws(' ', p.oid, p.proowner, p.proacl::text), ',' ORDER BY p.oid)
     FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = ANY(%(schemas)s)),
  (SELECT string_agg(concat_ws(' ', t.oid, t.typowner, t.typacl::text), ',' ORDER BY t.oid)
     FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace WHERE n.nspname = ANY(%(schemas)s)),
  (SELECT string_agg(concat_ws(' ', defaclrole, defaclnamespace, defaclobjtype, defaclacl::text), ','
                     ORDER BY defaclrole, defaclnamespace, defaclobjtype)
     FROM pg_default_acl)
)
"""


def snapshot(cursor, roles: list[str], schemas: list[str]) -> str:
    """A digest of everything apply_roles may change (role attributes and password digests, settings,
    database and schema ACLs, owners and ACLs in the schemas, default privileges)."""
    cursor.execute(_SNAPSHOT, {"roles": roles, "schemas": schemas})
    return hashlib.sha256((cursor.fetchone()[0] or "").encode()).hexdigest()


def _ensure_role(cursor, role: Role, rotate: bool, result: Result) -> None:
    login = "LOGIN" if _LOGIN[role.kind] else "NOLOGIN"
    cursor.execute("SELECT rolpassword FROM pg_authid WHERE rolname = %s", (role.name,))
    row = cursor.fetchone()
    name = quote_ident(role.name)
    if row is None:
        verifier = quote_literal(scram_verifier(role.password))
        cursor.execute(f"CREATE ROLE {name} WITH {login} {_ATTRIBUTES} PASSWORD {verifier}")
        result.created.append(role.name)
    else:
        cursor.execute(f"ALTER ROLE {name} WITH {login} {_ATTRIBUTES}")
        if not password_matches(row[0], role.password):
            if row[0] and not rotate:
                raise PasswordMismatch(
                    f"role {role.name} ({role.kind}) exists with another password than the inventory's. "
                    "If the vault is stale, put the current password in it; to set the database's password "
                    "to the inventory's, re-run with -e cmx_postgres_password_rotate=true"
                )
            verifier = quote_literal(scram_verifier(role.password))
            cursor.execute(f"ALTER ROLE {name} WITH PASSWORD {verifier}")
            result.passwords_set.append(role.name)
    wanted = _SETTINGS.get(role.kind, {})
    for setting, value in wanted.items():
        cursor.execute(
            "SELECT 1 FROM pg_db_role_setting s JOIN pg_roles r ON r.oid = s.setrole "
            "WHERE r.rolname = %s AND s.setdatabase = 0 AND %s = ANY(s.setconfig)",
            (role.name, f"{setting}={value}"),
        )
        if cursor.fetchone() is None:
            cursor.execute(f"ALTER ROLE {name} SET {quote_ident(setting)} = {quote_literal(value)}")


# Objects in the app schemas the superuser owns and that no extension owns: (kind, identity, ALTER form).
_OWNED_OBJECTS = """
WITH schemas AS (SELECT oid, nspname FROM pg_namespace WHERE nspname = ANY(%(schemas)s)),
     ext AS (SELECT classid, objid FROM pg_depend WHERE deptype = 'e')
SELECT 'TABLE', c.oid::regclass::text, CASE c.relkind WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW'
       WHEN 'f' THEN 'FOREIGN TABLE' WHEN 'c' THEN 'TYPE' ELSE 'TABLE' END
  FROM pg_class c JOIN schemas s ON s.oid = c.relnamespace
 WHERE c.relowner = %(owner_oid)s AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'c')
   AND NOT EXISTS (SELECT 1 FROM ext WHERE ext.classid = 'pg_class'::regclass AND ext.objid = c.oid)
UNION ALL
SELECT 'FUNCTION', p.oid::regprocedure::text, 'ROUTINE'
  FROM pg_proc p JOIN schemas s ON s.oid = p.pronamespace
 WHERE p.proowner = %(owner_oid)s AND p.prokind IN ('f', 'p', 'w')
   AND NOT EXISTS (SELECT 1 FROM ext WHERE ext.classid = 'pg_proc'::regclass AND ext.objid = p.oid)
UNION ALL
SELECT 'TYPE', t.oid::regtype::text, CASE t.typtype WHEN 'd' THEN 'DOMAIN' ELSE 'TYPE' END
  FROM pg_type t JOIN schemas s ON s.oid = t.typnamespace
 WHERE t.typowner = %(owner_oid)s AND t.typtype IN ('e', 'd', 'r')
   AND NOT EXISTS (SELECT 1 FROM ext WHERE ext.classid = 'pg_type'::regclass AND ext.objid = t.oid)
"""
# Sequences are moved after the tables: one owned by a column (serial, identity) follows its table.
_OWNED_SEQUENCES = """
SELECT c.oid::regclass::text
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = ANY(%(schemas)s) AND c.relkind = 'S' AND c.relowner = %(owner_oid)s
   AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
                   AND d.deptype IN ('a', 'i', 'e'))
"""


def _move_ownership(cursor, superuser: str, owner: str, schemas: list[str], result: Result) -> None:
    cursor.execute("SELECT oid FROM pg_roles WHERE rolname = %s", (superuser,))
    params = {"schemas": schemas, "owner_oid": cursor.fetchone()[0]}
    to = quote_ident(owner)
    cursor.execute(_OWNED_OBJECTS, params)
    for _kind, identity, form in cursor.fetchall():
        cursor.execute(f"ALTER {form} {identity} OWNER TO {to}")
        result.owners_moved.append(identity)
    cursor.execute(_OWNED_SEQUENCES, params)
    for (identity,) in cursor.fetchall():
        cursor.execute(f"ALTER SEQUENCE {identity} OWNER TO {to}")
        result.owners_moved.append(identity)
    cursor.execute(
        "SELECT nspname FROM pg_namespace WHERE nspname = ANY(%s) "
        "AND nspowner = (SELECT oid FROM pg_roles WHERE rolname = %s)",
        ([s for s in schemas if s != "public"], superuser),
    )
    for (schema,) in cursor.fetchall():
        cursor.execute(f"ALTER SCHEMA {quote_ident(schema)} OWNER TO {to}")
        result.owners_moved.append(schema)


def _grants(cursor, by_kind: dict[str, Role], app_schemas: list[str], read_roles: list[str]) -> None:
    cursor.execute("SELECT current_database()")
    database = quote_ident(cursor.fetchone()[0])
    migration, app, health = (by_kind.get(kind) for kind in ("migration", "app", "health"))
    for role in (migration, app, health):
        if role:
            cursor.execute(f"GRANT CONNECT ON DATABASE {database} TO {quote_ident(role.name)}")
    cursor.execute("SELECT rolname FROM pg_roles WHERE rolname = ANY(%s)", (read_roles,))
    readers = [quote_ident(name) for (name,) in cursor.fetchall()]
    if migration:
        # CREATE SCHEMA IF NOT EXISTS supabase_migrations checks this privilege even when it exists.
        cursor.execute(f"GRANT CREATE ON DATABASE {database} TO {quote_ident(migration.name)}")
    for schema in app_schemas:
        cursor.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,))
        if cursor.fetchone() is None:
            continue
        nsp = quote_ident(schema)
        # PostgreSQL 15+ already withholds CREATE on public from PUBLIC; a cluster created otherwise too.
        cursor.execute(f"REVOKE CREATE ON SCHEMA {nsp} FROM PUBLIC")
        if migration:
            cursor.execute(f"GRANT USAGE, CREATE ON SCHEMA {nsp} TO {quote_ident(migration.name)}")
        if app:
            who = quote_ident(app.name)
            cursor.execute(f"GRANT USAGE ON SCHEMA {nsp} TO {who}")
            cursor.execute(f"GRANT {APP_TABLE_PRIVILEGES} ON ALL TABLES IN SCHEMA {nsp} TO {who}")
            cursor.execute(f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {nsp} TO {who}")
            cursor.execute(f"GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA {nsp} TO {who}")
        if migration:
            defaults = f"ALTER DEFAULT PRIVILEGES FOR ROLE {quote_ident(migration.name)} IN SCHEMA {nsp}"
            if app:
                who = quote_ident(app.name)
                cursor.execute(f"{defaults} GRANT {APP_TABLE_PRIVILEGES} ON TABLES TO {who}")
                cursor.execute(f"{defaults} GRANT USAGE, SELECT ON SEQUENCES TO {who}")
                cursor.execute(f"{defaults} GRANT EXECUTE ON FUNCTIONS TO {who}")
            for reader in readers:
                cursor.execute(f"{defaults} GRANT SELECT ON TABLES TO {reader}")
                cursor.execute(f"{defaults} GRANT SELECT ON SEQUENCES TO {reader}")
        for reader in readers:
            cursor.execute(f"GRANT USAGE ON SCHEMA {nsp} TO {reader}")
            cursor.execute(f"GRANT SELECT ON ALL TABLES IN SCHEMA {nsp} TO {reader}")


def apply_roles(
    connection,
    roles: list[Role],
    app_schemas: list[str] | None = None,
    read_roles: list[str] | None = None,
    rotate: bool = False,
    check_mode: bool = False,
) -> Result:
    """Create or correct `roles`, their passwords, grants and the ownership of the app schemas' objects,
    in one transaction on `connection` (a superuser's, to the application database).

    Objects the connected superuser owns in `app_schemas` and in supabase_migrations go to the migration
    role. `read_roles` that exist (cmx_readonly) get SELECT on tables the migration role creates.
    Raises RoleError for unusable roles and PasswordMismatch when a role's password differs and not
    `rotate`; nothing is changed then. In check mode everything is rolled back; `changed` says whether
    a real run would change something.
    """
    app_schemas = list(app_schemas or ["public"])
    read_roles = list(read_roles or [])
    connection.autocommit = False
    try:
        with connection.cursor() as cursor:
            # Identities printed by regclass/regprocedure/regtype come schema-qualified.
            cursor.execute("SET LOCAL search_path = pg_catalog")
            cursor.execute(
                "SELECT current_user, (SELECT rolsuper FROM pg_roles WHERE rolname = current_user)"
            )
            superuser, is_super = cursor.fetchone()
            if not is_super:
                raise RoleError(
                    f"{superuser} is not a superuser: the roles must be managed by the bootstrap role"
                )
            check_roles(roles, superuser)
            names = [role.name for role in roles]
            schemas = [*app_schemas, HISTORY_SCHEMA]
            before = snapshot(cursor, names, schemas)
            result = Result()
            for role in roles:
                _ensure_role(cursor, role, rotate, result)
            by_kind = {role.kind: role for role in roles}
            if "migration" in by_kind:
                _move_ownership(cursor, superuser, by_kind["migration"].name, schemas, result)
            _grants(cursor, by_kind, app_schemas, read_roles)
            result.changed = snapshot(cursor, names, schemas) != before
    except BaseException:
        connection.rollback()
        raise
    if check_mode:
        connection.rollback()
    else:
        connection.commit()
    return result
