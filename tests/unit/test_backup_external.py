"""Backup and restore of external (managed) services, over the network only (issue 13, item 3).

Redis: a real redis-server on 127.0.0.1 plays ElastiCache: every key of every database is copied with
SCAN + PTTL + DUMP into redis/keys.bin and put back with FLUSHDB + RESTORE ... REPLACE ABSTTL, checked
against the manifest. Faults are injected: a payload the server refuses before anything is flushed
("nothing was changed"), one in the middle ("PARTIAL", and running the restore again completes it), a file
that does not match the manifest, a truncated file.

PostgreSQL: the throwaway PostgreSQL 15 cluster plays RDS; pg_dump, pg_dumpall, pg_restore and psql run in
one-off containers of the stack's image (``docker run --rm --network host cmx/postgres:*``), as for an
external server, never ``docker exec``. Also as a non-superuser master login (RDS): roles without their
passwords, role statements it may not run skipped with a warning. Skipped without docker or that image.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import time

import psycopg2
import pytest
from ansible_collections.cleanmatex.infra.plugins.module_utils import (
    backup,
    backup_exec,
    backup_postgres,
    backup_redis,
    backup_run,
)
from ansible_collections.cleanmatex.infra.tests.pg_cluster import (
    SUPERUSER_PASSWORD,
    TestDatabase,
    free_loopback_port,
)
from test_restore_redis import REDIS_CLI, REDIS_SERVER, Server

# --- the runner -------------------------------------------------------------------------------------------


def test_image_runner_runs_a_one_off_container_with_names_only_and_read_only_files():
    runner = backup_exec.Runner(image="cmx/postgres:17", files=("/opt/cmx/secrets/ca/postgres.crt",))
    argv = runner.argv("docker", ["pg_dump", "--format=custom"], ["PGPASSWORD", "PGHOST"], interactive=True)
    assert argv == [
        "docker", "run", "--rm", "--network", "host", "--log-driver", "none", "--pull", "never", "-i",
        "-e", "PGHOST", "-e", "PGPASSWORD",
        "--mount", "type=bind,source=/opt/cmx/secrets/ca/postgres.crt,"
        "target=/opt/cmx/secrets/ca/postgres.crt,readonly",
        "--entrypoint", "pg_dump", "cmx/postgres:17", "--format=custom",
    ]  # fmt: skip
    # A container name is still docker exec, as before.
    assert backup_exec.as_runner("cmx-postgres").argv("docker", ["psql"], ["PGPASSWORD"]) == [
        "docker", "exec", "-e", "PGPASSWORD", "cmx-postgres", "psql",
    ]  # fmt: skip
    assert backup_exec._mount_option("/a,b") == 'type=bind,"source=/a,b","target=/a,b",readonly'


def test_the_image_comes_from_the_rendered_env_file(tmp_path):
    env = tmp_path / ".env"
    env.write_text("CMX_PROJECT_NAME=cmx\nCMX_POSTGRES_IMAGE=cmx/postgres:17-abc\nCMX_REDIS_IMAGE='x'\n")
    assert backup_exec.image_of("", str(env)) == "cmx/postgres:17-abc"
    assert backup_exec.image_of("given:1", str(env)) == "given:1"
    assert backup_exec.env_file_value(str(env), "CMX_REDIS_IMAGE") == "x"
    env.write_text("CMX_PROJECT_NAME=cmx\n")
    with pytest.raises(backup_exec.ExecError, match="has no CMX_POSTGRES_IMAGE"):
        backup_exec.image_of("", str(env))


# --- Redis, every key over the network ----------------------------------------------------------------------

needs_redis = pytest.mark.skipif(not (REDIS_SERVER and REDIS_CLI), reason="redis-server not installed")


def fill(server: Server) -> None:
    db0, db3 = server.client(0), server.client(3)
    db0.set("s:plain", b"\x00binary\xff")
    db0.set("s:ttl", "expires later", ex=3600)
    db0.hset("h:user", mapping={"name": "Ann", "age": "41"})
    db0.rpush("l:queue", "a", "b", "c")
    db0.sadd("set:tags", "x", "y")
    db0.zadd("z:rank", {"p": 1.5, "q": 2})
    db0.xadd("stream:events", {"k": "v"})
    db0.pexpire("h:user", 7_200_000)
    for n in range(450):  # more than a pipeline and a SCAN page
        db0.set(f"bulk:{n}", os.urandom(16))
    db3.set("other:db", "three")
    db3.rpush("other:list", "1", "2")
    db3.expire("other:list", 600)


READ = {
    b"string": lambda client, key: client.get(key),
    b"hash": lambda client, key: client.hgetall(key),
    b"list": lambda client, key: client.lrange(key, 0, -1),
    b"set": lambda client, key: client.smembers(key),
    b"zset": lambda client, key: client.zrange(key, 0, -1, withscores=True),
    b"stream": lambda client, key: client.xrange(key),
}


def snapshot(server: Server) -> dict:
    """Every key of every database: (type, value); and the TTLs rounded to minutes."""
    found = {}
    for db in range(16):
        client = server.client(db)
        for key in client.scan_iter():
            ttl, kind = client.pttl(key), client.type(key)
            found[(db, key)] = (kind, READ[kind](client, key), -1 if ttl < 0 else round(ttl / 60000))
    return found


@pytest.fixture
def redis_server(tmp_path):
    server = Server(tmp_path, appendonly="no")
    yield server
    server.stop()


def dump(server: Server, folder) -> dict:
    return backup_redis.dump_keys("127.0.0.1", server.port, str(folder), timeout=30)


def restore(server: Server, folder, section) -> dict:
    return backup_redis.restore_keys("127.0.0.1", server.port, str(folder), section, timeout=30)


@needs_redis
def test_keys_backup_flushall_restore_round_trip(redis_server, tmp_path, monkeypatch):
    monkeypatch.setattr(backup_redis, "SCAN_COUNT", 40)  # many SCAN pages, each key copied once
    fill(redis_server)
    before = snapshot(redis_server)
    folder = tmp_path / "backup"
    part = dump(redis_server, folder)
    section = part["redis"]
    assert section["format"] == "keys" and section["keys_file"] == "redis/keys.bin"
    assert section["keys"] == {"db0": 457, "db3": 2}
    assert section["expiring"] == {"db0": 2, "db3": 1}
    assert part["files"]["redis/keys.bin"] == dict(
        zip(("size", "sha256"), backup.file_digest(str(folder / "redis/keys.bin")), strict=True)
    )

    redis_server.client().flushall()
    redis_server.client(5).set("not:in:backup", "gone after the restore")
    result = restore(redis_server, folder, section)

    assert snapshot(redis_server) == before
    assert result["format"] == "keys"
    assert result["loaded"] == {"db0": 457, "db3": 2} and result["expired"] == {}
    assert result["checked"] == {"db0": 457, "db3": 2, "db5": 0}
    assert result["keys"] == {"db0": 457, "db3": 2}


@needs_redis
def test_a_keys_backup_goes_into_a_manifest_and_restores_through_the_module_path(redis_server, tmp_path):
    """backup_run.dump_redis picks the keys format without a container; the manifest's section drives it."""
    fill(redis_server)
    before = snapshot(redis_server)
    folder = tmp_path / "backup"
    folder.mkdir()
    part = backup_run.dump_redis(
        {"container": "", "host": "127.0.0.1", "port": redis_server.port}, str(folder)
    )
    manifest = backup.build_manifest(
        name="x", created_at="", finished_at="", environment="ci", project="cmx", files=part["files"],
        postgres={}, redis=part["redis"], storage={},
    )  # fmt: skip
    backup.write_manifest(str(folder), manifest)
    redis_server.client().flushall()
    backup.verify_files(str(folder), backup.load_manifest(str(folder)))
    restore(redis_server, folder, backup.load_manifest(str(folder))["redis"])
    assert snapshot(redis_server) == before


