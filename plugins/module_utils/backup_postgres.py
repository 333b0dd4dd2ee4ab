# Copyright: CleanMateX DevOps
# Apache-2.0 (see galaxy.yml)
"""PostgreSQL half of a backup and a restore: pg_dump/pg_dumpall/pg_restore run inside the server's
container (same major version as the server, whatever the host has), row counts over psycopg2.

External (managed) server: there is no container to exec into, so the same tools run in a one-off
container of the stack's PostgreSQL image (``image``; backup_exec.Runner) on the host network, connected
like psycopg2 is (``PGHOST``/``PGPORT``/``PGSSLMODE``/``PGSSLROOTCERT``, the CA file mounted read-only,
``PGPASSWORD`` by environment). The roles are dumped with ``pg_dumpall --roles-only`` (a managed
provider's tablespaces are its own), and with ``--no-role-passwords`` when the login is not a superuser
(RDS and Supabase masters are not: pg_authid is unreadable to them); the manifest records both. A restore
as a non-superuser applies each role statement it may not run (the provider's own roles, SUPERUSER or
REPLICATION attributes) as a warning instead of failing the swap.

Dump: one REPEATABLE READ transaction exports its snapshot; ``pg_dump --snapshot`` dumps exactly that
snapshot while the same transaction counts the rows of every table in a second thread. The counts in
the manifest are therefore those of the dump, even with the application writing meanwhile, and
counting costs no extra wall time.

Restore: ``pg_restore --single-transaction --exit-on-error`` into a freshly created ``<db>__restore``
database (roles it refers to that the cluster lacks are created bare first). Its row counts are compared
with the manifest; only then does one transaction apply the backup's roles (``prepare_globals_sql``),
rename the live database aside (``<db>_before_restore_<UTC time>``) and rename the restored copy into
place. Any failure before that commit drops the copy and the roles created for it: the live database and
the cluster's roles are untouched. Last, the stack's init SQL runs again in the restored database (pg_dump
without ``--create`` does not carry database-level grants such as CONNECT for ``cmx_readonly``), and only
then are set-aside copies beyond ``keep_previous`` dropped.
"""

from __future__ import annotations

import datetime
import os
import re
import shlex
import threading
import time

from ansible_collections.cleanmatex.infra.plugins.module_utils import backup, probes
from ansible_collections.cleanmatex.infra.plugins.module_utils.backup_exec import (
    ExecError,
    Runner,
    as_runner,
    exec_capture,
    exec_from_file,
    exec_to_file,
)

try:
    import psycopg2
    from psycopg2 import extensions, sql
except ImportError:  # reported by the modules through missing_required_lib
    psycopg2 = None

DUMP_DIR = "postgres"
GLOBALS_FILE = f"{DUMP_DIR}/globals.sql"
RESTORE_SUFFIX = "__restore"
PREVIOUS_INFIX = "_before_restore_"
SWAP_ATTEMPTS = 3
# pg_dump --compress when none is asked for and pg_dump is 16 or newer (dump_compression).
DEFAULT_COMPRESSION = "lz4"
# Settings of the pg_restore session (PGOPTIONS): its index builds sort in memory instead of in temporary
# files (the server's maintenance_work_mem is sized for a running application, not a bulk load).
RESTORE_SESSION_OPTIONS = "-c maintenance_work_mem=256MB"
MAX_IDENTIFIER = 63

TABLES_SQL = """
SELECT n.nspname, c.relname
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'r'
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname !~ '^pg_(toast|temp_)'
ORDER BY 1, 2
"""
DATABASE_SQL = """
SELECT pg_catalog.pg_export_snapshot(),
       pg_catalog.current_setting('server_version'),
       pg_catalog.current_setting('server_version_num')::int,
       pg_catalog.pg_get_userbyid(d.datdba),
       pg_catalog.pg_encoding_to_char(d.encoding),
       pg_catalog.to_jsonb(d)
FROM pg_catalog.pg_database d
WHERE d.datname = pg_catalog.current_database()
"""
_CREATE_ROLE = re.compile(r"^CREATE ROLE (.+);$", re.MULTILINE)


# The `connection` option of the backup modules (argument spec), as connect() takes it.
CONNECTION_OPTIONS = {
    "host": {"type": "str", "default": "127.0.0.1"},
    "port": {"type": "int", "default": 5432},
    "user": {"type": "str", "required": True},
    "password": {"type": "str", "no_log": True},
    "dbname": {"type": "str", "required": True},
    "sslmode": {
        "type": "str",
        "default": "disable",
        "choices": ["disable", "allow", "prefer", "require", "verify-ca", "verify-full"],
    },
    # The stack's CA file when it serves TLS (cmx_tls_enabled, with sslmode verify-full).
    "sslrootcert": {"type": "path"},
}


