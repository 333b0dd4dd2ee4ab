"""PostgreSQL (the stack's image, user, hardening and WAL layout): a full data volume, a full WAL volume.

As in the stack (docker-compose.yml.j2), the WAL is in a folder on its own volume (POSTGRES_INITDB_WALDIR=
/var/lib/postgresql/wal/pg_wal, $PGDATA/pg_wal a link to it). Each volume is a small tmpfs, and PGDATA and
the WAL are folders on them, so that a ballast file can sit beside them: deleting the ballast frees space.

- The data volume full: the table cannot grow, the INSERT fails with PostgreSQL's own error, and the server
  and its reads keep going however much WAL is written afterwards (more than the whole WAL volume holds:
  checkpoints keep recycling it); once space is freed writes work again and a clean restart has every row.
  Before the WAL had its own volume this same fault stopped the server (PANIC) as soon as the WAL needed a
  new segment.
- The WAL volume full (what is left of the old failure, now only on the volume that holds nothing but WAL):
  PostgreSQL stops (PANIC) and cannot finish crash recovery while it is full; after space is freed a start
  recovers every committed row.
"""

from __future__ import annotations

import re
import time
import uuid

import pytest
from conftest import docker, logs, project_image, running, wait_until

DATA = "/var/lib/postgresql/data"
WAL = "/var/lib/postgresql/wal"
MIB = 1024 * 1024
ROWS = 1000
NO_SPACE = re.compile(r'ERROR:  could not extend file "base/\d+/\d+"[^:\n]*: No space left on device')
# Later attempts may hit the wall first in a temporary file the statement spills to (base/pgsql_tmp/...).
DATA_FULL = re.compile(
    r'ERROR:  could not (extend|write to) file "base/[^"]+"[^:\n]*: No space left on device'
)
WAL_PANIC = re.compile(r'PANIC:  could not write to file "pg_wal/xlogtemp\.\d+": No space left on device')


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


def start_postgres(lab, image: str, data_size: str, wal_size: str) -> tuple[str, str, str]:
    """(container, data holder, WAL holder) of a PostgreSQL on fresh volumes, with 1000 rows in `kept`."""
    data = lab.volume("pg-data", size=data_size)
    wal = lab.volume("pg-wal", size=wal_size)
    data_holder = lab.holder(image, data, service="postgres", user="postgres", role="data-holder")
    wal_holder = lab.holder(image, wal, service="postgres", user="postgres", role="wal-holder")
    secret = lab.tmp / "postgres_password"
    secret.write_text(uuid.uuid4().hex)
    secret.chmod(0o644)
    name = lab.run(
        "postgres", image, "postgres", user="postgres", service="postgres",
        tmpfs=("/tmp", "/var/run/postgresql"),
        mounts=(f"{data}:{DATA}", f"{wal}:{WAL}", f"{secret}:/run/secrets/postgres_password:ro"),
        env={
            "POSTGRES_USER": "cmx",
            "POSTGRES_DB": "cmx",
            "POSTGRES_PASSWORD_FILE": "/run/secrets/postgres_password",
            "POSTGRES_INITDB_ARGS": "--data-checksums --auth-host=scram-sha-256 --auth-local=trust",
            "POSTGRES_INITDB_WALDIR": f"{WAL}/pg_wal",
            "PGDATA": f"{DATA}/pgdata",
        },
    )  # fmt: skip
    wait_until(lambda: ready(name) and psql(name, "SELECT 1") == "1", 60, "PostgreSQL ready")
    # The stack's layout: the WAL is on the WAL volume, the data directory links to it.
    link = docker("exec", data_holder, "readlink", "/v/pgdata/pg_wal").stdout.strip()
    assert link == f"{WAL}/pg_wal", link
    psql(name, "CREATE TABLE kept (id int PRIMARY KEY, v text)")
    psql(name, f"INSERT INTO kept SELECT g, md5(g::text) FROM generate_series(1, {ROWS}) g")
    psql(name, "CREATE TABLE filler (v text)")
    return name, data_holder, wal_holder


def kept_rows(container: str, where: str = "true") -> str:
    """Count, sum of ids and a digest of the values of the rows of `kept` that match `where`."""
    digest = "count(*) || ' ' || sum(id) || ' ' || md5(string_agg(v, ',' ORDER BY id))"
    return psql(container, f"SELECT {digest} FROM kept WHERE {where}")


def free_bytes(holder: str) -> int:
    return int(docker("exec", holder, "df", "-B1", "--output=avail", "/v").stdout.split()[-1])


