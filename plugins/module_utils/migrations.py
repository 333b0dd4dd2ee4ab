# Copyright: CleanMateX DevOps
# Apache-2.0 (see galaxy.yml)
"""Apply ``supabase/migrations/<version>_<name>.sql`` the way the Supabase CLI does.

Plain Python + psycopg2, no Ansible imports: ``plugins/modules/cmx_migrate.py`` is the thin wrapper.

Compatibility contract with the Supabase CLI 2.117 (Go sources ``apps/cli-go/pkg/migration`` and
``apps/cli-go/pkg/parser`` of github.com/supabase/cli, checked against the real binary):

* History table, created exactly like the CLI does (``history.go``)::

      CREATE SCHEMA IF NOT EXISTS supabase_migrations;
      CREATE TABLE IF NOT EXISTS supabase_migrations.schema_migrations (version text NOT NULL PRIMARY KEY);
      ALTER TABLE supabase_migrations.schema_migrations ADD COLUMN IF NOT EXISTS statements text[];
      ALTER TABLE supabase_migrations.schema_migrations ADD COLUMN IF NOT EXISTS name text;

  One row per applied file: ``version`` = the file name's leading digits, ``name`` = the rest without
  ``.sql``, ``statements`` = the file split into statements by the CLI's tokenizer (ported below).
* Seed bookkeeping: ``supabase_migrations.seed_files (path text NOT NULL PRIMARY KEY, hash text NOT NULL)``,
  ``path`` relative to the project root (``supabase/seed.sql``), ``hash`` = sha256 hex of the file.
* Each migration runs in one transaction together with its history row, after ``RESET ALL``.

Differences from the CLI, on purpose:

* Drift: an applied migration whose stored statements differ from its file, or whose file is gone, is
  reported (the CLI ignores edits and refuses missing files). The caller chooses fail or warn.
* Pending files older than the newest applied version are applied (``db push --include-all``) with a
  warning instead of refusing.
* A seed file whose hash changed is run again (the CLI only updates the hash). Seed SQL must therefore
  be idempotent (``ON CONFLICT DO NOTHING`` or guarded).
"""

from __future__ import annotations

import hashlib
import os
import re
import time
import unicodedata
from dataclasses import dataclass, field

try:
    import psycopg2
except ImportError:  # reported by the module through missing_required_lib
    psycopg2 = None

MIGRATION_FILE_PATTERN = re.compile(r"^([0-9]+)_(.*)\.sql$")
# Files named <timestamp>_init.sql from before this date were skipped by old CLIs; the CLI still skips them.
LEGACY_INIT_PATTERN = re.compile(r"([0-9]{14})_init\.sql")
LEGACY_INIT_BEFORE = 20211209000000

HISTORY_TABLE = "supabase_migrations.schema_migrations"
SEED_TABLE = "supabase_migrations.seed_files"
CREATE_HISTORY_TABLE = (
    "SET LOCAL lock_timeout = '4s'",
    "CREATE SCHEMA IF NOT EXISTS supabase_migrations",
    "CREATE TABLE IF NOT EXISTS supabase_migrations.schema_migrations (version text NOT NULL PRIMARY KEY)",
    "ALTER TABLE supabase_migrations.schema_migrations ADD COLUMN IF NOT EXISTS statements text[]",
    "ALTER TABLE supabase_migrations.schema_migrations ADD COLUMN IF NOT EXISTS name text",
)
CREATE_SEED_TABLE = (
    "SET LOCAL lock_timeout = '4s'",
    "CREATE SCHEMA IF NOT EXISTS supabase_migrations",
    "CREATE TABLE IF NOT EXISTS supabase_migrations.seed_files"
    " (path text NOT NULL PRIMARY KEY, hash text NOT NULL)",
)
INSERT_HISTORY_ROW = (
    "INSERT INTO supabase_migrations.schema_migrations(version, name, statements) VALUES (%s, %s, %s::text[])"
)
UPSERT_SEED_ROW = (
    "INSERT INTO supabase_migrations.seed_files(path, hash) VALUES (%s, %s) "
    "ON CONFLICT (path) DO UPDATE SET hash = EXCLUDED.hash"
)
# Serialises concurrent runs (two deploys, or a deploy and a developer) on one database.
ADVISORY_LOCK_KEY = "cleanmatex.cmx_migrate"
ADVISORY_LOCK_WAIT_SECONDS = 60