class PostgresBackupError(backup.BackupError):
    """A dump or restore step failed; the message says which one and why."""


def client(connection: dict, container: str = "", image: str = "", files=()) -> tuple[Runner, dict]:
    """Where the client tools run, and their environment (values passed by name, never on argv).

    ``container``: ``docker exec`` into the server's container (its socket, as before). Otherwise a
    one-off container of ``image`` on the host network reaches the server as psycopg2 does; the CA file
    and ``files`` (an SQL file on the host) are mounted read-only at the same paths.
    """
    env = {"PGPASSWORD": connection["password"]} if connection.get("password") else {}
    if container:
        return Runner(container=container), env
    if not image:
        raise PostgresBackupError(
            "no PostgreSQL container and no image to run the client tools in (postgres.image, "
            "CMX_POSTGRES_IMAGE of the stack's .env)"
        )
    mounts = [str(path) for path in files if path]
    env.update(
        PGHOST=str(connection.get("host") or "127.0.0.1"),
        PGPORT=str(connection.get("port") or 5432),
        PGSSLMODE=str(connection.get("sslmode") or "disable"),
        PGCONNECT_TIMEOUT="10",
    )
    if connection.get("sslrootcert"):
        env["PGSSLROOTCERT"] = str(connection["sslrootcert"])
        mounts.insert(0, env["PGSSLROOTCERT"])
    for path in mounts:
        if not os.path.isfile(path):
            raise PostgresBackupError(
                f"{path} is not a file on this host (needed by the PostgreSQL client tools)"
            )
    return Runner(image=image, files=tuple(dict.fromkeys(mounts))), env


def connect(params: dict, dbname: str | None = None, application_name: str = "cmx_backup"):
    """psycopg2 connection from ``host/port/user/password/dbname/sslmode/sslrootcert`` (None dropped)."""
    kwargs = {key: value for key, value in params.items() if value not in (None, "")}
    if dbname:
        kwargs["dbname"] = dbname
    kwargs.setdefault("connect_timeout", 10)
    kwargs["application_name"] = application_name
    return psycopg2.connect(**kwargs)


def mask_secrets(text: str) -> str:
    """Error output of psql may quote a statement; never let a (hashed) password through: PASSWORD '..'
    literals (doubled quotes, E'' and dollar quotes too), password=.. values and URL credentials."""
    return probes.redact(text or "")


