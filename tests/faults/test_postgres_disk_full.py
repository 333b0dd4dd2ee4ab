"""PostgreSQL (the stack's image, user and hardening) on a 96 MiB volume that fills up.

PGDATA is a folder on the volume (the stack uses the volume's root) so that a ballast file can sit beside it:
deleting the ballast is how space is freed. Two outcomes, both real:

- the table cannot grow but the WAL still has room in its current segment: the INSERT fails with PostgreSQL's
  own error, reads and the server keep going, and once space is freed writes work again;
- the WAL needs a new segment and there is no room for it: PostgreSQL stops (PANIC), cannot finish crash
  recovery while the disk is full, and after space is freed a start recovers every committed row.
"""

from __future__ import annotations

import re
import time
import uuid

import pytest
from conftest import docker, logs, project_image, running, wait_until

DATA = "/var/lib/postgresql/data"
WAL_SEGMENT = 16 * 1024 * 1024
ROWS = 1000
NO_SPACE = re.compile(r'ERROR:  could not extend file "base/\d+/\d+"[^:\n]*: No space left on device')


@pytest.fixture
def postgres_image():
    return project_image("cmx/postgres")


def psql(container: str, sql: str, check: bool = True) -> str:
    """Run `sql` as the superuser over the local socket (trust, as the stack's initdb sets it)."""
    done = docker(
        "exec", container, "psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-U", "cmx", "-d", "cmx",
        "-c", sql, check=False,
    )  # fmt: skip
    if check:
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()
    return done.stdout + done.stderr


def ready(container: str) -> bool:
    return (
        docker("exec", container, "pg_isready", "-q", "-h", "127.0.0.1", "-U", "cmx", check=False).returncode
        == 0
    )


def start_postgres(lab, image: str, size: str = "96m") -> tuple[str, str]:
    """(container, holder) of a PostgreSQL on a fresh volume of `size`, with 1000 committed rows in `kept`."""
    volume = lab.volume("pg-data", size=size)
    holder = lab.holder(image, volume, service="postgres", user="postgres")
    secret = lab.tmp / "postgres_password"
    secret.write_text(uuid.uuid4().hex)
    secret.chmod(0o644)
    name = lab.run(
        "postgres", image, "postgres", user="postgres", service="postgres",
        tmpfs=("/tmp", "/var/run/postgresql"),
        mounts=(f"{volume}:{DATA}", f"{secret}:/run/secrets/postgres_password:ro"),
        env={
            "POSTGRES_USER": "cmx",
            "POSTGRES_DB": "cmx",
            "POSTGRES_PASSWORD_FILE": "/run/secrets/postgres_password",
            "POSTGRES_INITDB_ARGS": "--data-checksums --auth-host=scram-sha-256 --auth-local=trust",
            "PGDATA": f"{DATA}/pgdata",
        },
    )  # fmt: skip
    wait_until(lambda: ready(name) and psql(name, "SELECT 1") == "1", 60, "PostgreSQL ready")
    psql(name, "CREATE TABLE kept (id int PRIMARY KEY, v text)")
    psql(name, f"INSERT INTO kept SELECT g, md5(g::text) FROM generate_series(1, {ROWS}) g")
    psql(name, "CREATE TABLE filler (v text)")
    return name, holder


def kept_rows(container: str, where: str = "true") -> str:
    """Count, sum of ids and a digest of the values of the rows of `kept` that match `where`."""
    digest = "count(*) || ' ' || sum(id) || ' ' || md5(string_agg(v, ',' ORDER BY id))"
    return psql(container, f"SELECT {digest} FROM kept WHERE {where}")


def leave_free(holder: str, free_bytes: int) -> None:
    """Fill the volume with a ballast file (/v/ballast) until `free_bytes` are left."""
    free = int(docker("exec", holder, "df", "-B1", "--output=avail", "/v").stdout.split()[-1])
    assert free > free_bytes, f"only {free} bytes free on the volume"
    docker("exec", holder, "fallocate", "-l", str(free - free_bytes), "/v/ballast")


