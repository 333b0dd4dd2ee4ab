# Copyright: CleanMateX DevOps
# Apache-2.0 (see galaxy.yml)
"""Apply ``supabase/migrations/<version>_<name>.sql`` the way the Supabase CLI does.

Plain Python + psycopg2, no Ansible imports: ``plugins/modules/cmx_migrate.py`` is the thin wrapper.

Compatibility contract with the Supabase CLI 2.117 (its observable behaviour, checked against the real
binary in tests/integration/test_supabase_cli.py):

* History table, the same definition the CLI creates::

      CREATE SCHEMA IF NOT EXISTS supabase_migrations;
      CREATE TABLE IF NOT EXISTS supabase_migrations.schema_migrations (version text NOT NULL PRIMARY KEY);
      ALTER TABLE supabase_migrations.schema_migrations ADD COLUMN IF NOT EXISTS statements text[];
      ALTER TABLE supabase_migrations.schema_migrations ADD COLUMN IF NOT EXISTS name text;

  One row per applied file: ``version`` = the file name's leading digits, ``name`` = the rest without
  ``.sql``, ``statements`` = the file split into statements by our own lexer (below). The CLI only reads
  ``version`` (``migration list``, ``db push``); its own splitter cuts a few files at other places, so
  drift detection compares content, not statement lists.
* Seed bookkeeping: ``supabase_migrations.seed_files (path text NOT NULL PRIMARY KEY, hash text NOT NULL)``,
  ``path`` relative to the project root (``supabase/seed.sql``), ``hash`` = sha256 hex of the file.
* Each migration runs in one transaction together with its history row, after ``RESET ALL``.
  Transaction control in a file (``BEGIN``, ``COMMIT``, ``END``, ``ROLLBACK``, ``START TRANSACTION``, ...)
  would commit part of it, so pending files (and a due seed) containing one are refused before anything
  runs; ``SAVEPOINT``, ``RELEASE`` and ``ROLLBACK TO`` stay inside the transaction and are allowed.

Differences from the CLI, on purpose:

* Drift: an applied migration whose file content no longer matches its stored statements (see
  ``statements_match_file``), or whose file is gone, is reported (the CLI ignores edits and refuses
  missing files). The caller chooses fail or warn.
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
from dataclasses import dataclass, field

try:
    import psycopg2
    import psycopg2.extensions
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
# SQL lexer: our own, written from PostgreSQL's lexical rules ("Lexical Structure" in the manual).
#
# It only knows what decides where a statement ends: quoted text (strings, E'' strings, quoted
# identifiers, dollar-quoted bodies) and comments, in which ';' means nothing, plus parentheses and
# SQL-standard function bodies (BEGIN ATOMIC ... END), in which ';' does not end the statement either.
# Everything else is a word, white space, ';', '(', ')' or a single other character.
# Assumes standard_conforming_strings = on (the default): backslash escapes only in E'' strings.
# --------------------------------------------------------------------------------------------------

# Token kinds
SPACE = "space"
COMMENT = "comment"
QUOTED = "quoted"  # string constant, quoted identifier or dollar-quoted body
WORD = "word"
SEMICOLON = "semicolon"
OPEN = "open"
CLOSE = "close"
OTHER = "other"  # any other single character (operators, punctuation, a '$' that quotes nothing)

# A keyword, identifier or number. Identifier characters are letters, digits, '_', '$' (not first) and
# every non-ASCII character, as in PostgreSQL; white space of any kind ends a word.
WORD_PATTERN = re.compile(r"(?:\w|[^\x00-\x7f\s])(?:[\w$]|[^\x00-\x7f\s])*")
# $$ or $tag$, where the tag looks like an identifier without '$' (so $1 is a parameter, not a quote).
DOLLAR_TAG_PATTERN = re.compile(r"\$(?:[A-Za-z_\u0080-\U0010ffff][A-Za-z0-9_\u0080-\U0010ffff]*)?\$")
LINE_COMMENT_PATTERN = re.compile(r"--[^\n\r]*")
SPACE_PATTERN = re.compile(r"\s+")
SINGLE_CHARACTER_KINDS = {";": SEMICOLON, "(": OPEN, ")": CLOSE}


def _quoted_end(sql: str, position: int, quote: str, backslash_escapes: bool = False) -> int:
    """End of quoted text whose body starts at position; a doubled quote stays inside. Unclosed: the end."""
    while position < len(sql):
        char = sql[position]
        if backslash_escapes and char == "\\":
            position += 2
        elif char != quote:
            position += 1
        elif sql.startswith(quote * 2, position):
            position += 2
        else:
            return position + 1
    return len(sql)


def _block_comment_end(sql: str, position: int) -> int:
    """End of the /* comment opened at position; comments nest. Unclosed: the end."""
    depth = 0
    while position < len(sql):
        if sql.startswith("/*", position):
            depth += 1
            position += 2
        elif sql.startswith("*/", position):
            depth -= 1
            position += 2
            if depth == 0:
                return position
        else:
            position += 1
    return len(sql)