def dump_file_name(database: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", database) or "database"
    return f"{DUMP_DIR}/{safe}.dump"


def table_row_counts(cursor) -> dict[str, int]:
    """Exact ``count(*)`` of every ordinary table (partitions included), keyed ``schema.table``."""
    cursor.execute(TABLES_SQL)
    tables = cursor.fetchall()
    counts = {}
    for schema, table in tables:
        cursor.execute(
            sql.SQL("SELECT count(*) FROM {}.{}").format(sql.Identifier(schema), sql.Identifier(table))
        )
        counts[f"{schema}.{table}"] = cursor.fetchone()[0]
    return counts


INSERTED_SQL = """
SELECT n.nspname, c.relname, coalesce(pg_catalog.pg_stat_get_tuples_inserted(c.oid), 0)
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'r'
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname !~ '^pg_(toast|temp_)'
ORDER BY 1, 2
"""


def restored_row_counts(
    connection: dict, database: str, expected: dict[str, int], exact: bool = False, wait: float = 3.0
) -> tuple[dict[str, int], str]:
    """Row counts of a database pg_restore has just filled, and how they were obtained.

    Fast path: the database is brand new and only pg_restore wrote to it, in one committed transaction,
    so the rows each table holds are the rows inserted into it, which the statistics count
    (``pg_stat_get_tuples_inserted``) without reading 1 GB of freshly written pages. The statistics of
    the exiting pg_restore session may take a moment to be flushed: they are read again for ``wait``
    seconds while they differ from ``expected``. Anything still different, or ``exact``, is settled
    with ``count(*)`` on every table.
    """
    conn = connect(connection, dbname=database, application_name="cmx_restore")
    conn.autocommit = True  # each read sees fresh statistics
    try:
        cursor = conn.cursor()
        if not exact:
            deadline = time.monotonic() + wait
            while True:
                cursor.execute(INSERTED_SQL)
                inserted = {f"{schema}.{table}": rows for schema, table, rows in cursor.fetchall()}
                if inserted == expected:
                    return inserted, "rows inserted by pg_restore (statistics of the new database)"
                if time.monotonic() > deadline:
                    break
                time.sleep(0.1)
        return table_row_counts(cursor), "count(*)"
    finally:
        conn.close()


def _tool_version(container, tool: str, docker: str) -> str:
    result = exec_capture(container, [tool, "--version"], docker=docker)
    return re.sub(r"^\S+ \(PostgreSQL\) ", "", result.stdout.decode().strip())


def dump_compression(requested: str, pg_dump_version: str) -> str:
    """The ``pg_dump --compress`` value a dump uses ("" = pg_dump's own default, gzip).

    ``requested`` empty (the default): ``lz4`` when pg_dump is 16 or newer (the first to offer it), else
    pg_dump's default. lz4 costs a fraction of gzip's CPU time at both ends (measured in
    docs/benchmarks.md), for a larger file; the archive stays custom format, which every pg_restore of
    the same or a newer major reads. Anything else (``gzip:6``, ``zstd:3``, ``none``) is used as given.
    """
    if requested:
        return requested
    found = re.match(r"[0-9]+", pg_dump_version or "")
    return DEFAULT_COMPRESSION if found and int(found.group(0)) >= 16 else ""


def dump(
    *,
    connection: dict,
    container: str,
    folder: str,
    compression: str = "",
    docker: str = "docker",
    image: str = "",
) -> dict:
    """Dump the database of ``connection`` and the cluster's roles into ``folder/postgres/``.

    The tools run in ``container``, or (empty) in a one-off container of ``image`` (see :func:`client`).
    ``compression``: see :func:`dump_compression`.
    Returns ``{"files": {relpath: {size, sha256}}, "postgres": {...manifest section...}}``.
    """
    user, database = connection["user"], connection["dbname"]
    runner, env = client(connection, container, image)
    os.makedirs(os.path.join(folder, DUMP_DIR), mode=0o700, exist_ok=True)
    dump_rel = dump_file_name(database)
    pg_dump_version = _tool_version(runner, "pg_dump", docker)
    compression = dump_compression(compression, pg_dump_version)

    conn = connect(connection, application_name="cmx_backup")
    try:
        conn.set_session(isolation_level=extensions.ISOLATION_LEVEL_REPEATABLE_READ, readonly=True)
        cursor = conn.cursor()
        superuser = True
        if not container:
            cursor.execute("SELECT pg_catalog.current_setting('is_superuser') = 'on'")
            superuser = cursor.fetchone()[0]
        cursor.execute(DATABASE_SQL)
        snapshot, server_version, version_num, owner, encoding, row = cursor.fetchone()

        counted: dict = {}

        def count():
            try:
                counted["tables"] = table_row_counts(cursor)
            except Exception as exc:  # reported after pg_dump ended
                counted["error"] = exc

        counter = threading.Thread(target=count, name="cmx-backup-row-counts")
        counter.start()
        argv = [
            "pg_dump",
            "--format=custom",
            "--no-password",
            f"--snapshot={snapshot}",
            f"--username={user}",
            f"--dbname={database}",
        ]
        if compression:
            argv.append(f"--compress={compression}")
        try:
            dumped = exec_to_file(runner, argv, os.path.join(folder, dump_rel), env=env, docker=docker)
        finally:
            counter.join()
        if "error" in counted:
            raise PostgresBackupError(f"counting the rows of the snapshot failed: {counted['error']}")
        conn.rollback()
    finally:
        conn.close()

    globals_argv = ["pg_dumpall", "--globals-only", "--no-password", f"--username={user}"]
    if not container:
        # A managed server's tablespaces are the provider's; its master login cannot read pg_authid.
        globals_argv[1] = "--roles-only"
        if not superuser:
            globals_argv.insert(2, "--no-role-passwords")
    globals_dumped = exec_to_file(
        runner,
        globals_argv,
        os.path.join(folder, GLOBALS_FILE),
        env=env,
        docker=docker,
    )
    extra = {}
    if not container:
        extra = {"client_image": image, "globals_scope": "roles", "role_passwords": bool(superuser)}
    return {
        "files": {
            dump_rel: {"size": dumped.size, "sha256": dumped.sha256},
            GLOBALS_FILE: {"size": globals_dumped.size, "sha256": globals_dumped.sha256},
        },
        "postgres": {
            "server_version": server_version,
            "server_version_num": version_num,
            "pg_dump_version": pg_dump_version,
            "database": database,
            "owner": owner,
            "encoding": encoding,
            "collate": row.get("datcollate"),
            "ctype": row.get("datctype"),
            "locale_provider": row.get("datlocprovider"),
            "icu_locale": row.get("datlocale") or row.get("daticulocale"),
            "dump_file": dump_rel,
            # what --compress got ("" = pg_dump's default, gzip); pg_restore reads any of them
            "compression": compression,
            "globals_file": GLOBALS_FILE,
            "dump_seconds": round(dumped.seconds, 3),
            "tables": counted["tables"],
            **extra,
        },
    }


def restore_database_name(database: str) -> str:
    """Name of the scratch database a restore goes into (PostgreSQL truncates names at 63 bytes)."""
    base = database.encode()[: MAX_IDENTIFIER - len(RESTORE_SUFFIX)].decode(errors="ignore")
    return base + RESTORE_SUFFIX


def _previous_base(database: str) -> str:
    room = MAX_IDENTIFIER - len(PREVIOUS_INFIX) - len("20250601_120000_99")
    return database.encode()[:room].decode(errors="ignore") + PREVIOUS_INFIX


def previous_database_name(database: str, now: datetime.datetime, taken=()) -> str:
    """``<db>_before_restore_<UTC YYYYMMDD_HHMMSS>`` (``_2``, ``_3`` ... when taken): where the live database
    goes. Lower case and digits only, so that it needs no quotes in SQL."""
    name = _previous_base(database) + now.astimezone(datetime.UTC).strftime("%Y%m%d_%H%M%S")
    candidate, seq = name, 1
    while candidate in taken:
        seq += 1
        candidate = f"{name}_{seq}"
    return candidate


def previous_databases(names, database: str) -> list[str]:
    """The set-aside copies of ``database`` among ``names``, oldest first."""
    pattern = re.compile(re.escape(_previous_base(database)) + r"([0-9]{8}_[0-9]{6})(?:_([0-9]+))?")
    found = [(m.group(1), int(m.group(2) or 1), n) for n in names if (m := pattern.fullmatch(n))]
    return [name for *_, name in sorted(found)]


def rollback_command(container, user: str, database: str, previous: str, env: dict | None = None) -> str:
    """A command that puts the set-aside database back under the live name, in one transaction.

    ``container`` is a container name or a Runner; for a one-off container (external server) the
    connection settings of ``env`` are spelled out, PGPASSWORD is taken from the caller's environment."""
    unwanted = database.encode()[: MAX_IDENTIFIER - 17].decode(errors="ignore") + "_unwanted_restore"
    statements = (
        f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $n${database}$n$ "
        "AND pid <> pg_backend_pid(); "
        f"ALTER DATABASE {backup.quote_ident(database)} RENAME TO {backup.quote_ident(unwanted)}; "
        f"ALTER DATABASE {backup.quote_ident(previous)} RENAME TO {backup.quote_ident(database)};"
    )
    runner = as_runner(container)
    if runner.container:
        return f"docker exec {runner.container} psql -U {user} -d postgres -c {shlex.quote(statements)}"
    shown = [f"{name}={value}" for name, value in sorted((env or {}).items()) if name != "PGPASSWORD"]
    argv = runner.argv("docker", ["psql", "-U", user, "-d", "postgres", "-c", statements], ["PGPASSWORD"])
    options = [item for name in shown for item in ("-e", name)]
    return shlex.join(argv[:2] + options + argv[2:]) + "  # with PGPASSWORD set to the password"


def create_database_sql(name: str, owner: str, section: dict, with_locale: bool = True):
    """``CREATE DATABASE`` from template0 with the backed-up database's encoding and locale."""
    parts = [
        sql.SQL("CREATE DATABASE {} OWNER {} TEMPLATE template0").format(
            sql.Identifier(name), sql.Identifier(owner)
        )
    ]
    if section.get("encoding"):
        parts.append(sql.SQL("ENCODING {}").format(sql.Literal(section["encoding"])))
    if with_locale:
        provider = {"c": "libc", "i": "icu", "b": "builtin"}.get(section.get("locale_provider") or "c")
        if provider == "libc":
            if section.get("collate"):
                parts.append(sql.SQL("LC_COLLATE {}").format(sql.Literal(section["collate"])))
            if section.get("ctype"):
                parts.append(sql.SQL("LC_CTYPE {}").format(sql.Literal(section["ctype"])))
    return sql.SQL(" ").join(parts)


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _drop_database(cursor, name: str, version_num: int) -> None:
    force = sql.SQL(" WITH (FORCE)") if version_num >= 130000 else sql.SQL("")
    cursor.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)) + force)


