"""Inventory values quoted for the file or language they land in: one function per destination.

Templates use them through the filter ``cleanmatex.infra.quote_for(<target>)`` (plugins/filter/quoting.py):

================  ======================================================================================
target            where the value lands
================  ======================================================================================
sql_ident         an SQL identifier: always double-quoted, ``"`` doubled (PostgreSQL keeps the case)
sql_literal       an SQL string literal: ``'...'``, ``'`` doubled; ``E'...'`` when it holds a backslash
compose           a scalar in docker-compose.yml: YAML double-quoted, ``$`` doubled (Compose interpolation)
env               a value in a Compose .env / env_file: bare, '...' (literal) or "..." with escapes
redis             an argument in redis.conf: double-quoted, non-printable and non-ASCII bytes as \\xHH
pgbouncer_ini     a value in a pgbouncer.ini connection string (``dbname=...``): '...', ``'`` doubled
pgbouncer_name    a [databases] key or an admin_users item: plain names only (PgBouncer has no quoting)
================  ======================================================================================

A value that cannot be written safely (NUL, a line break in a line-based file, a name PgBouncer cannot
parse) raises ValueError naming the target rather than rendering a broken file. Standard library only.
"""

from __future__ import annotations

import re

_ENV_BARE = re.compile(r"[A-Za-z0-9_./:@%+,=~^-]*\Z")
_PGBOUNCER_NAME = re.compile(r"[A-Za-z0-9_.-]+\Z")
_REDIS_PLAIN = re.compile(r"[ !#-\[\]-~]")  # printable ASCII except " and \


def _reject(value: str, target: str, characters: str, what: str) -> None:
    if any(char in value for char in characters):
        raise ValueError(f"a value with {what} cannot be written as {target}")


def sql_ident(value: str) -> str:
    _reject(value, "an SQL identifier", "\0", "a NUL character")
    return '"' + value.replace('"', '""') + '"'


def sql_literal(value: str) -> str:
    _reject(value, "an SQL literal", "\0", "a NUL character")
    quoted = "'" + value.replace("'", "''") + "'"
    if "\\" in value:  # right whatever standard_conforming_strings says
        return "E" + quoted.replace("\\", "\\\\")
    return quoted


def _yaml_escape(char: str) -> str:
    code = ord(char)
    printable = (
        code in (0x09,)
        or 0x20 <= code <= 0x7E
        or 0xA0 <= code <= 0xD7FF
        or (0xE000 <= code <= 0xFFFD and code != 0xFEFF)
        or 0x10000 <= code <= 0x10FFFF
    )
    if char in '"\\':
        return "\\" + char
    if printable and code not in (0x2028, 0x2029):
        return char
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


def yaml_double_quoted(value: str) -> str:
    return '"' + "".join(_yaml_escape(char) for char in value) + '"'


def compose(value: str) -> str:
    """A scalar for docker-compose.yml: `$` doubled so Compose does not interpolate it, then YAML."""
    return yaml_double_quoted(value.replace("$", "$$"))


def env(value: str) -> str:
    """A value for a Compose .env or env_file (Compose's dotenv parser): bare when it has only safe
    characters; '...' (literal: no escapes, no interpolation) when it has no ' and no backslash (Compose
    reads \\' as an escaped quote even there); else "..." with \\\\, \\", \\$ and \\n escaped."""
    _reject(value, "an env file value", "\0", "a NUL character")
    if _ENV_BARE.match(value):
        return value
    if not any(char in value for char in "'\\\n\r"):
        return f"'{value}'"
    escaped = (
        value.replace("\\", "\\\\")
        .replace('"', '\\"')
        .replace("$", "\\$")
        .replace("\n", "\\n")
        .replace("\r", "\\r")
    )
    return f'"{escaped}"'


def redis(value: str) -> str:
    """An argument in redis.conf (sdssplitargs): double-quoted; printable ASCII as is, \\" and \\\\
    escaped, every other byte of the UTF-8 encoding as \\xHH (Redis compares bytes)."""
    out = []
    for char in value:
        if _REDIS_PLAIN.match(char):
            out.append(char)
        elif char in '"\\':
            out.append("\\" + char)
        else:
            out.extend(f"\\x{byte:02x}" for byte in char.encode("utf-8"))
    return '"' + "".join(out) + '"'


def pgbouncer_ini(value: str) -> str:
    """A value in a pgbouncer.ini connection string: single-quoted, ' doubled (the file is line-based)."""
    _reject(value, "a pgbouncer.ini value", "\0\n\r", "a line break or NUL")
    return "'" + value.replace("'", "''") + "'"


def pgbouncer_name(value: str) -> str:
    """A [databases] key or an admin_users/stats_users item: PgBouncer's parser has no quoting for them."""
    if not _PGBOUNCER_NAME.match(value):
        raise ValueError(
            f"{value!r} cannot be written in pgbouncer.ini as a database key or user list item "
            "(only letters, digits, _ . -)"
        )
    return value


QUOTERS = {
    "sql_ident": sql_ident,
    "sql_literal": sql_literal,
    "compose": compose,
    "env": env,
    "redis": redis,
    "pgbouncer_ini": pgbouncer_ini,
    "pgbouncer_name": pgbouncer_name,
}


def quote_for(value, target: str) -> str:
    """`value` (converted to str; None is the empty string) quoted for `target` (a key of QUOTERS)."""
    if target not in QUOTERS:
        raise ValueError(f"unknown quoting target {target!r} (known: {', '.join(QUOTERS)})")
    if isinstance(value, bool):
        value = "true" if value else "false"
    return QUOTERS[target]("" if value is None else str(value))
