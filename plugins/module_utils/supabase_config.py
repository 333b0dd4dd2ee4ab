"""Supabase CLI config.toml: the inventory settings checked, TOML values written, the pinned CLI's own check.

Three steps, in the order the role runs them (roles/supabase/tasks/config.yml):

1. :func:`problems` checks the ``cmx_supabase_*`` inventory values (and ``cmx_postgres_major``) for type and
   range and returns every problem at once, each naming its inventory variable (filter
   ``cleanmatex.infra.supabase_config_problems``).
2. The template roles/supabase/templates/config.toml.j2 writes each value with :func:`toml_value` (filter
   ``cleanmatex.infra.toml_value``): strings as TOML basic strings with every quote, backslash and control
   character escaped, so no inventory value can change the file's structure.
3. :func:`cli_check` hands the rendered text to the pinned Supabase CLI: ``supabase services -o json
   --workdir <temporary folder>`` loads ``<workdir>/supabase/config.toml`` with the same loader as ``start``
   and needs no Docker. That command exits 0 even when the config is rejected: the rejection is its stderr
   (e.g. ``Failed reading config: Invalid db.major_version: 99.``), so any stderr is a rejection, and the
   ``supabase/postgres`` image it picks must be of the configured major (proof it read our file).
   Module ``cleanmatex.infra.cmx_supabase_config`` (:func:`task_result`) writes the file only after that.

The CLI itself accepts much that is wrong (a port given as a string, port 70000, a size of "fifty", a site
URL that is no URL): step 1 is what catches those. Standard library only.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import tempfile
from urllib.parse import urlsplit

# --- 1. the inventory values --------------------------------------------------------------------------

PROJECT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}\Z")  # Docker names the CLI derives from it
SIZE = re.compile(r"[1-9][0-9]*(B|KB|KiB|MB|MiB|GB|GiB)\Z")
SCHEMA = re.compile(r"[A-Za-z_][A-Za-z0-9_$]{0,62}\Z")
POSTGRES_MAJORS = (15, 17)
JWT_EXPIRY_MAX = 604800  # one week: the Auth server's limit
# Characters a URL must percent-encode; whitespace and control characters are checked separately.
URL_FORBIDDEN = set('"\\<>^`{|}')

PORTS = (
    "cmx_supabase_api_port",
    "cmx_supabase_db_port",
    "cmx_supabase_db_shadow_port",
    "cmx_supabase_studio_port",
    "cmx_supabase_local_smtp_port",
    "cmx_supabase_local_smtp_smtp_port",
    "cmx_supabase_local_smtp_pop3_port",
    "cmx_supabase_analytics_port",
)
FLAGS = (
    "cmx_supabase_api_enabled",
    "cmx_supabase_db_seed_enabled",
    "cmx_supabase_studio_enabled",
    "cmx_supabase_local_smtp_enabled",
    "cmx_supabase_storage_enabled",
    "cmx_supabase_realtime_enabled",
    "cmx_supabase_auth_enabled",
    "cmx_supabase_auth_enable_signup",
    "cmx_supabase_auth_email_enable_signup",
    "cmx_supabase_auth_email_double_confirm_changes",
    "cmx_supabase_auth_email_enable_confirmations",
    "cmx_supabase_analytics_enabled",
)
URLS = ("cmx_supabase_studio_api_url", "cmx_supabase_auth_site_url")
URL_LISTS = ("cmx_supabase_auth_additional_redirect_urls",)
SCHEMA_LISTS = ("cmx_supabase_api_schemas", "cmx_supabase_api_extra_search_path")
# name -> (minimum, maximum)
INTEGERS = {"cmx_supabase_api_max_rows": (1, 1_000_000), "cmx_supabase_auth_jwt_expiry": (1, JWT_EXPIRY_MAX)}
OTHERS = ("cmx_supabase_project_id", "cmx_supabase_storage_file_size_limit", "cmx_postgres_major")

# Every variable the template reads: the role passes exactly these to problems().
NAMES = tuple(sorted({*PORTS, *FLAGS, *URLS, *URL_LISTS, *SCHEMA_LISTS, *INTEGERS, *OTHERS}))


def _shown(value) -> str:
    kind = {bool: "a boolean", int: "an integer", str: "a string", list: "a list", dict: "a mapping"}
    for base, name in kind.items():
        if isinstance(value, base):
            return f"{value!r} ({name})"
    return f"{value!r} ({type(value).__name__})" if value is not None else "nothing (undefined or null)"


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _url_problem(value) -> str | None:
    """Why value is not an absolute http(s) URL, or None."""
    if not isinstance(value, str):
        return "must be an http:// or https:// URL"
    if any(char.isspace() or ord(char) < 0x20 or ord(char) == 0x7F for char in value):
        return "must be an http(s) URL without spaces or control characters"
    if URL_FORBIDDEN & set(value):
        return 'must be an http(s) URL; percent-encode " \\ < > ^ ` { | } in it'
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 (raises ValueError for a bad port)
    except ValueError as error:
        return f"must be an http(s) URL ({error})"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "must be an http:// or https:// URL with a host"
    return None


def problems(settings: dict) -> list[str]:
    """Every problem of the settings ({inventory variable: value}), one message each naming the variable.

    An empty list means the values are fit for config.toml. Missing names are reported as such."""
    found = []

    def bad(name: str, requirement: str) -> None:
        found.append(f"{name} {requirement}, got {_shown(settings.get(name))}")

    for name in sorted(set(NAMES) - set(settings)):
        found.append(f"{name} is not set")
    for name in sorted(set(settings) - set(NAMES)):
        found.append(f"{name} is not a Supabase config setting (a typo?)")
    present = {name: value for name, value in settings.items() if name in NAMES}

    def each(names):
        return [(name, present[name]) for name in names if name in present]

    for name, value in each(PORTS):
        if not (_is_int(value) and 1 <= value <= 65535):
            bad(name, "must be a port number: an integer from 1 to 65535")
    ports: dict[int, list[str]] = {}
    for name, value in each(PORTS):
        if _is_int(value):
            ports.setdefault(value, []).append(name)
    for port, names in sorted(ports.items()):
        if len(names) > 1:
            found.append(f"{' and '.join(names)} share port {port}: every Supabase port must be different")
    for name, value in each(FLAGS):
        if not isinstance(value, bool):
            bad(name, "must be true or false (a YAML boolean, not a string)")
    for name, value in each(URLS):
        reason = _url_problem(value)
        if reason:
            bad(name, reason)
    for name, value in each(URL_LISTS):
        if not isinstance(value, list):
            bad(name, "must be a list of http(s) URLs (may be empty)")
            continue
        for index, item in enumerate(value):
            reason = _url_problem(item)
            if reason:
                found.append(f"{name}[{index}] {reason}, got {_shown(item)}")
    for name, value in each(SCHEMA_LISTS):
        if not isinstance(value, list) or not all(
            isinstance(item, str) and SCHEMA.match(item) for item in value
        ):
            bad(name, "must be a list of PostgreSQL schema names (letters, digits, _ and $)")
    for name, value in each(INTEGERS):
        low, high = INTEGERS[name]
        if not (_is_int(value) and low <= value <= high):
            bad(name, f"must be an integer from {low} to {high}")
    if "cmx_supabase_project_id" in present:
        value = present["cmx_supabase_project_id"]
        if not (isinstance(value, str) and PROJECT_ID.match(value)):
            bad(
                "cmx_supabase_project_id",
                "must be 1-63 letters, digits, '_', '.' or '-', starting with a letter or digit",
            )
    if "cmx_supabase_storage_file_size_limit" in present:
        value = present["cmx_supabase_storage_file_size_limit"]
        if not (isinstance(value, str) and SIZE.match(value)):
            bad(
                "cmx_supabase_storage_file_size_limit",
                'must be a size such as "50MiB" (B, KB, KiB, MB, MiB, GB, GiB)',
            )
    if "cmx_postgres_major" in present and postgres_major(present["cmx_postgres_major"]) is None:
        bad(
            "cmx_postgres_major",
            f"must be one of {', '.join(map(str, POSTGRES_MAJORS))} (the stack's PostgreSQL)",
        )
    return found


def postgres_major(value) -> int | None:
    """The major as an int (15, "17" -> 17: e.g. given with -e), or None if unsupported."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str) and value.isascii() and value.isdigit():
        value = int(value)
    return value if value in POSTGRES_MAJORS else None


