"""The upgrade path against the real engine and real servers: a PostgreSQL 15 cluster (built from Debian
bookworm) with rows in two databases and a role is moved to 17; every row and the role's password are there,
the old cluster is kept and a rollback brings it back; a downgrade and a second upgrade over a kept copy are
refused with nothing changed."""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from pathlib import Path

import pytest
from ansible_collections.cleanmatex.infra.plugins.module_utils import pg_upgrade

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(
    subprocess.run(["docker", "info"], capture_output=True).returncode != 0, reason="needs a Docker engine"
)
INITDB = "--data-checksums --auth-host=scram-sha-256 --auth-local=trust"


def _docker(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=300)
    if check:
        assert done.returncode == 0, done.stderr
    return done


def _newest(major: int) -> str | None:
    listed = _docker("images", "cmx/postgres", "--format", "{{json .}}").stdout.splitlines()
    tags = [json.loads(line)["Tag"] for line in listed]
    return next((f"cmx/postgres:{tag}" for tag in tags if tag.startswith(f"{major}-")), None)


@pytest.fixture(scope="module")
def images() -> dict[int, str]:
    """The images role's PostgreSQL 15 and 17 images (built here when missing: the ci inventory builds)."""
    found = {}
    for major in (15, 17):
        done = subprocess.run(
            [REPO / ".venv" / "bin" / "ansible-playbook", "-i", "inventories/ci", "playbooks/site.yml",
             "--tags", "images", "-e", f"cmx_postgres_major={major}", "-e", "cmx_image_source=build",
             "-e", "cmx_redis_commander_enabled=false"],
            capture_output=True, text=True, timeout=900, cwd=REPO,
            env={**os.environ, "ANSIBLE_VAULT_PASSWORD_FILE": str(REPO / "inventories/ci/.vault-pass-ci")},
        )  # fmt: skip
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
        found[major] = _newest(major)
        assert found[major], f"no cmx/postgres:{major}-* image after the images role"
    return found


@pytest.fixture
def volumes():
    project = f"cmxtest-up-{uuid.uuid4().hex[:8]}"
    names = [f"{project}_postgres_data", f"{project}_postgres_wal"]
    yield names
    for name in _docker("volume", "ls", "-q", "--filter", f"name={project}").stdout.split():
        _docker("rm", "-f", *_docker("ps", "-aq", "--filter", f"volume={name}").stdout.split(), check=False)
        _docker("volume", "rm", "-f", name, check=False)


def _start(name: str, image: str, data: str, wal: str, *, password: str = "s3cret-Pw") -> None:
    """A stack-shaped server (the stack's initdb settings, WAL on its own volume), socket only."""
    for volume in (data, wal):
        _docker("volume", "create", volume)
    _docker("run", "--rm", "--user", "0", "--entrypoint", "sh",
            "--mount", f"type=volume,source={wal},target=/w",
            image, "-c", "chown postgres:postgres /w && chmod 700 /w")  # fmt: skip
    _docker(
        "run", "-d", "--name", name, "--network", "none", "--user", "postgres",
        "--mount", f"type=volume,source={data},target=/var/lib/postgresql/data",
        "--mount", f"type=volume,source={wal},target=/var/lib/postgresql/wal",
        "-e", "POSTGRES_USER=cmx", "-e", f"POSTGRES_PASSWORD={password}", "-e", "POSTGRES_DB=cmx",
        "-e", f"POSTGRES_INITDB_ARGS={INITDB}", "-e", "POSTGRES_INITDB_WALDIR=/var/lib/postgresql/wal/pg_wal",
        image, "postgres", "-c", "listen_addresses=localhost",
    )  # fmt: skip
    server = pg_upgrade.Server(pg_upgrade.Docker("docker", 120), name, image, "postgres", (data, wal), "cmx")
    server.wait_ready(120)


def _psql(name: str, sql: str, database: str = "cmx", user: str = "cmx", tcp_password: str = "") -> str:
    env = ["-e", f"PGPASSWORD={tcp_password}"] if tcp_password else []
    host = ["-h", "localhost"] if tcp_password else []
    done = _docker("exec", *env, name, "psql", "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", *host, "-U", user,
                   "-d", database, "-c", sql)  # fmt: skip
    return done.stdout.strip()


def _params(volumes, images, major, state="upgrade", tmp_path=None) -> dict:
    return {
        "state": state, "volume": volumes[0], "wal_volume": volumes[1], "old_image": images[15],
        "new_image": images[major], "major": major, "superuser": "cmx", "initdb_args": INITDB,
        "backup_dir": str(tmp_path or "/tmp"), "timeout": 300, "docker": "docker",
    }  # fmt: skip


def _major(volume: str, image: str) -> str | None:
    return pg_upgrade.volume_major(pg_upgrade.Docker("docker", 120), volume, image)