@needs_redis
def test_keys_whose_expiry_passed_are_not_restored(redis_server, tmp_path):
    redis_server.client().set("short", "lived", px=300)
    redis_server.client().set("stays", "1")
    part = dump(redis_server, tmp_path / "b")
    redis_server.client().flushall()
    time.sleep(0.4)
    result = restore(redis_server, tmp_path / "b", part["redis"])
    assert result["loaded"] == {"db0": 1} and result["expired"] == {"db0": 1}
    assert redis_server.client().keys() == [b"stays"]


def _records(path) -> list[tuple]:
    return list(backup_redis.read_keys(str(path)))


def _rewrite(path, records) -> None:
    with open(path, "wb") as handle:
        handle.write(backup_redis.KEYS_MAGIC)
        for db, expires, key, payload in records:
            handle.write(
                b"K" + backup_redis._RECORD.pack(db, expires, len(key), len(payload)) + key + payload
            )
        handle.write(b"E" + backup_redis._TRAILER.pack(len(records)))


def _spoil(payload: bytes) -> bytes:
    return payload[:-1] + bytes([payload[-1] ^ 0xFF])  # the CRC64 no longer matches


@needs_redis
def test_a_payload_the_server_refuses_first_changes_nothing(redis_server, tmp_path):
    fill(redis_server)
    part = dump(redis_server, tmp_path / "b")
    path = tmp_path / "b" / "redis/keys.bin"
    records = _records(path)
    records[0] = (*records[0][:3], _spoil(records[0][3]))
    _rewrite(path, records)
    redis_server.client().flushall()
    redis_server.client(2).set("live", "data")
    live = snapshot(redis_server)

    with pytest.raises(backup_redis.RedisRestoreError, match=r"nothing was changed: .* refuses") as failed:
        restore(redis_server, tmp_path / "b", part["redis"])
    assert failed.value.changed is False
    assert snapshot(redis_server) == live