class MigrationError(Exception):
    """A migration (or the seed) could not be applied; the message names the file and PostgreSQL's error."""

    def __init__(self, message: str, file: str | None = None, pg_error: str | None = None):
        super().__init__(message)
        self.file = file
        self.pg_error = pg_error


# --------------------------------------------------------------------------------------------------
# Statement splitting: a faithful port of the CLI's tokenizer (apps/cli-go/pkg/parser/{token,state}.go).
# Stored ``statements`` must match the CLI's byte for byte, or drift detection would report false
# positives for migrations the CLI applied. The port keeps the CLI's quirks on purpose: it walks the
# input one byte at a time and decodes a rune at every offset (continuation bytes decode as U+FFFD),
# and a ``(`` ... ``)`` group or ``BEGIN ATOMIC`` ... ``END`` block suspends splitting on ``;``.
# --------------------------------------------------------------------------------------------------

# Go's unicode.IsSpace (strings.TrimSpace uses the same set).
GO_SPACE = (
    "\t\n\v\f\r \x85\xa0\u1680"
    "\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a"
    "\u2028\u2029\u202f\u205f\u3000"
)
REPLACEMENT_CHAR = "\ufffd"


def _decode_rune(buf: bytes, index: int) -> tuple[str, int]:
    """The rune starting at buf[index] and its width, like Go's utf8.DecodeRune (invalid: U+FFFD, 1)."""
    first = buf[index]
    if first < 0x80:
        return chr(first), 1
    for width in (2, 3, 4):
        try:
            decoded = buf[index : index + width].decode("utf-8")
        except UnicodeDecodeError:
            continue
        if len(decoded) == 1:
            return decoded, width
    return REPLACEMENT_CHAR, 1


def _decode_last_rune(buf: bytes, start: int, end: int) -> str:
    """The rune ending at buf[end], like Go's utf8.DecodeLastRune on buf[start:end]."""
    for width in (1, 2, 3, 4):
        if end - width < start:
            break
        try:
            decoded = buf[end - width : end].decode("utf-8")
        except UnicodeDecodeError:
            continue
        if len(decoded) == 1:
            return decoded
    return REPLACEMENT_CHAR


def _is_letter(char: str) -> bool:
    return unicodedata.category(char).startswith("L")


def _is_digit(char: str) -> bool:
    return unicodedata.category(char) == "Nd"


def _is_identifier_rune(char: str) -> bool:
    return _is_letter(char) or _is_digit(char) or char in "_$"


def _ends_with(buf: bytes, start: int, end: int, suffix: bytes, ignore_case: bool = False) -> bool:
    if end - len(suffix) < start:
        return False
    window = buf[end - len(suffix) : end]
    return window.lower() == suffix.lower() if ignore_case else window == suffix


def _is_begin_atomic(buf: bytes, start: int, end: int) -> bool:
    """True when buf[start:end] ends with ``BEGIN <spaces> ATOMIC`` as whole words (state.go)."""
    atomic_at = end - len(b"ATOMIC")
    if atomic_at < start or buf[atomic_at:end].lower() != b"atomic":
        return False
    if atomic_at > start and _is_identifier_rune(_decode_last_rune(buf, start, atomic_at)):
        return False
    prefix_end = atomic_at
    while prefix_end > start:
        last = _decode_last_rune(buf, start, prefix_end)
        if last not in GO_SPACE:
            break
        prefix_end -= len(last.encode("utf-8"))
    begin_at = prefix_end - len(b"BEGIN")
    if begin_at < start or buf[begin_at:prefix_end].lower() != b"begin":
        return False
    if begin_at == start:
        return True
    return not _is_identifier_rune(_decode_last_rune(buf, start, begin_at))


class _Ready:
    """Outside any literal or comment: ``;`` ends the statement (returns None)."""

    def next(self, char, buf, start, end):
        if char == "$":
            return _Tag(end - 1)
        if char in "'\"":
            return _Quote(char)
        if char == "-":
            return _LineCommentStart()
        if char == "/":
            return _BlockComment()
        if char == "\\":
            return _Escape()
        if char == ";":
            return None
        if char == "(":
            return _Atomic(self, b")")
        if char in "cC" and _is_begin_atomic(buf, start, end):
            return _Atomic(self, b"END")
        return self