# --- 2. TOML values ----------------------------------------------------------------------------------

_TOML_ESCAPES = {"\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r", '"': '\\"', "\\": "\\\\"}


def toml_string(value: str) -> str:
    """A TOML basic string: quote, backslash and every control character escaped; other text as is (UTF-8)."""
    out = []
    for char in value:
        if char in _TOML_ESCAPES:
            out.append(_TOML_ESCAPES[char])
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\u{ord(char):04X}")
        elif 0xD800 <= ord(char) <= 0xDFFF:
            raise ValueError("a lone surrogate cannot be written in TOML")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def toml_value(value) -> str:
    """A TOML value for a string, boolean, integer, finite float or list of those (an inline array)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(int(value))
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{value!r} is not a finite number")
        return repr(float(value))
    if isinstance(value, str):
        return toml_string(str(value))
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    raise ValueError(f"a {type(value).__name__} cannot be written as a TOML value")


# --- 3. the pinned CLI's own check --------------------------------------------------------------------

CLI_ENV = {"SUPABASE_TELEMETRY_DISABLED": "1", "DO_NOT_TRACK": "1"}


class CliCheck:
    """Outcome of cli_check: ok, the CLI's message when not, and the images it picked for this config."""

    def __init__(self, ok: bool, message: str, images: dict[str, str], command: list[str]):
        self.ok, self.message, self.images, self.command = ok, message, images, command