@needs_redis
def test_a_failure_in_the_middle_says_partial_and_a_second_run_completes_it(
    redis_server, tmp_path, monkeypatch
):
    fill(redis_server)
    before = snapshot(redis_server)
    part = dump(redis_server, tmp_path / "b")
    path = tmp_path / "b" / "redis/keys.bin"
    good = path.read_bytes()
    records = _records(path)
    records[300] = (*records[300][:3], _spoil(records[300][3]))
    _rewrite(path, records)
    monkeypatch.setattr(backup_redis, "PIPELINE_KEYS", 50)

    with pytest.raises(backup_redis.RedisRestoreError) as failed:
        restore(redis_server, tmp_path / "b", part["redis"])
    message = str(failed.value)
    assert failed.value.changed is True
    done = re.match(
        r"PARTIAL Redis restore: databases db0, db3 were flushed and ([0-9]+) of 459 keys", message
    )
    assert done, message
    assert "DUMP payload version or checksum are wrong" in message and "Run the restore again" in message
    # What the message says is what Redis holds: every key but the refused one up to the end of its pipeline.
    assert redis_server.client(0).dbsize() == int(done.group(1)) and redis_server.client(3).dbsize() == 0
    assert 300 <= int(done.group(1)) < 400

    path.write_bytes(good)  # what the message promises: running the restore again completes it
    restore(redis_server, tmp_path / "b", part["redis"])
    assert snapshot(redis_server) == before


@needs_redis
def test_a_file_that_differs_from_the_manifest_or_is_cut_short_changes_nothing(redis_server, tmp_path):
    fill(redis_server)
    part = dump(redis_server, tmp_path / "b")
    live = snapshot(redis_server)
    wrong = {**part["redis"], "keys": {"db0": 458, "db3": 2}}
    with pytest.raises(backup_redis.RedisRestoreError, match=r"nothing was changed: .* the manifest says"):
        restore(redis_server, tmp_path / "b", wrong)
    path = tmp_path / "b" / "redis/keys.bin"
    path.write_bytes(path.read_bytes()[:-20])
    with pytest.raises(backup.BackupError, match="truncated or damaged"):
        restore(redis_server, tmp_path / "b", part["redis"])
    assert snapshot(redis_server) == live