READY = _Ready()


class _LineCommentStart:
    def next(self, char, buf, start, end):
        if char == "-":
            return _Delimited(b"\n")
        return READY.next(char, buf, start, end)


class _BlockComment:
    def __init__(self):
        self.depth = 0

    def next(self, char, buf, start, end):
        if _ends_with(buf, start, end, b"/*"):
            self.depth += 1
            return self
        if self.depth == 0:
            return READY.next(char, buf, start, end)
        if _ends_with(buf, start, end, b"*/"):
            self.depth -= 1
            if self.depth == 0:
                return READY
        return self


class _Quote:
    def __init__(self, delimiter):
        self.delimiter = delimiter
        self.escape = False

    def next(self, char, buf, start, end):
        if self.escape:
            if char == self.delimiter:  # doubled quote stays inside the literal
                self.escape = False
                return self
            return READY.next(char, buf, start, end)
        if char == self.delimiter:
            self.escape = True
        return self


class _Delimited:
    """Dollar-quoted body or ``--`` comment: nothing is special until the delimiter."""

    def __init__(self, delimiter: bytes):
        self.delimiter = delimiter

    def next(self, char, buf, start, end):
        if _ends_with(buf, start, end, self.delimiter):
            return READY
        return self


class _Tag:
    def __init__(self, offset):
        self.offset = offset

    def next(self, char, buf, start, end):
        if char == "$":
            return _Delimited(bytes(buf[self.offset : end]))
        if _is_letter(char) or _is_digit(char) or char == "_":
            return self
        return READY.next(char, buf, start, end)


class _Escape:
    def next(self, char, buf, start, end):
        return READY


class _Atomic:
    def __init__(self, previous, delimiter: bytes):
        self.previous = previous
        self.delimiter = delimiter

    def next(self, char, buf, start, end):
        current = self.previous.next(char, buf, start, end)
        if current is not None:
            self.previous = current
        if isinstance(self.previous, _Ready) and _ends_with(
            buf, start, end, self.delimiter, ignore_case=True
        ):
            return READY
        return self


@dataclass(frozen=True)
class Statement:
    text: str
    line: int  # 1-based line of the statement's first character in its file
    column: int  # 1-based


def token_ranges(sql: bytes) -> list[tuple[int, int]]:
    """Byte ranges of the raw tokens (``;`` included) the CLI's ``parser.Split`` emits."""
    ranges = []
    start, index, state = 0, 0, READY
    while index < len(sql):
        char, width = _decode_rune(sql, index)
        end = index + width
        state = state.next(char, sql, start, end)
        if state is None:  # ';' outside any literal: emit, the next token starts after it
            ranges.append((start, end))
            start, index, state = end, end, READY
            continue
        index += 1  # the CLI advances one byte, not one rune
    if start < len(sql):
        ranges.append((start, len(sql)))
    return ranges


def split_statements(sql: bytes) -> list[Statement]:
    """Split SQL into statements exactly like the Supabase CLI's ``parser.SplitAndTrim``."""
    statements = []
    for token_start, token_end in token_ranges(sql):
        token = sql[token_start:token_end].decode("utf-8")
        text = token.rstrip(";").strip(GO_SPACE)
        if not text:
            continue
        offset = token_start + len(token[: len(token) - len(token.lstrip(GO_SPACE))].encode("utf-8"))
        line_start = sql.rfind(b"\n", 0, offset) + 1
        column = len(sql[line_start:offset].decode("utf-8")) + 1
        statements.append(Statement(text, sql.count(b"\n", 0, offset) + 1, column))
    return statements


# --------------------------------------------------------------------------------------------------
# Local files
# --------------------------------------------------------------------------------------------------


@dataclass
class MigrationFile:
    version: str
    name: str
    path: str
    statements: list[Statement] = field(repr=False)

    @property
    def filename(self) -> str:
        return os.path.basename(self.path)

    @property
    def statement_texts(self) -> list[str]:
        return [statement.text for statement in self.statements]