SEED = """
CREATE TABLE orders (id bigint PRIMARY KEY, customer text, total numeric(10,2), placed timestamptz,
                     tags text[]);
INSERT INTO orders SELECT g, 'customer ' || g, g * 1.25, '2026-01-01'::timestamptz + g * interval '1 minute',
       ARRAY['a' || g % 7, 'b'] FROM generate_series(1, 20000) g;
CREATE ROLE app_user LOGIN PASSWORD 'app-Pw-1';
GRANT SELECT ON orders TO app_user;
"""


def test_15_to_17_moves_every_row_keeps_the_old_cluster_and_rolls_back(volumes, images, tmp_path):
    data, wal = volumes
    name = f"{data}-seed"
    _start(name, images[15], data, wal)
    _psql(name, SEED)
    _psql(name, "CREATE DATABASE reports")
    _psql(name, "CREATE TABLE r (k text); INSERT INTO r SELECT md5(g::text) FROM generate_series(1, 500) g",
          database="reports")  # fmt: skip
    checksum = _psql(name, "SELECT md5(string_agg(o::text, '' ORDER BY id)) FROM orders o")
    # The stack's container is running: the upgrade stops it (its name is in the result).
    result = pg_upgrade.task_result(_params(volumes, images, 17, tmp_path=tmp_path), check_mode=False)
    assert result.get("changed") and not result.get("failed"), result
    assert result["found"] == "15" and result["stopped"] == [name]
    assert result["kept"] == [f"{data}-pg15", f"{wal}-pg15"]
    assert result["rows"] >= 20500 and "every row count and checksum equal" in result["msg"]
    assert Path(result["dump"]).stat().st_mode & 0o777 == 0o600
    assert _major(data, images[17]) == "17" and _major(f"{data}-pg15", images[17]) == "15"
    _docker("rm", "-f", name)

    # PostgreSQL 17 on the upgraded volumes, as the stack runs it: the data, the role and its password.
    after = f"{data}-17"
    _docker(
        "run", "-d", "--name", after, "--network", "none", "--user", "postgres",
        "--mount", f"type=volume,source={data},target=/var/lib/postgresql/data",
        "--mount", f"type=volume,source={wal},target=/var/lib/postgresql/wal",
        images[17], "postgres", "-c", "listen_addresses=localhost",
    )  # fmt: skip
    pg_upgrade.Server(pg_upgrade.Docker("docker", 120), after, images[17], "", (data, wal), "cmx").wait_ready(
        120
    )
    assert _psql(after, "SHOW server_version_num")[:2] == "17"
    assert _psql(after, "SELECT md5(string_agg(o::text, '' ORDER BY id)) FROM orders o") == checksum
    assert _psql(after, "SELECT count(*) FROM r", database="reports") == "500"
    assert _psql(after, "SELECT count(*) FROM orders", user="app_user", tcp_password="app-Pw-1") == "20000"
    assert _psql(after, "SHOW data_checksums") == "on"
    _docker("rm", "-f", after)

    # Run again: nothing to do. A downgrade is refused and changes nothing.
    again = pg_upgrade.task_result(_params(volumes, images, 17, tmp_path=tmp_path), check_mode=False)
    assert again == {**again, "changed": False, "found": "17"}
    down = pg_upgrade.task_result(_params(volumes, images, 15, tmp_path=tmp_path), check_mode=False)
    assert (
        down["failed"]
        and "newer than cmx_postgres_major 15" in down["msg"]
        and "Nothing was changed" in down["msg"]
    )
    assert _major(data, images[17]) == "17"

    # Rollback (with cmx_postgres_major back to 15): the 15 cluster and its rows are back.
    back = pg_upgrade.task_result(_params(volumes, images, 15, state="rollback"), check_mode=False)
    assert back.get("changed") and back["found"] == "15", back
    assert _major(data, images[15]) == "15"
    restarted = f"{data}-15"
    _docker(
        "run", "-d", "--name", restarted, "--network", "none", "--user", "postgres",
        "--mount", f"type=volume,source={data},target=/var/lib/postgresql/data",
        "--mount", f"type=volume,source={wal},target=/var/lib/postgresql/wal",
        images[15], "postgres",
    )  # fmt: skip
    pg_upgrade.Server(
        pg_upgrade.Docker("docker", 120), restarted, images[15], "", (data, wal), "cmx"
    ).wait_ready(120)
    assert _psql(restarted, "SELECT md5(string_agg(o::text, '' ORDER BY id)) FROM orders o") == checksum
    _docker("rm", "-f", restarted)

    # With the kept copy still there, a new upgrade is refused before anything is touched.
    refused = pg_upgrade.task_result(_params(volumes, images, 17, tmp_path=tmp_path), check_mode=False)
    assert refused["failed"] and "the kept copy of an earlier upgrade" in refused["msg"], refused
    assert "Nothing was changed" in refused["msg"] and _major(data, images[15]) == "15"