# --- PostgreSQL through a one-off container of the stack's image --------------------------------------------


def _postgres_image() -> str:
    if not shutil.which("docker"):
        return ""
    listed = subprocess.run(
        ["docker", "images", "--format", "{{.Repository}}:{{.Tag}}", "cmx/postgres"],
        capture_output=True,
        text=True,
        check=False,
    )
    images = sorted(line for line in listed.stdout.split() if line.startswith("cmx/postgres:"))
    return images[-1] if images else ""


IMAGE = _postgres_image()
needs_image = pytest.mark.skipif(not IMAGE, reason="no docker or no cmx/postgres image (run the images role)")


@pytest.fixture(scope="module")
def managed_pg():
    """A throwaway server of the image's own major (a managed server's stand-in: tools and server match),
    in a one-off container on 127.0.0.1 only, data on tmpfs; removed at the end."""
    name = f"cmxtest-managed-pg-{os.getpid()}-{os.urandom(3).hex()}"
    port = free_loopback_port()
    started = subprocess.run(
        ["docker", "run", "--rm", "-d", "--name", name, "--network", "host", "--pull", "never",
         "--tmpfs", "/var/lib/postgresql/data", "-e", "POSTGRES_PASSWORD", IMAGE,
         "postgres", "-c", "listen_addresses=127.0.0.1", "-c", f"port={port}", "-c", "fsync=off"],
        env=dict(os.environ, POSTGRES_PASSWORD=SUPERUSER_PASSWORD),
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert started.returncode == 0, started.stderr
    try:
        server = TestDatabase(port, "postgres")
        deadline = time.monotonic() + 60
        while True:
            try:
                server.connect().close()
                # The entrypoint's temporary server (initdb) listens on the socket only; this is the real one.
                break
            except psycopg2.OperationalError:
                assert time.monotonic() < deadline, "the managed stand-in did not start"
                time.sleep(0.2)
        yield server
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True, check=False)


@pytest.fixture
def managed_db(managed_pg) -> TestDatabase:
    name = f"app_{os.urandom(4).hex()}"
    admin(managed_pg, f'CREATE DATABASE "{name}"')
    return TestDatabase(managed_pg.port, name)


def admin(db: TestDatabase, sql: str, args=None) -> list:
    """One statement on the maintenance database as the server's superuser."""
    connection = TestDatabase(db.port, "postgres").connect()
    connection.autocommit = True
    try:
        with connection.cursor() as cursor:
            cursor.execute(sql, args)
            return cursor.fetchall() if cursor.description else []
    finally:
        connection.close()


def rows(db: TestDatabase, name: str | None = None) -> list[str]:
    database = TestDatabase(db.port, name or db.name, user=db.user, password=db.password)
    return [row[0] for row in database.query("SELECT v FROM t ORDER BY v")]


def _drop_copies(db: TestDatabase) -> None:
    for (name,) in admin(db, "SELECT datname FROM pg_database WHERE datname LIKE %s", (db.name + "\\_%",)):
        admin(db, f'DROP DATABASE "{name}" WITH (FORCE)')