# 2 kB of incompressible-enough text per row (md5s): the table outgrows the free space in a few hundred rows.
FILL = (
    "INSERT INTO filler SELECT (SELECT string_agg(md5(g::text || '-' || r::text), '')"
    " FROM generate_series(1, 64) r) FROM generate_series(1, 100000) g"
)


def test_a_full_volume_fails_the_insert_and_keeps_the_server(lab, postgres_image):
    name, holder = start_postgres(lab, postgres_image)
    expected = kept_rows(name)
    # A fresh WAL segment (16 MiB of room), 6 MiB free on the volume: the table, not the WAL, hits the wall.
    psql(name, "SELECT pg_switch_wal(); CHECKPOINT")
    leave_free(holder, 6 * 1024 * 1024)
    started = time.time()
    error = psql(name, FILL, check=False)
    assert NO_SPACE.search(error), error
    assert "HINT:  Check free disk space." in error
    # The server is still up and reads work; nothing crashed.
    assert kept_rows(name) == expected
    assert psql(name, "SELECT count(*) FROM filler") == "0"
    text = logs(name, since=started)
    assert "PANIC" not in text and "terminated by signal" not in text, text
    print(error)

    docker("exec", holder, "rm", "/v/ballast")
    psql(name, f"INSERT INTO kept SELECT g, 'after' FROM generate_series({ROWS + 1}, {ROWS + 100}) g")
    docker("stop", name)
    started = time.time()
    docker("start", name)
    wait_until(
        lambda: ready(name) and psql(name, "SELECT 1") == "1", 60, "PostgreSQL ready after the restart"
    )
    assert "automatic recovery" not in logs(name, since=started)
    assert psql(name, f"SELECT count(*) FROM kept WHERE id > {ROWS}") == "100"
    assert kept_rows(name, f"id <= {ROWS}") == expected


def test_a_wal_that_cannot_grow_stops_the_server_until_space_is_freed(lab, postgres_image):
    name, holder = start_postgres(lab, postgres_image)
    # Committed before the disk fills, in the current WAL segment only.
    psql(name, "INSERT INTO kept SELECT g, 'before the fill' FROM generate_series(1001, 1100) g")
    expected = kept_rows(name)
    leave_free(holder, 6 * 1024 * 1024)
    started = time.time()
    error = psql(name, FILL, check=False)
    assert NO_SPACE.search(error), error
    # The WAL of the failed INSERT moves on to segments that do not fit any more: PostgreSQL stops.
    psql(name, "SELECT pg_switch_wal()", check=False)
    psql(name, "INSERT INTO kept VALUES (0, 'maybe')", check=False)  # not acknowledged: not checked
    wait_until(lambda: not running(name), 30, "PostgreSQL stopping after the WAL could not grow")
    text = logs(name, since=started)
    panic = re.search(
        r'PANIC:  could not write to file "pg_wal/xlogtemp\.\d+": No space left on device', text
    )
    assert panic, text
    # PostgreSQL restarts itself, but crash recovery cannot write the WAL either: the server shuts down.
    assert re.search(r'FATAL:  could not write to file "pg_wal/xlogtemp\.\d+": No space left on device', text)
    assert "shutting down due to startup process failure" in text, text
    print(panic.group(0), *[line for line in text.splitlines() if "FATAL" in line], sep="\n")

    # Until space is freed it cannot start (the stack's restart policy would keep trying); then it recovers.
    docker("exec", holder, "rm", "/v/ballast")
    started = time.time()
    docker("start", name)
    wait_until(lambda: ready(name) and psql(name, "SELECT 1") == "1", 60, "PostgreSQL recovering")
    text = logs(name, since=started)
    assert "automatic recovery in progress" in text and "redo done" in text, text
    # Every committed row; the unacknowledged row 0 may or may not be there.
    assert kept_rows(name, "id > 0") == expected