def _role_exists(cursor, role: str) -> bool:
    cursor.execute("SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = %s", (role,))
    return cursor.fetchone() is not None


def _database_oid(cursor, name: str):
    cursor.execute("SELECT oid FROM pg_catalog.pg_database WHERE datname = %s", (name,))
    row = cursor.fetchone()
    return row[0] if row else None


def globals_roles(globals_sql: str) -> list[str]:
    """Role names of the ``CREATE ROLE`` lines of ``pg_dumpall --globals-only`` output (unquoted)."""
    names = []
    for quoted in _CREATE_ROLE.findall(globals_sql):
        if quoted.startswith('"') and quoted.endswith('"'):
            quoted = quoted[1:-1].replace('""', '"')
        names.append(quoted)
    return names


def swap_sql(globals_sql: str, database: str, scratch: str, previous: str | None) -> str:
    """One transaction: the backup's roles, then the live database renamed aside and the restored copy
    renamed into its place. Committed together or not at all (a dropped connection rolls all of it back);
    RENAME locks the database, so new connections wait for the commit and then reach the restored copy.
    """
    names = ", ".join(_literal(name) for name in (database, scratch))
    renames = [f"ALTER DATABASE {backup.quote_ident(scratch)} RENAME TO {backup.quote_ident(database)};"]
    if previous:
        renames.insert(
            0, f"ALTER DATABASE {backup.quote_ident(database)} RENAME TO {backup.quote_ident(previous)};"
        )
    return "\n".join(
        [
            "BEGIN;",
            globals_sql,
            "SELECT count(pg_catalog.pg_terminate_backend(pid)) FROM pg_catalog.pg_stat_activity",
            f"  WHERE datname IN ({names}) AND pid <> pg_catalog.pg_backend_pid();",
            *renames,
            "COMMIT;",
            "",
        ]
    )