def read_sql_file(path: str) -> bytes:
    with open(path, "rb") as handle:
        content = handle.read()
    try:
        content.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MigrationError(f"{os.path.basename(path)}: not valid UTF-8 ({exc})", file=path) from exc
    return content


def discover_migrations(migrations_dir: str) -> tuple[list[MigrationFile], list[str]]:
    """Migration files in the CLI's order (file name order), and the names it would skip."""
    if not os.path.isdir(migrations_dir):
        return [], []
    migrations, skipped, versions = [], [], {}
    entries = sorted(
        entry for entry in os.listdir(migrations_dir) if os.path.isfile(os.path.join(migrations_dir, entry))
    )
    for position, filename in enumerate(entries):
        legacy_init = LEGACY_INIT_PATTERN.search(filename)
        if position == 0 and legacy_init and int(legacy_init.group(1)) < LEGACY_INIT_BEFORE:
            skipped.append(filename)
            continue
        match = MIGRATION_FILE_PATTERN.match(filename)
        if not match:
            skipped.append(filename)
            continue
        version, name = match.groups()
        if version in versions:
            raise MigrationError(f"{filename} and {versions[version]} share version {version}", file=filename)
        versions[version] = filename
        path = os.path.join(migrations_dir, filename)
        migrations.append(MigrationFile(version, name, path, split_statements(read_sql_file(path))))
    return migrations, skipped


# --------------------------------------------------------------------------------------------------
# Database state
# --------------------------------------------------------------------------------------------------


@dataclass
class AppliedMigration:
    version: str
    name: str
    statements: list[str] | None  # None: recorded without statements (old CLI, or `migration repair`)


def _table_columns(cursor, qualified_table: str) -> set[str]:
    schema, table = qualified_table.split(".")
    cursor.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_schema = %s AND table_name = %s",
        (schema, table),
    )
    return {row[0] for row in cursor.fetchall()}


def read_applied(connection) -> dict[str, AppliedMigration]:
    """Rows of the history table by version; empty when the table does not exist yet."""
    with connection.cursor() as cursor:
        columns = _table_columns(cursor, HISTORY_TABLE)
        if not columns:
            return {}
        name = "coalesce(name, '')" if "name" in columns else "''"
        statements = "statements" if "statements" in columns else "NULL::text[]"
        cursor.execute(f"SELECT version, {name}, {statements} FROM {HISTORY_TABLE} ORDER BY version")
        return {row[0]: AppliedMigration(row[0], row[1], row[2]) for row in cursor.fetchall()}


def read_seed_hash(connection, seed_key: str) -> str | None:
    with connection.cursor() as cursor:
        if not _table_columns(cursor, SEED_TABLE):
            return None
        cursor.execute(f"SELECT hash FROM {SEED_TABLE} WHERE path = %s", (seed_key,))
        row = cursor.fetchone()
        return row[0] if row else None


@dataclass
class Plan:
    pending: list[MigrationFile]
    already_applied: int
    drift: list[dict]
    out_of_order: list[str]
    unverified: list[str]  # applied rows without statements: content cannot be compared


def plan_migrations(migrations: list[MigrationFile], applied: dict[str, AppliedMigration]) -> Plan:
    local_versions = {migration.version for migration in migrations}
    newest_applied = max(applied) if applied else None
    pending, drift, out_of_order, unverified = [], [], [], []
    already_applied = 0
    for migration in migrations:
        row = applied.get(migration.version)
        if row is None:
            pending.append(migration)
            if newest_applied is not None and migration.version < newest_applied:
                out_of_order.append(migration.filename)
            continue
        already_applied += 1
        if row.statements is None:
            unverified.append(migration.filename)
        elif list(row.statements) != migration.statement_texts:
            drift.append(
                {
                    "version": migration.version,
                    "name": migration.name,
                    "file": migration.filename,
                    "reason": "file content differs from the statements recorded when it was applied",
                }
            )
    for version in sorted(set(applied) - local_versions):
        drift.append(
            {
                "version": version,
                "name": applied[version].name,
                "file": None,
                "reason": "applied in the database but no local migration file has this version",
            }
        )
    return Plan(pending, already_applied, drift, out_of_order, unverified)


# --------------------------------------------------------------------------------------------------
# Applying
# --------------------------------------------------------------------------------------------------


