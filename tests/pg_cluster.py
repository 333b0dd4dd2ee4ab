"""The one throwaway PostgreSQL 15 cluster of the test suite (fixtures imported by tests/conftest.py).

One cluster per test session, listening on 127.0.0.1 only, on a free port, in a temporary directory:
``fresh_db`` gives a test its own empty database, ``pg`` a login role with a password and its database.
Tests are skipped when the Debian postgresql-15 binaries are missing. initdb refuses to run as root, so
as root the server runs as the ``postgres`` OS user (created by the postgresql package).
"""

from __future__ import annotations

import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import psycopg2
import pytest

POSTGRES_BINDIR = Path(os.environ.get("CMX_TEST_PG_BINDIR", "/usr/lib/postgresql/15/bin"))
SUPERUSER = "postgres"
SUPERUSER_PASSWORD = "cmx-test-secret-7f3a"  # throwaway; the module tests assert it never shows in output
# Extensions the stack's init SQL creates; created here too so tests see the same database.
STACK_EXTENSIONS = ("uuid-ossp", "pgcrypto")
# The login of the ``pg`` fixture (probes, health server, smoke tests).
LOGIN_USER, LOGIN_PASSWORD, LOGIN_DB = "cmx_user", "cmx-test-pg-pass", "cmx_db"


def free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class TestDatabase:
    __test__ = False  # not a test class
    port: int
    name: str
    host: str = "127.0.0.1"
    user: str = SUPERUSER
    password: str = SUPERUSER_PASSWORD

    @property
    def params(self) -> dict:
        """Connection parameters as cmx_migrate's ``connection`` option takes them."""
        return {
            "host": self.host,
            "port": self.port,
            "user": self.user,
            "password": self.password,
            "dbname": self.name,
        }

    @property
    def url(self) -> str:
        return f"postgresql://{self.user}:{self.password}@{self.host}:{self.port}/{self.name}?sslmode=disable"

    def connect(self):
        return psycopg2.connect(**self.params)

    def query(self, sql: str, args=None) -> list[tuple]:
        connection = self.connect()
        try:
            with connection, connection.cursor() as cursor:
                cursor.execute(sql, args)
                return cursor.fetchall() if cursor.description else []
        finally:
            connection.close()


class PostgresCluster:
    def __init__(self, root: Path, run_as: str | None):
        self.root = root
        self.run_as = run_as
        self.port = free_loopback_port()
        self.data_dir = root / "data"
        self.log_file = root / "log" / "server.log"
        self._names = itertools.count(1)

    def _run(self, *args: str):
        subprocess.run(args, user=self.run_as, check=True, capture_output=True, text=True, timeout=120)

    def start(self):
        for path in (self.data_dir, self.root / "sockets", self.root / "log"):
            path.mkdir()
        password_file = self.root / "pwfile"
        password_file.write_text(SUPERUSER_PASSWORD + "\n")
        if self.run_as:
            account = pwd.getpwnam(self.run_as)
            for path in (self.data_dir, self.root / "sockets", self.root / "log", password_file):
                os.chown(path, account.pw_uid, account.pw_gid)
        self._run(
            str(POSTGRES_BINDIR / "initdb"),
            "-D",
            str(self.data_dir),
            "-U",
            SUPERUSER,
            f"--pwfile={password_file}",
            "--auth-host=scram-sha-256",
            "--auth-local=trust",
            "-E",
            "UTF8",
            "--locale=C",
            "-N",
        )
        options = (
            f"-c listen_addresses=127.0.0.1 -c port={self.port}"
            f" -c unix_socket_directories={self.root / 'sockets'}"
            " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        self._run(
            str(POSTGRES_BINDIR / "pg_ctl"),
            "-D",
            str(self.data_dir),
            "-l",
            str(self.log_file),
            "-o",
            options,
            "-w",
            "-t",
            "60",
            "start",
        )

    def stop(self):
        if (self.data_dir / "postmaster.pid").exists():
            self._run(
                str(POSTGRES_BINDIR / "pg_ctl"), "-D", str(self.data_dir), "-m", "immediate", "-w", "stop"
            )

    def create_database(self) -> TestDatabase:
        database = TestDatabase(self.port, f"cmx_test_{next(self._names)}")
        admin = TestDatabase(self.port, "postgres")
        connection = admin.connect()
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute(f'CREATE DATABASE "{database.name}"')
        connection.close()
        for extension in STACK_EXTENSIONS:
            database.query(f'CREATE EXTENSION IF NOT EXISTS "{extension}"')
        return database

    def create_login(self, user: str, password: str, dbname: str) -> dict:
        """A role that logs in with `password` (SCRAM) and owns `dbname`; its connection settings."""
        admin = TestDatabase(self.port, "postgres").connect()
        admin.autocommit = True
        with admin.cursor() as cursor:
            cursor.execute(f'CREATE ROLE "{user}" LOGIN PASSWORD %s', (password,))
            cursor.execute(f'CREATE DATABASE "{dbname}" OWNER "{user}"')
        admin.close()
        return {
            "host": "127.0.0.1",
            "port": self.port,
            "user": user,
            "password": password,
            "dbname": dbname,
            "url": f"postgresql://{user}:{password}@127.0.0.1:{self.port}/{dbname}",
        }


def _server_account() -> str | None:
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        pytest.skip("running as root and there is no 'postgres' OS user for initdb")
    return "postgres"


@pytest.fixture(scope="session")
def throwaway_pg_cluster():
    if not (POSTGRES_BINDIR / "initdb").exists():
        pytest.skip(
            f"PostgreSQL 15 server binaries not found in {POSTGRES_BINDIR} (apt-get install postgresql-15)"
        )
    root = Path(tempfile.mkdtemp(prefix="cmx-pgtest-"))
    root.chmod(0o755)  # the server account must reach its data directory
    cluster = PostgresCluster(root, _server_account())
    try:
        cluster.start()
    except subprocess.CalledProcessError as exc:
        log = cluster.log_file.read_text() if cluster.log_file.exists() else ""
        shutil.rmtree(root, ignore_errors=True)
        pytest.fail(f"could not start PostgreSQL: {exc.stderr}\n{log}")
    yield cluster
    cluster.stop()
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def admin_cursor(throwaway_pg_cluster):
    """An autocommit cursor of the cluster's superuser, connected to the postgres database."""
    connection = psycopg2.connect(
        host="127.0.0.1",
        port=throwaway_pg_cluster.port,
        user=SUPERUSER,
        password=SUPERUSER_PASSWORD,
        dbname="postgres",
    )
    connection.autocommit = True
    yield connection.cursor()
    connection.close()


@pytest.fixture
def fresh_db(throwaway_pg_cluster) -> TestDatabase:
    """A fresh, empty database (with the stack's extensions) for one test."""
    return throwaway_pg_cluster.create_database()


@pytest.fixture(scope="session")
def pg(throwaway_pg_cluster) -> dict:
    """host, port, user, password, dbname and url of a password login with its own database."""
    return throwaway_pg_cluster.create_login(LOGIN_USER, LOGIN_PASSWORD, LOGIN_DB)