def _psql(container, user, dbname, env, docker, extra=(), stdin: bytes | None = None):
    """psql in ``container`` (a name or a Runner) with ON_ERROR_STOP; returns the ExecResult."""
    argv = ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "--no-password", f"--username={user}"]
    return exec_capture(container, [*argv, f"--dbname={dbname}", *extra], env=env, stdin=stdin, docker=docker)


def _abandon(connection, maintenance_db, database, scratch, scratch_oid, created_roles) -> list[str]:
    """Undo a restore that did not swap: drop the scratch database and the roles created for it."""
    problems = []
    try:
        conn = connect(connection, dbname=maintenance_db, application_name="cmx_restore")
    except psycopg2.Error as exc:
        return [f"could not connect to drop {scratch}: {str(exc).strip()}"]
    conn.autocommit = True
    try:
        cursor = conn.cursor()
        if scratch_oid is not None and _database_oid(cursor, database) == scratch_oid:
            return [f"none: {database} is the restored copy already (the swap was committed)"]
        cursor.execute("SELECT pg_catalog.current_setting('server_version_num')::int")
        version_num = cursor.fetchone()[0]
        statements = [(scratch, lambda: _drop_database(cursor, scratch, version_num))]
        for role in created_roles:
            drop = sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role))
            statements.append((f"role {role}", lambda drop=drop: cursor.execute(drop)))
        for what, statement in statements:
            try:
                statement()
            except psycopg2.Error as exc:
                problems.append(f"could not drop {what}: {str(exc).strip()}")
    finally:
        conn.close()
    return problems


def skipped_statements(output: bytes) -> list[str]:
    """The role statements a non-superuser restore skipped (WARNING lines of backup.SKIPPED_MARK)."""
    text = output.decode("utf-8", errors="replace")
    found = re.findall(rf"WARNING:\s+{backup.SKIPPED_MARK}: (.*)", text)
    return [mask_secrets(line.strip()) for line in found]