def _token_end(sql: str, position: int) -> tuple[str, int]:
    """Kind and end offset of the token starting at position."""
    pair = sql[position : position + 2]
    char = pair[:1]
    if char.isspace():
        return SPACE, SPACE_PATTERN.match(sql, position).end()
    if pair == "--":
        return COMMENT, LINE_COMMENT_PATTERN.match(sql, position).end()
    if pair == "/*":
        return COMMENT, _block_comment_end(sql, position)
    if char in ("'", '"'):
        return QUOTED, _quoted_end(sql, position + 1, char)
    if pair in ("E'", "e'"):  # words are read whole, so this E is not the end of a longer word
        return QUOTED, _quoted_end(sql, position + 2, "'", backslash_escapes=True)
    if char == "$":
        tag = DOLLAR_TAG_PATTERN.match(sql, position)
        if tag:
            closing = sql.find(tag.group(), tag.end())
            return QUOTED, len(sql) if closing < 0 else closing + len(tag.group())
    word = WORD_PATTERN.match(sql, position)
    if word:
        return WORD, word.end()
    return SINGLE_CHARACTER_KINDS.get(char, OTHER), position + 1


def sql_tokens(sql: str):
    """(kind, start, end) for every token of sql; the tokens cover sql without gaps."""
    position = 0
    while position < len(sql):
        kind, end = _token_end(sql, position)
        yield kind, position, end
        position = end


@dataclass(frozen=True)
class Statement:
    text: str
    line: int  # 1-based line of the statement's first character in its file
    column: int  # 1-based, in characters


def _statement(sql: str, start: int, end: int) -> Statement | None:
    chunk = sql[start:end]
    text = chunk.strip()
    if not text:
        return None
    offset = start + len(chunk) - len(chunk.lstrip())
    line_start = sql.rfind("\n", 0, offset) + 1
    return Statement(text, sql.count("\n", 0, offset) + 1, offset - line_start + 1)


def split_statements(sql: str) -> list[Statement]:
    """Statements of sql, cut at each ';' outside quoted text, comments, parentheses and BEGIN ATOMIC
    bodies. Each is trimmed of surrounding white space; empty ones are dropped, comment-only ones kept."""
    statements = []
    start = 0
    parentheses = 0
    atomic_depth = 0  # inside BEGIN ATOMIC ... END: 1 plus the CASE ... END expressions open in it
    previous = ""  # text of the previous token that is not white space or a comment
    for kind, token_start, token_end in sql_tokens(sql):
        if kind in (SPACE, COMMENT):
            continue
        text = sql[token_start:token_end]
        if kind == OPEN:
            parentheses += 1
        elif kind == CLOSE:
            parentheses = max(parentheses - 1, 0)
        elif kind == WORD and previous != ".":  # after '.', a word is a name, never a keyword
            keyword = text.lower()
            if atomic_depth and keyword == "case":
                atomic_depth += 1
            elif atomic_depth and keyword == "end":
                atomic_depth -= 1
            elif keyword == "atomic" and previous.lower() == "begin":
                atomic_depth = 1
        elif kind == SEMICOLON and parentheses == 0 and atomic_depth == 0:
            statement = _statement(sql, start, token_start)
            if statement:
                statements.append(statement)
            start = token_end
        previous = text
    statement = _statement(sql, start, len(sql))
    if statement:
        statements.append(statement)
    return statements


# --------------------------------------------------------------------------------------------------
# Drift: does a history row's ``statements`` still describe the file? The row may have been written by
# this module or by the Supabase CLI (``db push``, ``migration repair``), whose splitter cuts some files
# at other places, so the comparison must not depend on where a splitter cut the file.
# --------------------------------------------------------------------------------------------------


def _is_file_cut_at_separators(sql: str, statements: list[str]) -> bool:
    """True when sql is exactly the statements in order, with only white space and ';' around them:
    what any splitter that cuts at ';' and trims produces, wherever it chose to cut."""
    position = 0
    for statement in statements:
        while position < len(sql) and (sql[position] == ";" or sql[position].isspace()):
            position += 1
        if not sql.startswith(statement, position):
            return False
        position += len(statement)
    return all(char == ";" or char.isspace() for char in sql[position:])


