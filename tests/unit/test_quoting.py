"""Quoting per destination (plugins/module_utils/quoting.py): every hostile value reaches the real parser
unchanged: PostgreSQL (identifiers, literals), docker compose (YAML + interpolation, .env), redis-server
(redis.conf) and PgBouncer (pgbouncer.ini). Servers missing on the machine skip their test."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import psycopg2
import pytest
import redis
import yaml
from ansible_collections.cleanmatex.infra.plugins.filter.quoting import FilterModule
from ansible_collections.cleanmatex.infra.plugins.module_utils import quoting
from redis.backoff import NoBackoff
from redis.retry import Retry
from test_probes_support import _demote_argv, _service_user, _stop, free_port, port_open, wait_for

HOSTILE = [
    "plain",
    "",
    "it's",
    'say "hi"',
    "$user,public",
    '"$user", public',
    "${HOME}",
    "$$",
    "a:b:c",
    "#not a comment",
    "x # y",
    "two  spaces ",
    " leading",
    "back\\slash",
    "ends with \\",
    "\\'",
    "pä$s'w\"o:r#d ä",
    "tab\there",
    "日本語",
    "emoji \U0001f600",
    "=",
    "a,b",
    ";semi",
]
MULTILINE = ["line\nbreak", "cr\rlf"]
_names = iter(range(1, 10**6))


def test_quote_for_knows_its_targets_and_converts_scalars():
    assert FilterModule().filters()["quote_for"]("x", "sql_ident") == '"x"'
    assert quoting.quote_for(5432, "env") == "5432"
    assert quoting.quote_for(True, "compose") == '"true"'
    assert quoting.quote_for(None, "sql_literal") == "''"
    with pytest.raises(ValueError, match="unknown quoting target 'yaml'"):
        quoting.quote_for("x", "yaml")


@pytest.mark.parametrize("target", ["sql_ident", "sql_literal", "env", "pgbouncer_ini"])
def test_a_nul_character_is_refused(target):
    with pytest.raises(ValueError, match="NUL"):
        quoting.quote_for("a\0b", target)


def test_pgbouncer_has_no_quoting_for_names_and_no_line_breaks():
    assert quoting.pgbouncer_name("cmx_db") == "cmx_db"
    for bad in ("we ird", "a,b", 'q"', "ä", "", "*"):
        with pytest.raises(ValueError, match=r"cannot be written in pgbouncer\.ini"):
            quoting.pgbouncer_name(bad)
    with pytest.raises(ValueError, match="line break"):
        quoting.pgbouncer_ini("a\nb")


# --- PostgreSQL ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("conforming", ["on", "off"])
def test_sql_literal_reads_back_unchanged(admin_cursor, conforming):
    admin_cursor.execute(f"SET standard_conforming_strings = {conforming}")
    for value in HOSTILE + MULTILINE:
        admin_cursor.execute(f"SELECT {quoting.sql_literal(value)}")
        assert admin_cursor.fetchone()[0] == value


def test_sql_ident_names_exactly_the_object(admin_cursor):
    for value in HOSTILE + MULTILINE:
        if not value:
            continue  # PostgreSQL has no zero-length identifier
        name = f"{value} {next(_names)}"[:63]
        admin_cursor.execute(f"CREATE ROLE {quoting.sql_ident(name)}")
        admin_cursor.execute("SELECT count(*) FROM pg_roles WHERE rolname = %s", (name,))
        assert admin_cursor.fetchone()[0] == 1, name
        admin_cursor.execute(f"DROP ROLE {quoting.sql_ident(name)}")


def test_to_json_was_no_sql_identifier_quoting():
    # What the templates used before: a non-ASCII or backslash name becomes another name.
    assert json.dumps("dbä") == '"db\\u00e4"' != quoting.sql_ident("dbä")


# --- YAML and docker compose ----------------------------------------------------------------------------


def test_yaml_double_quoted_reads_back_unchanged():
    nasty = [*HOSTILE, *MULTILINE, "\x07bell\x7fdel\x85nel\u2028ls\ufeffbom", "\U0001f600"]
    for value in nasty:
        assert yaml.safe_load("key: " + quoting.yaml_double_quoted(value)) == {"key": value}


needs_compose = pytest.mark.skipif(
    shutil.which("docker") is None
    or subprocess.run(["docker", "compose", "version"], capture_output=True).returncode != 0,
    reason="needs the docker compose CLI",
)


def compose_config(folder: Path) -> dict:
    argv = ["docker", "compose", "-p", "cmx-quoting-unit", f"--project-directory={folder}"]
    done = subprocess.run(
        [*argv, "config", "--format=json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def unescape(value: str) -> str:
    """`docker compose config` prints a literal $ as $$ (its output is a compose file)."""
    return value.replace("$$", "$")


@needs_compose
def test_compose_scalars_and_env_files_reach_the_container_unchanged(tmp_path):
    values = HOSTILE + MULTILINE
    command = "\n".join(f"      - {quoting.compose(value)}" for value in values)
    environment = "\n".join(f"      V{index}: ${{V{index}}}" for index in range(len(values)))
    (tmp_path / "docker-compose.yml").write_text(
        f"services:\n  probe:\n    image: scratch\n    env_file: [./probe.env]\n    command:\n{command}\n"
        f"    environment:\n{environment}\n"
    )
    lines = "".join(f"V{index}={quoting.env(value)}\n" for index, value in enumerate(values))
    (tmp_path / ".env").write_text(lines)
    (tmp_path / "probe.env").write_text(lines.replace("V", "F"))
    service = compose_config(tmp_path)["services"]["probe"]
    assert [unescape(arg) for arg in service["command"]] == values
    for index, value in enumerate(values):
        assert unescape(service["environment"][f"V{index}"]) == value  # .env, then interpolated
        assert unescape(service["environment"][f"F{index}"]) == value  # env_file


@needs_compose
def test_the_old_unquoted_settings_line_lost_the_dollar(tmp_path):
    (tmp_path / "docker-compose.yml").write_text(
        'services:\n  probe:\n    image: scratch\n    command:\n      - "search_path=$user,public"\n'
    )
    assert compose_config(tmp_path)["services"]["probe"]["command"] == ["search_path=,public"]


# --- Redis ----------------------------------------------------------------------------------------------


def redis_client(port: int, password: str) -> redis.Redis:
    # No retries: a refused password answers at once.
    return redis.Redis(
        host="127.0.0.1", port=port, password=password, socket_timeout=5, retry=Retry(NoBackoff(), 0)
    )


def start_redis(config_line: str):
    binary = shutil.which("redis-server")
    if not binary:
        pytest.skip("redis-server not installed (apt-get install redis-server)")
    folder = tempfile.mkdtemp(prefix="cmx-quoting-redis-")
    config = Path(folder) / "redis.conf"
    config.write_text(f'{config_line}\nsave ""\nappendonly no\n', encoding="utf-8")
    port = free_port()
    argv = [binary, str(config), "--port", str(port), "--bind", "127.0.0.1", "--dir", folder]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def ready():
        if proc.poll() is not None:
            raise AssertionError(f"redis exited: {proc.stderr.read().decode()[-2000:]}")
        return port_open(port)

    wait_for(ready, 30, 0.02, "redis to listen")
    return proc, port, folder


@pytest.mark.parametrize("password", [value for value in HOSTILE + MULTILINE if value])
def test_redis_requirepass_accepts_exactly_the_password(password):
    proc, port, folder = start_redis("requirepass " + quoting.redis(password))
    try:
        assert redis_client(port, password).ping()
        with pytest.raises(redis.AuthenticationError):
            redis_client(port, password + "x").ping()
    finally:
        _stop(proc)
        shutil.rmtree(folder, ignore_errors=True)


def test_to_json_was_no_redis_quoting():
    proc, port, folder = start_redis("requirepass " + json.dumps("rä"))
    try:
        with pytest.raises(redis.AuthenticationError):
            redis_client(port, "rä").ping()
    finally:
        _stop(proc)
        shutil.rmtree(folder, ignore_errors=True)


# --- PgBouncer ------------------------------------------------------------------------------------------


def test_pgbouncer_connection_string_values_read_back_unchanged():
    binary = shutil.which("pgbouncer") or (
        "/usr/sbin/pgbouncer" if os.path.exists("/usr/sbin/pgbouncer") else None
    )
    if not binary:
        pytest.skip("pgbouncer not installed (apt-get install pgbouncer)")
    values = [value for value in HOSTILE if value]
    folder = Path(tempfile.mkdtemp(prefix="cmx-quoting-pgb-"))
    port = free_port()
    databases = "".join(
        f"db{index} = host=127.0.0.1 port=5432 dbname={quoting.pgbouncer_ini(value)}\n"
        for index, value in enumerate(values)
    )
    (folder / "userlist.txt").write_text('"admin" ""\n')
    (folder / "pgbouncer.ini").write_text(
        f"[databases]\n{databases}[pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = {port}\n"
        f"unix_socket_dir =\nauth_type = trust\nauth_file = {folder}/userlist.txt\n"
        f"admin_users = {quoting.pgbouncer_name('admin')}\nlogfile = {folder}/pgbouncer.log\n",
        encoding="utf-8",
    )
    user = _service_user()
    if os.geteuid() == 0:
        shutil.chown(folder, user)
    proc = subprocess.Popen(
        _demote_argv([binary, str(folder / "pgbouncer.ini")], user),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:

        def ready():
            if proc.poll() is not None:
                raise AssertionError(f"pgbouncer exited: {(folder / 'pgbouncer.log').read_text()[-2000:]}")
            return port_open(port)

        wait_for(ready, 30, 0.05, "pgbouncer to listen")
        console = psycopg2.connect(host="127.0.0.1", port=port, user="admin", dbname="pgbouncer")
        console.autocommit = True
        with console.cursor() as cursor:
            cursor.execute("SHOW DATABASES")
            columns = [column.name for column in cursor.description]
            rows = {row[0]: dict(zip(columns, row, strict=True)) for row in cursor.fetchall()}
        console.close()
        for index, value in enumerate(values):
            assert rows[f"db{index}"]["database"] == value
    finally:
        _stop(proc)
        shutil.rmtree(folder, ignore_errors=True)
