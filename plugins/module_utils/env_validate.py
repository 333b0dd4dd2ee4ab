# Copyright: CleanMateX DevOps
# Apache License 2.0 (see galaxy.yml)
"""Validation of application environment variables against ``env_schema``.

Plain Python (standard library only, Python 3.8+), shared by the module ``cleanmatex.infra.cmx_env_validate``
and the CLI ``bin/cmx-env``, so both give the same verdict and the same messages.

Entry points: ``validate_mapping``, ``validate_text`` and ``validate_file``; each returns a ``Report`` holding
every problem found (one run reports everything).  A problem names the variable, the file and line when the
input is a file, what is wrong and the expected form.  No message ever contains the value of a secret.
"""

from __future__ import annotations

import base64
import binascii
import difflib
import json
import re
from urllib.parse import parse_qs, quote, unquote, urlsplit

from ansible_collections.cleanmatex.infra.plugins.module_utils import pg_tls
from ansible_collections.cleanmatex.infra.plugins.module_utils.env_schema import (
    BY_NAME,
    ENVIRONMENTS,
    KNOWN_WEAK_SECRETS,
    MIN_SECRET_LENGTH,
    PLACEHOLDER_PATTERNS,
    STACK_INT_KEYS,
    STACK_KEYS,
    STACK_NAME_RULES,
    STACK_ROLE_KEYS,
    STACK_ROLE_PASSWORD_KEYS,
    STRICT_ENVIRONMENTS,
    VARIABLES,
    template_inputs,
)

ERROR = "error"
WARNING = "warning"

_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_ASSIGN_RE = re.compile(r"(?:export[ \t]+)?([^=\s]+)[ \t]*=[ \t]*(.*)\Z", re.DOTALL)
_DURATION_RE = re.compile(r"[1-9][0-9]*(s|m|h|d)\Z")
_INT_RE = re.compile(r"-?[0-9]+\Z")
_EXPANSION_RE = re.compile(r"\$[{A-Za-z0-9_]")
_ANGLE_PLACEHOLDER_RE = re.compile(r"<[^<>]*>\Z")
_LOOPBACK = ("localhost", "127.0.0.1", "::1", "ip6-localhost")
_DEFAULT_PORTS = {
    "postgresql": 5432,
    "postgres": 5432,
    "redis": 6379,
    "rediss": 6379,
    "http": 80,
    "https": 443,
}
_WEAK = frozenset(value.lower() for value in KNOWN_WEAK_SECRETS)
_PLACEHOLDERS = tuple(re.compile(pattern, re.IGNORECASE | re.DOTALL) for pattern in PLACEHOLDER_PATTERNS)
_SCHEMA_ORDER = {entry["name"]: index for index, entry in enumerate(VARIABLES)}


class Problem:
    """One finding: severity, variable (None for the file as a whole), file, line, what is wrong, expected."""

    __slots__ = ("expected", "file", "line", "message", "severity", "variable")

    def __init__(self, severity, variable, message, expected=None, file=None, line=None):
        self.severity = severity
        self.variable = variable
        self.message = message
        self.expected = expected
        self.file = file
        self.line = line

    @property
    def text(self):
        where = ""
        if self.file is not None:
            where = f"{self.file}:{self.line}: " if self.line else f"{self.file}: "
        subject = f"{self.variable}: " if self.variable else ""
        text = f"{where}{subject}{self.message}"
        if self.expected:
            text += f"; expected {self.expected}"
        return text

    def as_dict(self):
        return {
            "severity": self.severity,
            "variable": self.variable,
            "file": self.file,
            "line": self.line,
            "message": self.message,
            "expected": self.expected,
            "text": self.text,
        }

    def key(self):
        """What must be identical between two runs on the same input (module vs CLI)."""
        return (self.severity, self.variable, self.line, self.message, self.expected)

    def __repr__(self):
        return f"Problem({self.severity}: {self.text})"