@needs_image
def test_network_dump_and_restore_through_the_image_runner(managed_db, tmp_path, monkeypatch):
    managed_db.query("CREATE TABLE t (v text)")
    managed_db.query("INSERT INTO t VALUES ('a'), ('b')")
    calls = []
    real_call = subprocess.call

    def watched(argv, *args, **kwargs):
        calls.append(argv)
        return real_call(argv, *args, **kwargs)

    monkeypatch.setattr(backup_exec.subprocess, "call", watched)
    folder = tmp_path / "backup"
    dumped = backup_postgres.dump(connection=managed_db.params, container="", folder=str(folder), image=IMAGE)
    section = dumped["postgres"]
    assert section["tables"] == {"public.t": 2}
    assert section["client_image"] == IMAGE and section["globals_scope"] == "roles"
    assert section["role_passwords"] is True  # a superuser login
    assert section["pg_dump_version"].startswith("17.")
    # pg_dump 16+ compresses with lz4 unless told otherwise
    assert section["compression"] == "lz4"
    dump_argv = next(argv for argv in calls if "pg_dump" in argv)
    assert "--compress=lz4" in dump_argv
    assert all(argv[1:3] == ["run", "--rm"] for argv in calls), "docker exec used for an external server"
    assert not any(managed_db.password in " ".join(argv) for argv in calls), "the password on a command line"
    assert b"CREATE ROLE" in (folder / section["globals_file"]).read_bytes()

    managed_db.query("INSERT INTO t VALUES ('c')")
    init_sql = tmp_path / "initdb" / "001-init.sql"
    init_sql.parent.mkdir()
    init_sql.write_text("CREATE TABLE init_ran (x int);\n")
    try:
        result = backup_postgres.restore(
            connection=managed_db.params, container="", image=IMAGE, folder=str(folder), section=section,
            managed_roles=[managed_db.user], init_sql=str(init_sql),
        )  # fmt: skip
        assert rows(managed_db) == ["a", "b"]
        assert rows(managed_db, result["previous_database"]) == ["a", "b", "c"]
        assert managed_db.query("SELECT count(*) FROM init_ran") == [(0,)], "the host's init SQL did not run"
        # The printed rollback runs the same image and puts the previous data back under the live name.
        assert managed_db.password not in result["rollback"]
        argv = shlex.split(result["rollback"], comments=True)
        assert argv[:2] == ["docker", "run"] and "PGPASSWORD" in argv
        subprocess.run(
            argv, check=True, capture_output=True, env=dict(os.environ, PGPASSWORD=managed_db.password)
        )
        assert rows(managed_db) == ["a", "b", "c"]
    finally:
        _drop_copies(managed_db)


@needs_image
def test_an_old_gzip_backup_restores_with_the_current_tools(managed_db, tmp_path):
    """A backup as taken before lz4 was the default (gzip, no compression field) still restores."""
    managed_db.query("CREATE TABLE t (v text)")
    managed_db.query("INSERT INTO t VALUES ('a'), ('b')")
    folder = tmp_path / "backup"
    section = backup_postgres.dump(
        connection=managed_db.params, container="", folder=str(folder), image=IMAGE, compression="gzip"
    )["postgres"]
    assert section["compression"] == "gzip"
    old = {key: value for key, value in section.items() if key != "compression"}
    managed_db.query("INSERT INTO t VALUES ('c')")
    try:
        result = backup_postgres.restore(
            connection=managed_db.params, container="", image=IMAGE, folder=str(folder), section=old,
            managed_roles=[managed_db.user],
        )  # fmt: skip
        assert rows(managed_db) == ["a", "b"] and result["problems"] == []
    finally:
        _drop_copies(managed_db)