def sql_fingerprint(sql: str) -> list[str]:
    """The tokens of sql without white space and ';' (trailing white space of a -- comment dropped too).

    Two texts with the same fingerprint differ only in layout: white space and ';' between tokens.
    Quoted text and comments count as they are, so editing a string, a name or a comment changes it.
    """
    fingerprint = []
    for kind, start, end in sql_tokens(sql):
        if kind in (SPACE, SEMICOLON):
            continue
        text = sql[start:end]
        fingerprint.append(text.rstrip() if kind == COMMENT and text.startswith("--") else text)
    return fingerprint


def statements_match_file(sql: str, statements: list[str]) -> bool:
    """Whether recorded statements are the content of sql, however they were split.

    Either the statements are the file cut at some ';' (exact, whatever splitter cut it, even one that
    cut inside quoted text), or file and statements have the same fingerprint once the statements are
    joined with line breaks (tolerates re-indenting and other layout-only edits).
    """
    statements = list(statements)
    return _is_file_cut_at_separators(sql, statements) or sql_fingerprint(sql) == sql_fingerprint(
        "\n".join(statements)
    )


# --------------------------------------------------------------------------------------------------
# Local files
# --------------------------------------------------------------------------------------------------


@dataclass
class MigrationFile:
    version: str
    name: str
    path: str
    sql: str = field(repr=False)
    statements: list[Statement] = field(init=False, repr=False)

    def __post_init__(self):
        self.statements = split_statements(self.sql)

    @property
    def filename(self) -> str:
        return os.path.basename(self.path)

    @property
    def statement_texts(self) -> list[str]:
        return [statement.text for statement in self.statements]


def read_sql_file(path: str) -> str:
    with open(path, "rb") as handle:
        content = handle.read()
    try:
        return content.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MigrationError(f"{os.path.basename(path)}: not valid UTF-8 ({exc})", file=path) from exc


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
        migrations.append(MigrationFile(version, name, path, read_sql_file(path)))
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
        elif not statements_match_file(migration.sql, row.statements):
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
# Transaction control: a file runs in one transaction with its history row, so a COMMIT in it would
# keep half the file with no row, and everything after it would run outside any transaction.
# --------------------------------------------------------------------------------------------------


def _leading_words(text: str, count: int) -> tuple[list[str], int]:
    """The first count tokens of text that are not white space or comments (words in lower case, other
    tokens as ''), padded with ''; and the offset of the first one."""
    words, first = [], 0
    for kind, start, end in sql_tokens(text):
        if kind in (SPACE, COMMENT):
            continue
        if not words:
            first = start
        words.append(text[start:end].lower() if kind == WORD else "")
        if len(words) == count:
            break
    return words + [""] * (count - len(words)), first


def transaction_control(statement: Statement) -> tuple[int, str] | None:
    """(line, command) when statement starts, ends or prepares a transaction; None otherwise.

    Savepoints (SAVEPOINT, RELEASE, ROLLBACK TO) stay inside the surrounding transaction: allowed.
    """
    (first, second), offset = _leading_words(statement.text, 2)
    refused = (
        first in ("begin", "commit", "end", "abort")
        or (first == "rollback" and second != "to")
        or (first in ("start", "prepare") and second == "transaction")
    )
    if not refused:
        return None
    line = statement.line + statement.text.count("\n", 0, offset)
    return line, statement.text[offset:].splitlines()[0][:60]


def transaction_control_problems(files: list[tuple[str, list[Statement]]]) -> list[tuple[str, int, str]]:
    """(file name, line, statement start) of every transaction-control statement of the given files."""
    problems = []
    for path, statements in files:
        for statement in statements:
            found = transaction_control(statement)
            if found:
                problems.append((os.path.basename(path), *found))
    return problems


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
        # Backstop for transaction_control(): stop at once if a statement ended the transaction anyway.
        if cursor.connection.get_transaction_status() != psycopg2.extensions.TRANSACTION_STATUS_INTRANS:
            raise MigrationError(
                f"{os.path.basename(path)}: statement {index}/{len(statements)} starting at line "
                f"{statement.line} ended the file's transaction; what ran before it may stay committed, "
                "nothing after it ran and the file is not recorded. Remove transaction control (BEGIN, "
                "COMMIT, ...) from the file",
                path,
            )


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

    to_run = [(migration.path, migration.statements) for migration in plan.pending]
    if seed_due:
        to_run.append((seed_file, split_statements(read_sql_file(seed_file))))
    problems = transaction_control_problems(to_run)
    if problems:
        result.failed = True
        result.failed_file = problems[0][0]
        result.msg = (
            "transaction control in migration files, nothing applied (each file runs in one transaction with "
            "its history row; a COMMIT in it would keep half the file): "
            + "; ".join(f"{name} line {line}: {text}" for name, line, text in problems)
            + ". Remove these statements (SAVEPOINT, RELEASE and ROLLBACK TO are allowed)"
        )
        return result

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