class Report:
    """The outcome of one validation: every problem, and the values that were checked."""

    def __init__(self, environment, source=None):
        self.environment = environment
        self.source = source
        self.problems = []
        self.values = {}
        self.lines = {}
        self.undefined = ()

    def add(self, severity, variable, message, expected=None, line=None):
        if line is None and variable is not None:
            line = self.lines.get(variable)
        self.problems.append(Problem(severity, variable, message, expected, self.source, line))

    def error(self, variable, message, expected=None, line=None):
        self.add(ERROR, variable, message, expected, line)

    def warning(self, variable, message, expected=None, line=None):
        self.add(WARNING, variable, message, expected, line)

    @property
    def errors(self):
        return [problem for problem in self.problems if problem.severity == ERROR]

    @property
    def warnings(self):
        return [problem for problem in self.problems if problem.severity == WARNING]

    @property
    def valid(self):
        return not self.errors

    def sort(self):
        def order(problem):
            return (
                problem.severity != ERROR,
                problem.line if problem.line else 10**9,
                _SCHEMA_ORDER.get(problem.variable, len(_SCHEMA_ORDER)),
            )

        self.problems.sort(key=order)

    def summary(self):
        what = "values" if self.source is None else self.source
        if self.valid:
            verdict = "valid"
        else:
            verdict = f"INVALID: {len(self.errors)} error{'' if len(self.errors) == 1 else 's'}"
        warnings = len(self.warnings)
        tail = f", {warnings} warning{'' if warnings == 1 else 's'}" if warnings else ""
        return f"{what} for environment {self.environment}: {verdict}{tail}"

    def secret_strings(self):
        """Every string that must never appear in output: values of secret and unknown variables, and the
        passwords inside URLs (raw and percent-encoded)."""
        found = set()
        for name, value in self.values.items():
            if not value:
                continue
            entry = BY_NAME.get(name)
            if entry is None or entry["secret"]:
                found.add(value)
            password = _url_password(value) if entry is None or entry["type"] == "url" else None
            if password:
                found.add(value)
                # A very short password would mask that text everywhere; the URL holding it stays masked.
                if len(password) >= 4:
                    found.update((password, quote(password, safe="")))
        return found

    def public_strings(self):
        """Values of known non-secret variables (safe to show)."""
        return {
            value for name, value in self.values.items() if name in BY_NAME and not BY_NAME[name]["secret"]
        }


# --- parsing ------------------------------------------------------------------------------------------------


def _unquote_double(body):
    escapes = {"n": "\n", "r": "\r", "t": "\t", '"': '"', "\\": "\\", "$": "$"}
    return re.sub(r"\\(.)", lambda match: escapes.get(match.group(1), match.group(0)), body, flags=re.DOTALL)


def _find_closing(text, quote_char, start):
    index = start
    while index < len(text):
        char = text[index]
        if quote_char == '"' and char == "\\":
            index += 2
            continue
        if char == quote_char:
            return index
        index += 1
    return -1


def parse_env(text, report):
    """Parse dotenv text into report.values / report.lines, reporting what is wrong with the file itself.

    Understood: blank lines, # comments, `export NAME=value`, unquoted values (a ` #` starts a comment),
    'single-quoted' (literal) and "double-quoted" (\\n, \\", \\\\ escapes) values, quoted values over
    several lines. Reported: CRLF line endings, a byte order mark, lines that are not assignments, invalid
    names, unterminated quotes, text after a closing quote, duplicate definitions, an unquoted '#'."""
    if text.startswith("\ufeff"):
        report.warning(None, "starts with a UTF-8 byte order mark", "plain UTF-8 without BOM", line=1)
        text = text[1:]
    if "\r" in text:
        crlf_lines = [number for number, line in enumerate(text.split("\n"), 1) if line.endswith("\r")]
        first = crlf_lines[0] if crlf_lines else 1
        plural = "" if len(crlf_lines) == 1 else "s"
        report.error(
            None,
            f"has Windows (CRLF) line endings on {len(crlf_lines)} line{plural}, "
            f"from line {first} on: shells and some loaders keep the \\r in the value",
            "LF line endings (convert with `dos2unix` or `sed -i 's/\\r$//'`)",
            line=first,
        )
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    lines = text.split("\n")
    number = 0
    while number < len(lines):
        line = lines[number]
        number += 1
        start_line = number
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        match = _ASSIGN_RE.match(stripped)
        if not match:
            report.error(
                None,
                "is not a NAME=value assignment",
                "NAME=value, a # comment or a blank line",
                line=start_line,
            )
            continue
        name, rest = match.group(1), match.group(2)
        if not _NAME_RE.match(name):
            report.error(
                None,
                "the name before '=' is not a valid variable name",
                "letters, digits and underscores, not starting with a digit",
                line=start_line,
            )
            continue
        if rest[:1] in ('"', "'"):
            quote_char = rest[0]
            body = rest[1:]
            close = _find_closing(body, quote_char, 0)
            while close < 0 and number < len(lines):
                body += "\n" + lines[number]
                number += 1
                close = _find_closing(body, quote_char, 0)
            if close < 0:
                report.error(
                    name,
                    "the %s quote opened here is never closed"
                    % ("double" if quote_char == '"' else "single"),
                    f"a closing {quote_char}",
                    line=start_line,
                )
                continue
            trailing = body[close + 1 :].strip()
            if trailing and not trailing.startswith("#"):
                report.error(
                    name,
                    "has text after the closing quote",
                    "only a # comment after the value",
                    line=start_line,
                )
            value = body[:close]
            if quote_char == '"':
                value = _unquote_double(value)
        else:
            value = rest
            comment = re.search(r"[ \t]#", value)
            if comment:
                value = value[: comment.start()]
            value = value.strip()
            if "#" in value:
                report.warning(
                    name,
                    "has an unquoted '#': dotenv cuts the value there, Docker Compose keeps it",
                    "the value in single quotes",
                    line=start_line,
                )
        if name in report.values:
            report.error(
                name,
                f"is defined again (first on line {report.lines[name]}): loaders disagree on which one wins",
                "one definition per variable",
                line=start_line,
            )
        else:
            report.lines[name] = start_line
        report.values[name] = value
    return report