def _swap(container, user, env, docker, maintenance_db, script, cursor, database, scratch_oid) -> str:
    """Run :func:`swap_sql`; retried while other sessions keep the database busy. Returns a warning or ""."""
    for attempt in range(1, SWAP_ATTEMPTS + 1):
        try:
            done = _psql(container, user, maintenance_db, env, docker, stdin=script.encode())
            skipped = skipped_statements(done.stderr + done.stdout)
            if skipped:
                return f"{len(skipped)} role statement(s) of the backup skipped (not allowed): " + "; ".join(
                    skipped
                )
            return ""
        except ExecError as exc:
            if _database_oid(cursor, database) == scratch_oid:  # committed, only the reply was lost
                return f"psql reported an error after the swap was committed: {mask_secrets(str(exc))}"
            if "is being accessed by other users" in str(exc) and attempt < SWAP_ATTEMPTS:
                continue
            raise PostgresBackupError(
                f"replacing {database} by the restored copy failed, nothing was replaced (the swap and the "
                f"backup's roles are one transaction): {mask_secrets(str(exc))}"
            ) from exc
    return ""


def load(
    *,
    connection: dict,
    container: str,
    folder: str,
    section: dict,
    managed_roles: list[str],
    check_counts: bool = True,
    exact_counts: bool = False,
    docker: str = "docker",
    maintenance_db: str = "postgres",
    image: str = "",
) -> dict:
    """The first half of :func:`restore`: the backup into a fresh side database, its rows counted.

    Nothing live is touched: the side database ``<db>__restore`` and the roles created bare for it are
    the only changes, and any failure drops them again ("nothing was replaced"). Returns what
    :func:`swap_in` (or, to give up, :func:`abandon`) needs: ``scratch``, ``scratch_oid``,
    ``created_roles``, the counts (``tables``, ``counted_by``, ``problems``), ``warnings`` and
    ``restore_seconds``. Meanwhile the live data can still be backed up (restore.yml's backup first).
    """
    user, database = connection["user"], connection["dbname"]
    runner, env = client(connection, container, image)
    scratch = restore_database_name(database)
    warnings: list[str] = []
    with open(os.path.join(folder, section["globals_file"]), encoding="utf-8") as handle:
        globals_text = handle.read()

    admin = connect(connection, dbname=maintenance_db, application_name="cmx_restore")
    admin.autocommit = True
    created_roles: list[str] = []
    scratch_oid = None
    try:
        cursor = admin.cursor()
        cursor.execute("SELECT pg_catalog.current_setting('server_version_num')::int")
        version_num = cursor.fetchone()[0]
        if not container:
            # pg_restore newer than the server writes settings the server lacks (17: transaction_timeout).
            tools = _tool_version(runner, "pg_restore", docker)
            tools_major = int(re.match(r"[0-9]+", tools).group(0)) if re.match(r"[0-9]+", tools) else 0
            if tools_major > version_num // 10000:
                raise PostgresBackupError(
                    f"nothing was replaced: the client tools of {image} are PostgreSQL {tools}, the server "
                    f"is {version_num // 10000}; restore with an image of the server's major version "
                    "(cmx_postgres_image)"
                )
        if section.get("role_passwords") is False:
            warnings.append(
                "the backup has no role passwords (taken by a non-superuser): roles it creates have none"
            )

        # 1. Roles the dump's owners and grants refer to: the missing ones are created bare (no login, no
        #    password) for pg_restore; their attributes and memberships come with the swap.
        for role in globals_roles(globals_text):
            if not _role_exists(cursor, role):
                cursor.execute(sql.SQL("CREATE ROLE {}").format(sql.Identifier(role)))
                created_roles.append(role)
        owner = section.get("owner") or user
        if not _role_exists(cursor, owner):
            warnings.append(f"owner role {owner} of the backed-up database does not exist; {user} owns it")
            owner = user

        # 2. A fresh scratch database with the original encoding and locale.
        _drop_database(cursor, scratch, version_num)
        try:
            cursor.execute(create_database_sql(scratch, owner, section))
        except psycopg2.Error as exc:
            warnings.append(
                f"locale of the backup not available here ({str(exc).strip()}); server default used"
            )
            cursor.execute(create_database_sql(scratch, owner, section, with_locale=False))
        scratch_oid = _database_oid(cursor, scratch)

        # 3. pg_restore, all or nothing (any compression pg_dump wrote: gzip, lz4, zstd, none).
        dump_path = os.path.join(folder, section["dump_file"])
        try:
            restored = exec_from_file(
                runner,
                [
                    "pg_restore",
                    "--single-transaction",
                    "--exit-on-error",
                    "--no-password",
                    f"--username={user}",
                    f"--dbname={scratch}",
                ],
                dump_path,
                env={**env, "PGOPTIONS": RESTORE_SESSION_OPTIONS},
                docker=docker,
            )
        except ExecError as exc:
            raise PostgresBackupError(
                f"pg_restore of {section['dump_file']} failed, nothing was replaced: {mask_secrets(str(exc))}"
            ) from exc

        # 4. Same rows as the dump's snapshot?
        expected = section.get("tables") or {}
        tables, counted_by = restored_row_counts(connection, scratch, expected, exact=exact_counts)
        problems = backup.compare_counts(expected, tables)
        if problems and check_counts:
            raise PostgresBackupError(
                "row counts after pg_restore differ from the manifest, nothing was replaced: "
                + "; ".join(problems)
            )
    except (backup.BackupError, ExecError, psycopg2.Error) as exc:
        message = str(exc).strip()
        if not isinstance(exc, backup.BackupError):
            message = f"restore failed before the swap, nothing was replaced: {mask_secrets(message)}"
        loaded = {"scratch": scratch, "scratch_oid": scratch_oid, "created_roles": created_roles}
        cleanup = abandon(connection=connection, loaded=loaded, maintenance_db=maintenance_db)
        if cleanup:
            message += " (cleanup: " + "; ".join(cleanup) + ")"
        raise PostgresBackupError(message) from exc
    finally:
        admin.close()
    return {
        "scratch": scratch,
        "scratch_oid": scratch_oid,
        "created_roles": created_roles,
        "tables": tables,
        "counted_by": counted_by,
        "problems": problems,
        "warnings": warnings,
        "restore_seconds": round(restored.seconds, 3),
    }