@needs_image
def test_a_failing_network_pg_restore_replaces_nothing(managed_db, tmp_path):
    managed_db.query("CREATE TABLE t (v text)")
    managed_db.query("INSERT INTO t VALUES ('a')")
    folder = tmp_path / "backup"
    section = backup_postgres.dump(
        connection=managed_db.params, container="", folder=str(folder), image=IMAGE
    )["postgres"]
    managed_db.query("INSERT INTO t VALUES ('b')")
    dump_file = folder / section["dump_file"]
    dump_file.write_bytes(dump_file.read_bytes()[: dump_file.stat().st_size // 2])
    with pytest.raises(
        backup_postgres.PostgresBackupError, match=r"pg_restore of .* failed, nothing was replaced"
    ):
        backup_postgres.restore(
            connection=managed_db.params, container="", image=IMAGE, folder=str(folder), section=section,
            managed_roles=[managed_db.user],
        )  # fmt: skip
    assert rows(managed_db) == ["a", "b"]
    assert (
        admin(
            managed_db, "SELECT datname FROM pg_database WHERE datname = %s", (managed_db.name + "__restore",)
        )
        == []
    )


@needs_image
def test_a_non_superuser_master_login_backs_up_and_restores(managed_pg, tmp_path):
    """As on RDS: the login has CREATEDB and CREATEROLE, not SUPERUSER, and owns the database."""
    tag = f"master_{os.getpid()}_{os.urandom(3).hex()}"
    password = "master-secret-" + os.urandom(4).hex()
    su = managed_pg
    admin(su, f'CREATE ROLE "{tag}" LOGIN CREATEDB CREATEROLE PASSWORD %s', (password,))
    admin(su, f'CREATE DATABASE "{tag}_db" OWNER "{tag}"')
    db = TestDatabase(managed_pg.port, f"{tag}_db", user=tag, password=password)
    admin(su, f'CREATE ROLE "{tag}_app" LOGIN PASSWORD %s', ("app-secret",))
    admin(su, f'GRANT "{tag}_app" TO "{tag}" WITH ADMIN OPTION')
    db.query("CREATE TABLE t (v text)")
    db.query("INSERT INTO t VALUES ('a')")
    db.query(f'GRANT SELECT ON t TO "{tag}_app"')
    folder = tmp_path / "backup"
    try:
        section = backup_postgres.dump(connection=db.params, container="", folder=str(folder), image=IMAGE)[
            "postgres"
        ]
        assert section["role_passwords"] is False
        assert b"PASSWORD" not in (folder / section["globals_file"]).read_bytes()
        db.query("INSERT INTO t VALUES ('b')")

        result = backup_postgres.restore(
            connection=db.params, container="", image=IMAGE, folder=str(folder), section=section,
            managed_roles=[tag],
        )  # fmt: skip
        assert rows(db) == ["a"]
        # ALTER ROLE postgres WITH SUPERUSER ... is not allowed: skipped with a warning, not a failed swap.
        assert any(
            "role statement(s) of the backup skipped" in w and "postgres" in w for w in result["warnings"]
        )
        assert any("no role passwords" in w for w in result["warnings"])
        assert admin(
            su, "SELECT rolpassword IS NOT NULL FROM pg_authid WHERE rolname = %s", (f"{tag}_app",)
        ) == [(True,)], "an existing role lost its password"
    finally:
        for (name,) in admin(su, "SELECT datname FROM pg_database WHERE datname LIKE %s", (f"{tag}%",)):
            admin(su, f'DROP DATABASE "{name}" WITH (FORCE)')
        admin(su, f'DROP ROLE IF EXISTS "{tag}_app"')
        admin(su, f'DROP ROLE IF EXISTS "{tag}"')


@needs_image
def test_tools_newer_than_the_server_replace_nothing(fresh_db, tmp_path):
    """The stack's image (17) against an older server (the throwaway 15): pg_restore 17 would write
    settings 15 lacks (transaction_timeout) - refused before anything is created."""
    fresh_db.query("CREATE TABLE t (v text)")
    fresh_db.query("INSERT INTO t VALUES ('a')")
    folder = tmp_path / "backup"
    section = backup_postgres.dump(connection=fresh_db.params, container="", folder=str(folder), image=IMAGE)[
        "postgres"
    ]
    assert section["server_version"].startswith("15") and section["tables"] == {"public.t": 1}
    fresh_db.query("INSERT INTO t VALUES ('b')")
    with pytest.raises(
        backup_postgres.PostgresBackupError, match=r"nothing was replaced: the client tools of"
    ):
        backup_postgres.restore(
            connection=fresh_db.params, container="", image=IMAGE, folder=str(folder), section=section,
            managed_roles=[fresh_db.user],
        )  # fmt: skip
    assert rows(fresh_db) == ["a", "b"]
    assert [name for (name,) in admin(fresh_db, "SELECT datname FROM pg_database") if name.startswith(
        fresh_db.name + "_")] == []  # fmt: skip