_SAFE_UNQUOTED_RE = re.compile(r"[A-Za-z0-9_./:@%+,=~^-]*\Z")


def dotenv_value(value):
    """A value as written to an env file so that parse_env (and dotenv, Compose) read it back unchanged:
    bare when it has only safe characters, else in single quotes, else in double quotes with escapes.
    The env role's template (roles/env/templates/app.env.j2) applies the same rule."""
    if _SAFE_UNQUOTED_RE.match(value):
        return value
    if "'" not in value and "\n" not in value:
        return f"'{value}'"
    return '"{}"'.format(value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n"))


# --- helpers ------------------------------------------------------------------------------------------------


def _normalize(value):
    """A mapping value as the string an .env file would hold; None when absent; raise TypeError otherwise."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, str):
        return value
    raise TypeError(type(value).__name__)


def _split_url(value):
    """urlsplit() result and port, or None when the value is not a URL at all."""
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        return None
    if not parts.scheme or not parts.netloc:
        return None
    return parts, port


def _url_password(value):
    split = _split_url(value) if value and "://" in value else None
    if not split or split[0].password is None:
        return None
    return unquote(split[0].password)


def _is_loopback(host):
    return (host or "").lower() in _LOOPBACK or (host or "").startswith("127.")


def _same_host(left, right):
    left, right = (left or "").lower(), (right or "").lower()
    return left == right or (_is_loopback(left) and _is_loopback(right))


def _jwt_payload(value):
    """The decoded payload of a JWT, or None when the value is not one."""
    parts = value.split(".")
    if len(parts) != 3 or not all(re.match(r"[A-Za-z0-9_-]+\Z", part) for part in parts):
        return None
    try:
        decoded = [json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))) for part in parts[:2]]
    except (ValueError, binascii.Error):
        return None
    header, payload = decoded
    if not isinstance(header, dict) or "alg" not in header or not isinstance(payload, dict):
        return None
    return payload


def weakness(value, min_length):
    """Why a secret is weak (a phrase), or None."""
    lowered = value.lower()
    if lowered in _WEAK:
        return "is a well-known default value"
    if any(pattern.fullmatch(value) for pattern in _PLACEHOLDERS):
        return "is a placeholder, not a secret"
    payload = _jwt_payload(value)
    if payload is not None and payload.get("iss") == "supabase-demo":
        return "is the Supabase CLI's public demo key"
    if len(value) < min_length:
        return f"is shorter than {min_length} characters"
    if len(set(value)) < 6:
        return "has fewer than 6 distinct characters"
    return None


def _secret_hint(entry, min_length):
    return entry.get("hint") or (
        f"a random secret of at least {min_length} characters (e.g. `openssl rand -hex 32`) kept in the vault"
    )


def expected_form(entry, environment):
    """How a valid value looks, for the messages and the docs."""
    kind = entry["type"]
    strict = environment in STRICT_ENVIRONMENTS
    if kind == "url":
        if entry.get("hint"):
            return entry["hint"]
        schemes = entry["schemes"]
        if strict and entry.get("https") == "always":
            return "an https:// URL"
        if strict and entry.get("https") == "remote":
            return "an https:// URL (http:// only to localhost)"
        return "a URL starting with {}".format(" or ".join(f"{scheme}://" for scheme in schemes))
    if kind == "int":
        return f"an integer from {entry['min']} to {entry['max']}"
    if kind == "port":
        return "a port number from 1 to 65535"
    if kind == "bool":
        return "true or false"
    if kind == "enum":
        fixed = (entry.get("fixed") or {}).get(environment)
        if fixed:
            return fixed
        return "one of {}".format(", ".join(entry["choices"]))
    if kind == "duration":
        return "a number followed by s, m, h or d (e.g. 30m, 1h, 7d)"
    if kind == "secret":
        if entry.get("pattern_hint"):
            return entry["pattern_hint"]
        return _secret_hint(entry, entry.get("min_length", MIN_SECRET_LENGTH))
    return entry.get("pattern_hint") or "a non-empty value"


# --- checks of one variable ---------------------------------------------------------------------------------


def _check_url(report, entry, value, environment, own_hosts=()):
    """own_hosts: the address the stack publishes its ports on (a private address in staging): traffic
    to it stays on the host, like loopback traffic."""
    name = entry["name"]
    strict = environment in STRICT_ENVIRONMENTS
    expected = expected_form(entry, environment)
    split = _split_url(value)
    if split is None:
        report.error(name, "is not a valid URL", expected)
        return
    parts, _port = split
    if parts.scheme.lower() not in entry["schemes"]:
        report.error(name, f"uses the scheme {parts.scheme}://", expected)
        return
    if not parts.hostname:
        report.error(name, "has no host name", expected)
    policy = entry.get("https")
    remote = not _is_loopback(parts.hostname) and (parts.hostname or "").lower() not in own_hosts
    if strict and parts.scheme.lower() == "http" and (policy == "always" or (policy == "remote" and remote)):
        report.error(name, f"uses plain http:// in {environment}", expected)
    if entry.get("url_user") and not parts.username:
        report.error(name, "has no user name", expected)
    password_rule = entry.get("url_password")
    password = None if parts.password is None else unquote(parts.password)
    if not password and (password_rule == "always" or (password_rule == "strict" and strict)):
        report.error(name, "has no password" + (f" (required in {environment})" if strict else ""), expected)
    if password and strict:
        reason = weakness(password, MIN_SECRET_LENGTH)
        if reason:
            report.error(
                name,
                f"its password {reason}",
                f"a random password of at least {MIN_SECRET_LENGTH} characters kept in the vault",
            )
    if entry.get("url_database") and not parts.path.strip("/"):
        report.error(name, "names no database (the path after the port is empty)", expected)


def _check_secret(report, entry, value, environment):
    name = entry["name"]
    jwt = entry.get("jwt")
    if jwt:
        prefix = jwt["alt_prefix"]
        exposed = (
            " (NEXT_PUBLIC_ variables are shipped to browsers)" if name.startswith("NEXT_PUBLIC_") else ""
        )
        wrong = [
            other
            for other in ("sb_secret_", "sb_publishable_")
            if other != prefix and value.startswith(other)
        ]
        if wrong:
            report.error(name, f"is an {wrong[0]}... key, not an {prefix}... key{exposed}", entry.get("hint"))
            return
        if not value.startswith(prefix):
            payload = _jwt_payload(value)
            if payload is None:
                report.error(
                    name, "is not a JWT (three base64url parts: header.payload.signature)", entry.get("hint")
                )
                return
            role = payload.get("role")
            if role is not None and role != jwt["role"]:
                report.error(
                    name,
                    "is a key for the role {}, not for the role {}{}".format(role, jwt["role"], exposed),
                    entry.get("hint"),
                )
                return


def _check_value(report, entry, value, environment, own_hosts=()):
    """Type, pattern, per-environment and strength checks of one non-empty value."""
    name = entry["name"]
    kind = entry["type"]
    expected = expected_form(entry, environment)
    if "\n" in value or "\r" in value:
        report.error(name, "contains a line break", "a single-line value")
        return
    if value != value.strip():
        report.warning(name, "has leading or trailing white space", "the value without surrounding spaces")
        value = value.strip()
    if _ANGLE_PLACEHOLDER_RE.match(value):
        optional = "" if entry["required"][environment] else ", or an empty value"
        hint = " (for a local Supabase: `supabase status`)" if entry["group"] == "supabase" else ""
        report.error(name, f"is a <placeholder>, not a value{hint}", expected + optional)
        return
    if kind == "secret" and environment in STRICT_ENVIRONMENTS:
        reason = weakness(value, entry.get("min_length", MIN_SECRET_LENGTH))
        if reason:
            report.error(name, f"{reason} (refused in {environment})", expected)
            return
    if kind == "int":
        if not _INT_RE.match(value):
            report.error(name, "is not an integer", expected)
        elif not entry["min"] <= int(value) <= entry["max"]:
            report.error(name, f"is {value}, out of range", expected)
    elif kind == "port":
        if not _INT_RE.match(value) or not 1 <= int(value) <= 65535:
            report.error(name, "is not a port number", expected)
    elif kind == "bool":
        if value not in ("true", "false"):
            report.error(name, "is not a boolean (the apps compare with the string 'true')", expected)
    elif kind == "enum":
        if value not in entry["choices"]:
            report.error(name, f"is {value!r}, not one of the allowed values", expected)
    elif kind == "duration":
        if not _DURATION_RE.match(value):
            hint = " (a bare number means milliseconds to jsonwebtoken)" if _INT_RE.match(value) else ""
            report.error(name, f"is not a duration{hint}", expected)
    elif kind == "url":
        _check_url(report, entry, value, environment, own_hosts)
    pattern = entry.get("pattern")
    if pattern and not re.fullmatch(pattern, value):
        report.error(name, "does not have the expected format", entry.get("pattern_hint"))
    elif kind == "secret":
        _check_secret(report, entry, value, environment)
    env_pattern = (entry.get("env_pattern") or {}).get(environment)
    if env_pattern and re.fullmatch(pattern or ".*", value) and not re.fullmatch(env_pattern[0], value):
        report.error(name, f"is not allowed in {environment}", env_pattern[1])
    fixed = (entry.get("fixed") or {}).get(environment)
    if fixed is not None and value != fixed and (kind != "enum" or value in entry["choices"]):
        report.error(name, f"must be {fixed} in {environment}", fixed)
    if _EXPANSION_RE.search(value):
        report.warning(
            name,
            "contains '$' followed by a name: Next.js (dotenv-expand) and Docker Compose "
            "expand it as a variable reference",
            "a value without '$' (regenerate the secret)",
        )


# --- cross-field checks -------------------------------------------------------------------------------------


def _parsed(values, name):
    value = values.get(name)
    if not value or BY_NAME[name]["type"] != "url":
        return None
    split = _split_url(value)
    if split is None or split[0].scheme.lower() not in BY_NAME[name]["schemes"]:
        return None
    return split


def _port_of(split):
    parts, port = split
    return port if port is not None else _DEFAULT_PORTS.get(parts.scheme.lower())


def _int_or_none(value):
    return int(value) if value and _INT_RE.match(value) else None


def _check_postgres_url(report, values, stack, name, port_key):
    """DATABASE_URL / DATABASE_POOLED_URL against the PostgreSQL settings the stack was built with."""
    split = _parsed(values, name)
    if split is None:
        return
    parts = split[0]
    label = "PgBouncer" if port_key == "pgbouncer_port" else "PostgreSQL"
    user = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password is not None else None
    database = unquote(parts.path.lstrip("/"))
    port = _port_of(split)
    # The app role (postgres_app_user); callers that pass only the older keys compare with postgres_user.
    user_key, password_key, password_variable = (
        ("postgres_app_user", "postgres_app_password", "cmx_postgres_app_password")
        if "postgres_app_user" in stack or "postgres_app_password" in stack
        else ("postgres_user", "postgres_password", "cmx_postgres_password")
    )
    if user and user_key in stack and user != stack[user_key]:
        report.error(
            name,
            f"user {user!r} differs from the PostgreSQL user (stack {user_key})",
            f"user {stack[user_key]!r}",
        )
    if password is not None and password_key in stack and password != stack[password_key]:
        report.error(
            name,
            f"password differs from the PostgreSQL password (stack {password_key})",
            f"the password the stack was built with ({password_variable})",
        )
    pooled = port_key == "pgbouncer_port"
    host_key = "pgbouncer_host" if pooled and "pgbouncer_host" in stack else "postgres_host"
    if parts.hostname and host_key in stack and not _same_host(parts.hostname, stack[host_key]):
        report.error(
            name,
            f"host {parts.hostname!r} differs from the {label} host (stack {host_key})",
            f"host {stack[host_key]!r}",
        )
    if port_key in stack and port != stack[port_key]:
        report.error(
            name,
            f"port {port} differs from the {label} port (stack {port_key})",
            f"port {stack[port_key]}",
        )
    if database and "postgres_db" in stack and database != stack["postgres_db"]:
        report.error(
            name,
            f"database {database!r} differs from the PostgreSQL database (stack postgres_db)",
            "database {!r}".format(stack["postgres_db"]),
        )
    tls_key = "pgbouncer_tls" if pooled and "pgbouncer_tls" in stack else "postgres_tls"
    _check_postgres_tls(report, stack, name, label, parts.query, tls_key)


def _check_postgres_tls(report, stack, name, label, query, tls_key="postgres_tls"):
    """The URL's sslmode against the stack's TLS mode (stack postgres_tls; absent: not checked)."""
    if tls_key not in stack:
        return
    found = parse_qs(query)
    sslmode = (found.get("sslmode") or [None])[-1]
    if stack[tls_key].lower() == "true":
        if sslmode != pg_tls.VERIFY_FULL:
            report.error(
                name,
                f"does not verify {label}'s certificate (sslmode={sslmode or 'unset'}) but the stack "
                "serves TLS (cmx_tls_enabled)",
                "?sslmode=verify-full&sslrootcert=<the stack's CA file> at the end",
            )
        elif not (found.get("sslrootcert") or [""])[-1]:
            report.error(
                name,
                "has sslmode=verify-full but no sslrootcert: libpq would look for ~/.postgresql/root.crt",
                "&sslrootcert=<the stack's CA file, rendered next to the .env>",
            )
    elif sslmode in pg_tls.TLS_MODES:
        report.error(
            name,
            f"asks for TLS (sslmode={sslmode}) but the stack serves none (cmx_tls_enabled is false)",
            "no sslmode, or sslmode=disable",
        )


def _check_redis(report, values, environment, stack):
    """REDIS_URL's password against REDIS_PASSWORD and the Redis settings; each fault reported once."""
    redis = _parsed(values, "REDIS_URL")
    declared = values.get("REDIS_PASSWORD")
    url_password = None
    if redis and redis[0].password is not None:
        url_password = unquote(redis[0].password) or None
    # Already reported by the URL check: no password in staging/production.
    no_password_reported = environment in STRICT_ENVIRONMENTS
    if redis:
        if declared and url_password is None and not no_password_reported:
            report.error(
                "REDIS_URL",
                "has no password but REDIS_PASSWORD is set",
                "redis://:PASSWORD@HOST:PORT with the password of REDIS_PASSWORD",
            )
        elif declared and url_password is not None and url_password != declared:
            report.error(
                "REDIS_URL",
                "password differs from REDIS_PASSWORD",
                "redis://:PASSWORD@HOST:PORT with the password of REDIS_PASSWORD",
            )
        elif url_password is not None and declared == "":
            report.error(
                "REDIS_PASSWORD", "is empty but REDIS_URL carries a password", "the password in REDIS_URL"
            )
    if "redis_password" in stack:
        server = stack["redis_password"]
        if redis:
            if server and url_password is None and not no_password_reported and not declared:
                report.error(
                    "REDIS_URL",
                    "has no password but Redis requires one (stack redis_password)",
                    "redis://:PASSWORD@HOST:PORT",
                )
            elif server and url_password is not None and url_password != server:
                report.error(
                    "REDIS_URL",
                    "password differs from the Redis password (stack redis_password)",
                    "the password the stack was built with (cmx_redis_password)",
                )
            elif not server and url_password is not None:
                report.error(
                    "REDIS_URL",
                    "carries a password but Redis has none (stack redis_password is empty)",
                    "redis://HOST:PORT",
                )
        if declared is not None and declared != server:
            report.error(
                "REDIS_PASSWORD",
                "differs from the Redis password (stack redis_password)",
                "the password the stack was built with (cmx_redis_password)",
            )
    if redis:
        if "redis_port" in stack and _port_of(redis) != stack["redis_port"]:
            report.error(
                "REDIS_URL",
                f"port {_port_of(redis)} differs from the Redis port (stack redis_port)",
                f"port {stack['redis_port']}",
            )
        if "redis_host" in stack and not _same_host(redis[0].hostname, stack["redis_host"]):
            report.error(
                "REDIS_URL",
                f"host {redis[0].hostname!r} differs from the Redis host (stack redis_host)",
                "host {!r}".format(stack["redis_host"]),
            )


def _check_storage(report, values, stack):
    endpoint = _parsed(values, "S3_ENDPOINT")
    if endpoint:
        if "s3_port" in stack and _port_of(endpoint) != stack["s3_port"]:
            report.error(
                "S3_ENDPOINT",
                f"port {_port_of(endpoint)} differs from the storage's S3 port (stack s3_port)",
                f"port {stack['s3_port']}",
            )
        if "s3_host" in stack and not _same_host(endpoint[0].hostname, stack["s3_host"]):
            report.error(
                "S3_ENDPOINT",
                f"host {endpoint[0].hostname!r} differs from the storage host (stack s3_host)",
                "host {!r}".format(stack["s3_host"]),
            )
    for name, key in (("S3_ACCESS_KEY", "s3_access_key"), ("S3_SECRET_KEY", "s3_secret_key")):
        value = values.get(name)
        if value and key in stack and value != stack[key]:
            report.error(
                name,
                f"differs from the storage's credentials (stack {key})",
                f"the key the storage was built with (cmx_{key})",
            )
    for name, key in (("S3_BUCKET", "s3_bucket"), ("S3_REGION", "s3_region")):
        value = values.get(name)
        if value and key in stack and value != stack[key]:
            report.error(
                name,
                f"{value!r} differs from the storage's {stack[key]!r} (stack {key})",
                repr(stack[key]),
            )


def _name_suggestion(value, pattern):
    """A name close to `value` that matches `pattern`, or None."""
    candidate = re.sub(r"[^a-z0-9_]+", "_", value.lower()).strip("_")[:63] or "cmx"
    if candidate[0].isdigit():
        candidate = ("_" + candidate)[:63]
    return candidate if re.fullmatch(pattern, candidate) else None


def _check_stack_names(report, stack):
    """User, database and bucket names the stack is built with: one pattern each (STACK_NAME_RULES)."""
    for key, variable, pattern, form in STACK_NAME_RULES:
        value = stack.get(key)
        if value is None or re.fullmatch(pattern, value):
            continue
        suggestion = _name_suggestion(value, pattern)
        fix = f", e.g. {suggestion}" if suggestion else ""
        report.error(
            variable,
            f"{value!r} cannot be used as a name: the stack writes it into SQL, pgbouncer.ini and URLs",
            f"{form} (pattern ^{pattern}$); rename it in the inventory{fix}",
        )


def _check_stack_roles(report, environment, stack):
    """The database roles (STACK_ROLE_KEYS) have different names; in staging and production the passwords
    no .env carries are as strong as any other secret."""
    seen = {}
    for key, variable in STACK_ROLE_KEYS:
        value = stack.get(key)
        if value is None:
            continue
        if value in seen:
            report.error(
                variable,
                f"{value!r} is also {seen[value]}: each database role needs its own name (docs/security.md)",
                f"a name other than {seen[value]}'s",
            )
        else:
            seen[value] = variable
    if environment not in STRICT_ENVIRONMENTS:
        return
    for key, variable in STACK_ROLE_PASSWORD_KEYS:
        value = stack.get(key)
        problem = weakness(value, MIN_SECRET_LENGTH) if value else None
        if problem:
            report.error(
                variable,
                problem,
                f"a random password of at least {MIN_SECRET_LENGTH} characters kept in the vault",
            )


def _check_cross(report, values, environment, stack):
    """Checks between variables, and between the variables and the stack settings."""
    pool_min, pool_max = (
        _int_or_none(values.get("DATABASE_POOL_MIN")),
        _int_or_none(values.get("DATABASE_POOL_MAX")),
    )
    if pool_min is not None and pool_max is not None and pool_max < pool_min:
        report.error(
            "DATABASE_POOL_MAX",
            f"is smaller than DATABASE_POOL_MIN ({pool_max} < {pool_min})",
            "at least DATABASE_POOL_MIN",
        )

    direct, pooled = _parsed(values, "DATABASE_URL"), _parsed(values, "DATABASE_POOLED_URL")
    if direct and pooled:
        for what, left, right in (
            ("user", direct[0].username, pooled[0].username),
            ("password", direct[0].password, pooled[0].password),
            ("database", direct[0].path.strip("/"), pooled[0].path.strip("/")),
        ):
            if left and right and unquote(left) != unquote(right):
                report.error(
                    "DATABASE_POOLED_URL",
                    f"{what} differs from DATABASE_URL's",
                    "the same user, password and database as DATABASE_URL, PgBouncer's port",
                )
    for name, port_name in (("DATABASE_URL", "POSTGRES_PORT"), ("DATABASE_POOLED_URL", "PGBOUNCER_PORT")):
        split, port = _parsed(values, name), _int_or_none(values.get(port_name))
        if split and port is not None and _port_of(split) != port:
            report.error(
                port_name,
                f"is {port} but {name} uses port {_port_of(split)}",
                f"the port in {name}",
            )

    app_url, app_port = _parsed(values, "APP_URL"), _int_or_none(values.get("APP_PORT"))
    app_url_port = app_url[1] if app_url and _is_loopback(app_url[0].hostname) else None
    if app_url_port is not None and app_port is not None and app_url_port != app_port:
        report.error(
            "APP_URL",
            f"points at localhost port {app_url_port} but the backend listens on APP_PORT {app_port}",
            f"http://localhost:{app_port}",
        )

    declared = values.get("CMX_ENVIRONMENT")
    if declared in ENVIRONMENTS and declared != environment:
        report.error(
            "CMX_ENVIRONMENT",
            f"says {declared} but the file is being validated for {environment}",
            environment,
        )

    anon, service = values.get("NEXT_PUBLIC_SUPABASE_ANON_KEY"), values.get("SUPABASE_SERVICE_ROLE_KEY")
    if anon and anon == service and not _ANGLE_PLACEHOLDER_RE.match(anon.strip()):
        report.error(
            "NEXT_PUBLIC_SUPABASE_ANON_KEY",
            "is the same as SUPABASE_SERVICE_ROLE_KEY and would ship it to browsers",
            "the anon key",
        )

    _check_redis(report, values, environment, stack)
    _check_postgres_url(report, values, stack, "DATABASE_URL", "postgres_port")
    _check_postgres_url(report, values, stack, "DATABASE_POOLED_URL", "pgbouncer_port")
    for port_name, key in (("POSTGRES_PORT", "postgres_port"), ("PGBOUNCER_PORT", "pgbouncer_port")):
        port = _int_or_none(values.get(port_name))
        if port is not None and key in stack and port != stack[key]:
            report.error(
                port_name,
                f"is {port} but the stack publishes it on {stack[key]} (stack {key})",
                str(stack[key]),
            )
    _check_storage(report, values, stack)
    _check_stack_names(report, stack)
    _check_stack_roles(report, environment, stack)


# --- entry points -------------------------------------------------------------------------------------------


def normalize_stack(stack):
    """Stack settings with None dropped and ports as int; raise ValueError for unknown keys or bad ports."""
    result = {}
    for key, value in (stack or {}).items():
        if key not in STACK_KEYS:
            raise ValueError("unknown stack setting {!r} (known: {})".format(key, ", ".join(STACK_KEYS)))
        if value is None:
            continue
        if key in STACK_INT_KEYS:
            try:
                value = int(value)
            except (TypeError, ValueError):
                raise ValueError(f"stack setting {key} must be a port number") from None
        else:
            value = str(value)
        result[key] = value
    return result


def _check_environment(environment):
    if environment not in ENVIRONMENTS:
        raise ValueError("unknown environment {!r} (known: {})".format(environment, ", ".join(ENVIRONMENTS)))


def _validate(report, stack):
    environment = report.environment
    values = report.values
    for name in report.undefined:
        entry = BY_NAME.get(name)
        inputs = template_inputs(entry["default"][environment]) if entry else []
        if inputs:
            what = "its env_values entry, or an inventory variable its default uses ({}),".format(
                ", ".join(inputs)
            )
        else:
            what = "its env_values entry"
        report.error(
            name,
            f"could not be templated: {what} is undefined",
            "every variable it uses defined (is a vault_* entry missing from vault.yml?)",
        )
    hosts = map((stack or {}).get, ("postgres_host", "redis_host", "s3_host"))
    own_hosts = {str(host).lower() for host in hosts if host}
    for entry in VARIABLES:
        name = entry["name"]
        value = values.get(name)
        if name in report.undefined:
            continue
        if value is None or value.strip() == "":
            if entry["required"][environment]:
                report.error(
                    name,
                    "is {} (required in {})".format("missing" if value is None else "empty", environment),
                    expected_form(entry, environment),
                )
            continue
        _check_value(report, entry, value, environment, own_hosts)
    _check_cross(report, values, environment, stack)
    for name in values:
        if name in BY_NAME:
            continue
        close = difflib.get_close_matches(name, list(BY_NAME), n=1, cutoff=0.6)
        if close:
            report.warning(name, "is not in the schema (a typo?)", close[0])
        else:
            report.warning(
                name,
                "is not in the schema",
                "a variable listed in docs/environment.md (or add it to plugins/module_utils/env_schema.py)",
            )
    report.sort()
    return report


def validate_mapping(values, environment, stack=None, source=None, undefined=()):
    """Validate a mapping of variable names to values (str, int, float, bool; None means absent).

    `undefined` names variables whose value could not be templated (an undefined inventory variable)."""
    _check_environment(environment)
    stack = normalize_stack(stack)
    report = Report(environment, source)
    report.undefined = tuple(str(name) for name in undefined or ())
    for name, value in (values or {}).items():
        name = str(name)
        if not _NAME_RE.match(name):
            report.error(
                name,
                "is not a valid variable name",
                "letters, digits and underscores, not starting with a digit",
            )
        try:
            normalized = _normalize(value)
        except TypeError as exc:
            report.error(name, f"is a {exc}, not a single value", "a string, number or boolean")
            continue
        if normalized is not None:
            report.values[name] = normalized
    return _validate(report, stack)


def validate_text(text, environment, stack=None, source=".env"):
    """Validate the content of an env file; `source` names it in the messages."""
    _check_environment(environment)
    stack = normalize_stack(stack)
    report = Report(environment, source)
    parse_env(text, report)
    return _validate(report, stack)


def validate_file(path, environment, stack=None, source=None):
    """Validate an env file on disk; `source` (default: the path) names it in the messages."""
    _check_environment(environment)
    stack = normalize_stack(stack)
    source = source or str(path)
    try:
        with open(path, encoding="utf-8", newline="") as handle:
            text = handle.read()
    except (OSError, UnicodeDecodeError) as exc:
        report = Report(environment, source)
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not UTF-8 text"
        report.error(None, f"cannot be read ({reason})", "a readable UTF-8 env file")
        return report
    report = Report(environment, source)
    parse_env(text, report)
    return _validate(report, stack)