def abandon(*, connection: dict, loaded: dict, maintenance_db: str = "postgres") -> list[str]:
    """Give up a :func:`load` that was not swapped in: drop its side database and the roles created for
    it (none when the swap was committed already). Returns what could not be cleaned up."""
    return _abandon(
        connection,
        maintenance_db,
        connection["dbname"],
        loaded.get("scratch") or restore_database_name(connection["dbname"]),
        loaded.get("scratch_oid"),
        list(loaded.get("created_roles") or []),
    )


def swap_in(
    *,
    connection: dict,
    container: str,
    folder: str,
    section: dict,
    managed_roles: list[str],
    loaded: dict,
    init_sql: str = "",
    docker: str = "docker",
    maintenance_db: str = "postgres",
    keep_previous: int = 1,
    now: datetime.datetime | None = None,
    image: str = "",
) -> dict:
    """The second half of :func:`restore`: the side database of :func:`load` takes the live one's place.

    One transaction applies the backup's roles and renames (steps 5); a failure before it commits drops
    the side database and the roles created for it. Then the init SQL (6) and the set-aside copies
    beyond ``keep_previous`` (7). Returns :func:`restore`'s result.
    """
    user, database = connection["user"], connection["dbname"]
    runner, env = client(connection, container, image)
    init_runner = runner
    if init_sql and not container:
        init_runner, _ = client(connection, container, image, files=(init_sql,))
    scratch, scratch_oid = loaded["scratch"], loaded.get("scratch_oid")
    warnings = list(loaded.get("warnings") or [])
    with open(os.path.join(folder, section["globals_file"]), encoding="utf-8") as handle:
        globals_text = handle.read()

    admin = connect(connection, dbname=maintenance_db, application_name="cmx_restore")
    admin.autocommit = True
    swapped = False
    try:
        cursor = admin.cursor()
        cursor.execute("SELECT pg_catalog.current_setting('is_superuser') = 'on'")
        superuser = cursor.fetchone()[0]
        if scratch_oid is None or _database_oid(cursor, scratch) != scratch_oid:
            raise PostgresBackupError(
                f"the restored copy {scratch} is gone (or another one took its name), nothing was replaced; "
                "run the restore again"
            )
        # A non-superuser (a managed server's master login) skips what it may not do, with a warning.
        globals_sql = backup.prepare_globals_sql(
            globals_text, managed_roles, tolerate_privileges=not superuser
        )
        # 5. Swap, with the backup's roles, in one transaction: the live database is renamed aside.
        cursor.execute("SELECT datname FROM pg_catalog.pg_database")
        names = {row[0] for row in cursor.fetchall()}
        moment = now or datetime.datetime.now(datetime.UTC)
        previous = previous_database_name(database, moment, names) if database in names else None
        script = swap_sql(globals_sql, database, scratch, previous)
        warning = _swap(runner, user, env, docker, maintenance_db, script, cursor, database, scratch_oid)
        swapped = True
        if warning:
            warnings.append(warning)
    except (backup.BackupError, ExecError, psycopg2.Error) as exc:
        if swapped:
            raise
        message = str(exc).strip()
        if not isinstance(exc, backup.BackupError):
            message = f"restore failed before the swap, nothing was replaced: {mask_secrets(message)}"
        cleanup = abandon(connection=connection, loaded=loaded, maintenance_db=maintenance_db)
        if cleanup:
            message += " (cleanup: " + "; ".join(cleanup) + ")"
        raise PostgresBackupError(message) from exc
    finally:
        admin.close()

    rollback = rollback_command(runner, user, database, previous, env) if previous else ""
    # 6. The stack's init SQL again: database-level grants (pg_dump without --create does not carry them).
    if init_sql:
        try:
            _psql(init_runner, user, database, env, docker, extra=[f"--file={init_sql}"])
        except ExecError as exc:
            kept = f" (the previous database is kept as {previous}; roll back with: {rollback})"
            raise PostgresBackupError(
                f"the database was restored{kept if previous else ''}, but re-running {init_sql} failed: "
                + mask_secrets(str(exc))
            ) from exc

    # 7. Verified and in place: set-aside copies beyond keep_previous go.
    dropped, kept_names = _prune_previous(connection, maintenance_db, database, keep_previous, warnings)
    tables = loaded.get("tables") or {}
    return {
        "tables": tables,
        "report": backup.count_report(section.get("tables") or {}, tables),
        "counted_by": loaded.get("counted_by", ""),
        "problems": loaded.get("problems") or [],
        "warnings": warnings,
        "restore_seconds": loaded.get("restore_seconds", 0),
        "previous_database": previous if previous in kept_names else None,
        "kept_previous": kept_names,
        "dropped_previous": dropped,
        "created_roles": list(loaded.get("created_roles") or []),
        "rollback": rollback if previous in kept_names else "",
    }