def _execute_all(cursor, statements):
    for statement in statements:
        cursor.execute(statement)


def _source_line(path: str, line: int) -> str:
    with open(path, encoding="utf-8") as handle:
        for number, text in enumerate(handle, start=1):
            if number == line:
                return text.rstrip("\n")
    return ""


def describe_pg_error(exc, path: str, statement: Statement, index: int, total: int) -> str:
    """``file: statement i/n at line L, column C: ERROR ... [SQLSTATE]``, then detail, hint, source line."""
    diag = exc.diag
    message = diag.message_primary or str(exc).strip()
    location = f"statement {index}/{total}"
    line, column = statement.line, statement.column
    if diag.statement_position:
        before = statement.text[: int(diag.statement_position) - 1]
        line += before.count("\n")
        column = len(before) - before.rfind("\n") if "\n" in before else column + len(before)
        location += f" at line {line}, column {column}"
    else:
        location += f" starting at line {line}"
    parts = [f"{os.path.basename(path)}: {location}: ERROR: {message} [SQLSTATE {exc.pgcode}]"]
    if diag.message_detail:
        parts.append(f"DETAIL: {diag.message_detail}")
    if diag.message_hint:
        parts.append(f"HINT: {diag.message_hint}")
    if diag.context:
        parts.append(f"CONTEXT: {diag.context.strip()}")
    if diag.statement_position:
        parts.append(f"{line:>6} | {_source_line(path, line)}")
        parts.append(" " * 6 + " | " + " " * (column - 1) + "^")
    return "\n".join(parts)


def _run_statements(cursor, path: str, statements: list[Statement]):
    for index, statement in enumerate(statements, start=1):
        try:
            cursor.execute(statement.text)
        except psycopg2.Error as exc:
            if exc.pgcode is None:
                # A comment-only statement: the server answers "empty query" and psycopg2 raises; harmless.
                if "empty query" in str(exc):
                    continue
                raise MigrationError(f"{os.path.basename(path)}: statement {index}: {exc}", path) from exc
            message = describe_pg_error(exc, path, statement, index, len(statements))
            raise MigrationError(message, path, exc.pgerror) from exc


def _in_transaction(connection, work):
    try:
        with connection.cursor() as cursor:
            work(cursor)
        connection.commit()
    except BaseException:
        if not connection.closed:
            connection.rollback()
        raise


def ensure_history_table(connection):
    _in_transaction(connection, lambda cursor: _execute_all(cursor, CREATE_HISTORY_TABLE))


def apply_migration(connection, migration: MigrationFile):
    """Run one file and record it, in one transaction: on error nothing of it stays, nor its row."""

    def work(cursor):
        cursor.execute("RESET ALL")  # settings a previous migration left on the session
        _run_statements(cursor, migration.path, migration.statements)
        cursor.execute(INSERT_HISTORY_ROW, (migration.version, migration.name, migration.statement_texts))

    _in_transaction(connection, work)


def apply_seed(connection, seed_path: str, seed_key: str, seed_hash: str):
    statements = split_statements(read_sql_file(seed_path))

    def work(cursor):
        _execute_all(cursor, CREATE_SEED_TABLE)
        cursor.execute("RESET ALL")
        _run_statements(cursor, seed_path, statements)
        cursor.execute(UPSERT_SEED_ROW, (seed_key, seed_hash))

    _in_transaction(connection, work)


def file_sha256(path: str) -> str:
    with open(path, "rb") as handle:
        return hashlib.sha256(handle.read()).hexdigest()


def seed_key_for(seed_path: str, migrations_dir: str) -> str:
    """The path the CLI records for a seed file: relative to the project root (``supabase/seed.sql``)."""
    project_root = os.path.dirname(os.path.dirname(os.path.abspath(migrations_dir)))
    return os.path.relpath(os.path.abspath(seed_path), project_root)


def acquire_run_lock(connection, wait_seconds: float = ADVISORY_LOCK_WAIT_SECONDS):
    """Session advisory lock held until the connection closes."""
    deadline = time.monotonic() + wait_seconds
    with connection.cursor() as cursor:
        while True:
            cursor.execute("SELECT pg_try_advisory_lock(hashtext(%s))", (ADVISORY_LOCK_KEY,))
            locked = cursor.fetchone()[0]
            connection.commit()
            if locked:
                return
            if time.monotonic() > deadline:
                raise MigrationError(f"another migration run holds the lock '{ADVISORY_LOCK_KEY}'")
            time.sleep(0.5)