def leave_free(holder: str, wanted: int) -> None:
    """Fill the holder's volume with a ballast file (/v/ballast) until `wanted` bytes are left."""
    free = free_bytes(holder)
    assert free > wanted, f"only {free} bytes free on the volume"
    docker("exec", holder, "fallocate", "-l", str(free - wanted), "/v/ballast")


def wal_lsn(container: str) -> str:
    return psql(container, "SELECT pg_current_wal_lsn()")


# 2 kB of incompressible-enough text per row (md5s): the table outgrows the free space in a few hundred rows.
FILL = (
    "INSERT INTO filler SELECT (SELECT string_agg(md5(g::text || '-' || r::text), '')"
    " FROM generate_series(1, 64) r) FROM generate_series(1, 100000) g"
)
# WAL and nothing else: a non-transactional logical message of `n` MiB touches no data file.
WAL_ONLY = "SELECT pg_logical_emit_message(false, 'cmx-fault', repeat('x', {n} * 1024 * 1024))"


def test_a_full_data_volume_fails_writes_and_keeps_the_server_and_its_reads(lab, postgres_image):
    name, data_holder, _ = start_postgres(lab, postgres_image, data_size="96m", wal_size="256m")
    expected = kept_rows(name)
    first_lsn = wal_lsn(name)
    leave_free(data_holder, 6 * MIB)
    started = time.time()
    error = psql(name, FILL, check=False)
    assert NO_SPACE.search(error), error
    assert "HINT:  Check free disk space." in error
    print(error)
    # However much WAL is written now, more than the WAL volume holds: failed INSERTs, WAL-only records, new
    # segments, checkpoints (which recycle the WAL; they only write data pages that already have their space).
    checkpoints = []
    for _ in range(12):
        error = psql(name, FILL, check=False)
        assert DATA_FULL.search(error), error
        psql(name, WAL_ONLY.format(n=32))
        psql(name, "SELECT pg_switch_wal()")
        checkpoints.append(psql(name, "CHECKPOINT", check=False))
        assert kept_rows(name) == expected
    written = int(psql(name, f"SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '{first_lsn}')"))
    print(f"WAL written with the data volume full: {written // MIB} MiB; CHECKPOINT: {set(checkpoints)}")
    assert written > 256 * MIB
    assert free_bytes(data_holder) < 6 * MIB
    # The server is still up and reads work; nothing crashed.
    assert running(name)
    assert kept_rows(name) == expected
    assert psql(name, "SELECT count(*) FROM filler") == "0"
    text = logs(name, since=started)
    assert "PANIC" not in text and "terminated by signal" not in text, text

    docker("exec", data_holder, "rm", "/v/ballast")
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


def test_a_full_wal_volume_stops_the_server_until_space_is_freed(lab, postgres_image):
    name, _, wal_holder = start_postgres(lab, postgres_image, data_size="96m", wal_size="96m")
    psql(name, "INSERT INTO kept SELECT g, 'before the fill' FROM generate_series(1001, 1100) g")
    expected = kept_rows(name)
    leave_free(wal_holder, 6 * MIB)
    started = time.time()
    # WAL-only records until the WAL needs a segment that does not fit: PostgreSQL stops.
    for _ in range(10):
        psql(name, WAL_ONLY.format(n=4), check=False)
        if not running(name) or WAL_PANIC.search(logs(name, since=started)):
            break
    psql(name, "INSERT INTO kept VALUES (0, 'maybe')", check=False)  # not acknowledged: not checked
    wait_until(lambda: not running(name), 30, "PostgreSQL stopping after the WAL could not grow")
    text = logs(name, since=started)
    panic = WAL_PANIC.search(text)
    assert panic, text
    # PostgreSQL restarts itself, but crash recovery cannot write the WAL either: the server shuts down.
    assert re.search(r'FATAL:  could not write to file "pg_wal/xlogtemp\.\d+": No space left on device', text)
    assert "shutting down due to startup process failure" in text, text
    print(panic.group(0), *[line for line in text.splitlines() if "FATAL" in line], sep="\n")

    # Until space is freed it cannot start (the stack's restart policy would keep trying); then it recovers.
    docker("exec", wal_holder, "rm", "/v/ballast")
    started = time.time()
    docker("start", name)
    wait_until(lambda: ready(name) and psql(name, "SELECT 1") == "1", 60, "PostgreSQL recovering")
    text = logs(name, since=started)
    assert "automatic recovery in progress" in text and "redo done" in text, text
    # Every committed row; the unacknowledged row 0 may or may not be there.
    assert kept_rows(name, "id > 0") == expected