def restore(
    *,
    connection: dict,
    container: str,
    folder: str,
    section: dict,
    managed_roles: list[str],
    check_counts: bool = True,
    exact_counts: bool = False,
    init_sql: str = "",
    docker: str = "docker",
    maintenance_db: str = "postgres",
    keep_previous: int = 1,
    now: datetime.datetime | None = None,
    image: str = "",
) -> dict:
    """Restore the manifest's ``postgres`` section from ``folder`` (checksums already verified):
    :func:`load` then :func:`swap_in`.

    Until the swap commits, any failure drops the scratch database and the roles created for it: the live
    database and the cluster's roles are as they were ("nothing was replaced"). After the swap the live
    database's previous content is ``previous_database``; the ``keep_previous`` newest such copies are kept.
    The tools run in ``container``, or (empty) in a one-off container of ``image``; ``init_sql`` is then a
    file on the host (mounted read-only), else a path inside the container.
    """
    common = {
        "connection": connection,
        "container": container,
        "folder": folder,
        "section": section,
        "managed_roles": managed_roles,
        "docker": docker,
        "maintenance_db": maintenance_db,
        "image": image,
    }
    loaded = load(**common, check_counts=check_counts, exact_counts=exact_counts)
    return swap_in(**common, loaded=loaded, init_sql=init_sql, keep_previous=keep_previous, now=now)


def _prune_previous(
    connection: dict, maintenance_db: str, database: str, keep: int, warnings: list[str]
) -> tuple[list[str], list[str]]:
    """Drop the set-aside copies of ``database`` beyond the ``keep`` newest; returns (dropped, kept)."""
    conn = connect(connection, dbname=maintenance_db, application_name="cmx_restore")
    conn.autocommit = True
    dropped = []
    try:
        cursor = conn.cursor()
        cursor.execute("SELECT pg_catalog.current_setting('server_version_num')::int")
        version_num = cursor.fetchone()[0]
        cursor.execute("SELECT datname FROM pg_catalog.pg_database")
        found = previous_databases([row[0] for row in cursor.fetchall()], database)
        kept = found[len(found) - keep :] if keep > 0 else []
        for name in found:
            if name in kept:
                continue
            try:
                _drop_database(cursor, name, version_num)
                dropped.append(name)
            except psycopg2.Error as exc:
                warnings.append(f"could not drop the set-aside database {name}: {str(exc).strip()}")
                kept.append(name)
    finally:
        conn.close()
    return dropped, kept