def services_images(stdout: str) -> dict[str, str]:
    """`supabase services -o json` ([{"name", "local", "remote"}, ...]) as {image: local tag}."""
    rows = json.loads(stdout)
    if isinstance(rows, dict):  # --output-format json wraps the list
        rows = rows.get("services", [])
    return {row["name"]: row["local"] for row in rows}


def cli_check(cli: str, content: str, major=None, timeout: int = 120) -> CliCheck:
    """Run the pinned CLI's config loader on content (config.toml text) in a temporary workdir.

    ok is False with the CLI's own message when it rejects the file (anything on its stderr, or a failing
    exit), and when the supabase/postgres image it picks is not of the given PostgreSQL major."""
    workdir = tempfile.mkdtemp(prefix="cmx-supabase-config-")
    cli = os.path.abspath(cli)  # the CLI runs in workdir
    command = [cli, "services", "-o", "json", "--workdir", workdir]
    try:
        os.makedirs(os.path.join(workdir, "supabase", ".temp"))
        with open(os.path.join(workdir, "supabase", "config.toml"), "w", encoding="utf-8") as handle:
            handle.write(content)
        # A fresh (empty) stamp: the CLI skips its check for a newer release on GitHub (no network needed).
        open(os.path.join(workdir, "supabase", ".temp", "cli-latest"), "w").close()
        try:
            done = subprocess.run(
                command,
                env={**os.environ, **CLI_ENV},
                cwd=workdir,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        except OSError as error:
            return CliCheck(False, f"the Supabase CLI could not run ({cli}): {error}", {}, command)
        except subprocess.TimeoutExpired:
            return CliCheck(False, f"the Supabase CLI did not answer within {timeout}s ({cli})", {}, command)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    said = done.stderr.strip()
    if done.returncode != 0 or said:
        return CliCheck(False, said or f"exit status {done.returncode}", {}, command)
    try:
        images = services_images(done.stdout)
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        return CliCheck(
            False,
            f"unexpected output of `supabase services -o json` ({error}): {done.stdout[:300]}",
            {},
            command,
        )
    wanted = postgres_major(major) if major is not None else None
    tag = images.get("supabase/postgres", "")
    if wanted is not None and tag.split(".")[0] != str(wanted):
        return CliCheck(
            False,
            f"the CLI picked supabase/postgres:{tag} for this config.toml, not PostgreSQL {wanted}",
            images,
            command,
        )
    return CliCheck(True, "", images, command)


# --- the module ---------------------------------------------------------------------------------------

ARGUMENT_SPEC = {
    "content": {"type": "str", "required": True},
    "dest": {"type": "path", "required": True},
    "cli": {"type": "path", "required": True},
    "postgres_major": {"type": "str"},
    "mode": {"type": "str", "default": "0644"},
    "timeout": {"type": "int", "default": 120},
}


def _write_atomically(path: str, content: str, mode: int) -> None:
    folder = os.path.dirname(path) or "."
    handle, temporary = tempfile.mkstemp(dir=folder, prefix=".config.toml.")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(content)
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise


def task_result(params: dict, check_mode: bool) -> dict:
    """Check content with the CLI, then write it to dest when it differs (not in check mode)."""
    checked = cli_check(params["cli"], params["content"], params.get("postgres_major"), params["timeout"])
    result = {"changed": False, "dest": params["dest"], "images": checked.images, "command": checked.command}
    if not checked.ok:
        return {
            **result,
            "failed": True,
            "cli_message": checked.message,
            "msg": f"The Supabase CLI rejected the rendered config.toml for {params['dest']}: "
            + checked.message,
        }
    mode = int(params["mode"], 8)
    try:
        with open(params["dest"], encoding="utf-8") as handle:
            current = handle.read()
        current_mode = os.stat(params["dest"]).st_mode & 0o7777
    except FileNotFoundError:
        current, current_mode = None, None
    if current == params["content"] and current_mode == mode:
        return result
    if not check_mode:
        try:
            _write_atomically(params["dest"], params["content"], mode)
        except OSError as error:
            return {**result, "failed": True, "msg": f"cannot write {params['dest']}: {error}"}
    return {**result, "changed": True}