# --------------------------------------------------------------------------------------------------
# Entry point used by the module
# --------------------------------------------------------------------------------------------------


@dataclass
class MigrationResult:
    changed: bool = False
    applied: list[str] = field(default_factory=list)
    pending: list[str] = field(default_factory=list)
    already_applied: int = 0
    drift: list[dict] = field(default_factory=list)
    seed_applied: bool = False
    warnings: list[str] = field(default_factory=list)
    failed: bool = False
    msg: str = ""
    failed_file: str | None = None

    def as_dict(self) -> dict:
        return {
            "changed": self.changed,
            "applied": self.applied,
            "pending": self.pending,
            "already_applied": self.already_applied,
            "drift": self.drift,
            "seed_applied": self.seed_applied,
        }


def connect(connection_params: dict):
    """psycopg2 connection from ``dsn`` plus explicit fields (explicit fields win); None values dropped."""
    params = {key: value for key, value in connection_params.items() if value not in (None, "")}
    dsn = params.pop("dsn", "")
    params.setdefault("application_name", "cmx_migrate")
    params.setdefault("connect_timeout", 10)
    return psycopg2.connect(dsn, **params)


def migrate(
    connection,
    migrations_dir: str,
    seed_file: str | None = None,
    seed: bool = False,
    fail_on_drift: bool = True,
    check_mode: bool = False,
) -> MigrationResult:
    """Apply pending migrations (and the seed when asked) on an open psycopg2 connection."""
    result = MigrationResult()
    migrations, skipped = discover_migrations(migrations_dir)
    for filename in skipped:
        result.warnings.append(f"skipped {filename}: file name must match <timestamp>_<name>.sql")

    if check_mode:
        connection.set_session(readonly=True)
    else:
        acquire_run_lock(connection)
    applied_rows = read_applied(connection)
    plan = plan_migrations(migrations, applied_rows)
    result.already_applied = plan.already_applied
    result.drift = plan.drift
    result.pending = [migration.filename for migration in plan.pending]
    if plan.unverified:
        result.warnings.append(
            "applied without recorded statements, content not compared: " + ", ".join(plan.unverified)
        )
    if plan.out_of_order:
        result.warnings.append(
            "pending migrations older than the newest applied one (applied anyway): "
            + ", ".join(plan.out_of_order)
        )
    if plan.drift:
        summary = "; ".join(f"{item['file'] or item['version']}: {item['reason']}" for item in plan.drift)
        if fail_on_drift:
            result.failed = True
            result.msg = f"migration drift, nothing applied: {summary}"
            return result
        result.warnings.append(f"migration drift (not re-applied): {summary}")

    seed_key = seed_hash = None
    seed_due = False
    if seed:
        if not seed_file or not os.path.isfile(seed_file):
            result.failed = True
            result.msg = f"seed requested but the seed file does not exist: {seed_file}"
            return result
        seed_key = seed_key_for(seed_file, migrations_dir)
        seed_hash = file_sha256(seed_file)
        seed_due = read_seed_hash(connection, seed_key) != seed_hash

    if check_mode:
        result.seed_applied = seed_due
        result.changed = bool(plan.pending) or seed_due
        connection.rollback()
        return result

    if plan.pending:
        ensure_history_table(connection)
    for migration in plan.pending:
        try:
            apply_migration(connection, migration)
        except MigrationError as exc:
            result.failed = True
            result.failed_file = migration.filename
            result.msg = str(exc)
            result.pending = result.pending[len(result.applied) :]
            result.changed = bool(result.applied)
            return result
        result.applied.append(migration.filename)
    result.pending = []

    if seed_due:
        try:
            apply_seed(connection, seed_file, seed_key, seed_hash)
        except MigrationError as exc:
            result.failed = True
            result.failed_file = os.path.basename(seed_file)
            result.msg = str(exc)
            result.changed = bool(result.applied)
            return result
        result.seed_applied = True
    result.changed = bool(result.applied) or result.seed_applied
    return result
