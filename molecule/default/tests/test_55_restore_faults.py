"""Restore's failure paths against the real containers (issue 16, items 3, 4, 5 and 12).

Each test injects a fault into a real restore of the ci stack and checks the promise:
* pg_restore failing: "nothing was replaced" - the live rows, the roles, Redis are untouched;
* Redis failing after PostgreSQL was swapped (the playbook's rescue): the message says plainly what was
  restored, Redis kept its previous data, and the printed rollback command brings the old database back;
* clients writing while Redis comes back do not fail the restore (the check happens inside the loader);
* a loader that outlives its timeout is stopped (or killed) and gone before Redis starts again, and the
  previous data is kept.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import threading
import time
import uuid
from pathlib import Path

import psycopg2
import pytest
import redis
from ansible_collections.cleanmatex.infra.plugins.module_utils import backup, backup_redis
from conftest import INVENTORY, PROJECT_DIR, all_healthy, container, docker, wait_until
from conftest import pg_connect as pg
from conftest import redis_client as rds
from redis.backoff import NoBackoff
from redis.retry import Retry

ROOT = Path(__file__).resolve().parents[3]
BACKUP_DIR = PROJECT_DIR / "backups"
MARK = uuid.uuid4().hex[:10]


def playbook(path: str, *extra: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, ANSIBLE_FORCE_COLOR="0", ANSIBLE_NOCOLOR="1", CMX_PROJECT_DIR=str(PROJECT_DIR))
    vault_pass = INVENTORY / ".vault-pass-ci"
    if vault_pass.is_file():
        env.setdefault("ANSIBLE_VAULT_PASSWORD_FILE", str(vault_pass))
    return subprocess.run(
        ["ansible-playbook", "-i", str(INVENTORY), str(ROOT / path), *extra],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )


def flat(run: subprocess.CompletedProcess) -> str:
    return " ".join((run.stdout + run.stderr).split())  # the yaml callback folds long lines


def take_backup(tmp_path: Path) -> Path:
    """A fresh backup of the ci stack, copied to a folder the test may tamper with."""
    run = playbook("playbooks/backup.yml")
    assert run.returncode == 0, run.stdout[-4000:]
    newest = sorted(p for p in BACKUP_DIR.iterdir() if (p / "manifest.json").is_file())[-1]
    copy = tmp_path / "backup"
    shutil.copytree(newest, copy)
    return copy


def tamper(folder: Path, relpath: str, data: bytes) -> None:
    """Replace a file and its manifest entry: the checksums pass, the content is broken."""
    (folder / relpath).write_bytes(data)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["files"][relpath] = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    (folder / "manifest.json").write_text(json.dumps(manifest))


def query(inv, sql: str, args=None, dbname: str | None = None) -> list[tuple]:
    conn = pg(inv) if dbname is None else pg_db(inv, dbname)
    try:
        with conn.cursor() as cur:
            cur.execute(sql, args)
            return cur.fetchall() if cur.description else []
    finally:
        conn.close()


def pg_db(inv, dbname: str):
    conn = psycopg2.connect(
        host="127.0.0.1",
        port=inv["cmx_postgres_port"],
        user=inv["cmx_postgres_user"],
        password=inv["cmx_postgres_password"],
        dbname=dbname,
        sslmode="disable",
        connect_timeout=5,
    )
    conn.autocommit = True
    return conn


def databases(inv) -> list[str]:
    return [row[0] for row in query(inv, "SELECT datname FROM pg_database ORDER BY 1")]


def loader_containers() -> list[str]:
    out = docker("ps", "-a", "--filter", f"name=^/{container('redis')}-restore$", "--format", "{{.Names}}")
    return out.stdout.split()


@pytest.fixture(scope="module", autouse=True)
def canary_table(inv):
    wait_until(all_healthy, 180, "the stack to be healthy before the restore fault tests")
    query(inv, "CREATE TABLE IF NOT EXISTS public.restore_canary (mark text)")
    yield
    query(inv, "DROP TABLE IF EXISTS public.restore_canary")
    for name in databases(inv):
        if name.endswith("_unwanted_restore"):
            query(inv, f'DROP DATABASE "{name}" WITH (FORCE)', dbname="postgres")
    for key in rds(inv).scan_iter(match=f"fault:{MARK}:*"):
        rds(inv).delete(key)


def test_pg_restore_failing_replaces_nothing(inv, tmp_path):
    folder = take_backup(tmp_path)
    manifest = json.loads((folder / "manifest.json").read_text())
    dump = manifest["postgres"]["dump_file"]
    tamper(folder, dump, (folder / dump).read_bytes()[:2000])
    role = f"fault_role_{MARK}"
    globals_sql = (
        (folder / "postgres/globals.sql")
        .read_text()
        .replace(
            "--\n-- Roles\n--\n", f"--\n-- Roles\n--\n\nCREATE ROLE {role};\nALTER ROLE {role} WITH LOGIN;\n"
        )
    )
    assert role in globals_sql
    tamper(folder, "postgres/globals.sql", globals_sql.encode())
    query(inv, "INSERT INTO public.restore_canary VALUES (%s)", (f"after-backup-{MARK}",))
    rds(inv).set(f"fault:{MARK}:redis", "kept")
    before = set(BACKUP_DIR.iterdir())

    run = playbook("playbooks/restore.yml", "-e", f"cmx_restore_from={folder}")

    output = flat(run)
    assert run.returncode != 0
    assert len(set(BACKUP_DIR.iterdir()) - before) == 1, "no backup of the current data was taken first"
    assert f"pg_restore of {dump} failed, nothing was replaced" in output, output[-4000:]
    assert "Nothing was replaced: the database, the roles, Redis and the bucket are as they were" in output
    canary = "SELECT count(*) FROM public.restore_canary WHERE mark = %s"
    assert query(inv, canary, (f"after-backup-{MARK}",)) == [(1,)]
    assert query(inv, "SELECT count(*) FROM pg_roles WHERE rolname = %s", (role,)) == [(0,)]
    assert not [name for name in databases(inv) if name.endswith("__restore")]
    assert rds(inv).get(f"fault:{MARK}:redis") == b"kept"


def test_redis_failing_after_the_swap_reports_a_partial_restore(inv, tmp_path):
    """The playbook's rescue: PostgreSQL swapped, Redis refused, objects not reached - all said plainly."""
    folder = take_backup(tmp_path)
    rdb = folder / "redis/dump.rdb"
    tamper(folder, "redis/dump.rdb", b"REDIS0011" + os.urandom(rdb.stat().st_size))
    query(inv, "INSERT INTO public.restore_canary VALUES (%s)", (f"today-{MARK}",))
    rds(inv).set(f"fault:{MARK}:redis", "kept")
    before = set(p.name for p in BACKUP_DIR.iterdir())

    run = playbook("playbooks/restore.yml", "-e", f"cmx_restore_from={folder}")

    output = flat(run)
    assert run.returncode != 0
    assert "failed at 'Restore Redis" in output, output[-4000:]
    assert "loading the Redis snapshot failed, previous data kept" in output
    kept = r"PARTIAL RESTORE - PostgreSQL: restored, the previous database is kept as (\S+)\."
    previous = re.search(kept, output)
    assert previous, output[-4000:]
    assert "Redis: see the error above. Objects: not touched." in output
    restore = "bin/cmx restore -i inventories/ci -e cmx_restore_from="  # as the user types it
    assert f"To finish, run the restore again: {restore}{folder}" in output
    taken_first = sorted(set(p.name for p in BACKUP_DIR.iterdir()) - before)
    assert len(taken_first) == 1
    assert f"To roll back everything: {restore}{taken_first[0]}" in output

    # Redis: the previous data, served again; no loader left.
    assert rds(inv).get(f"fault:{MARK}:redis") == b"kept"
    assert loader_containers() == []
    wait_until(all_healthy, 120, "the stack to be healthy after the failed Redis restore")
    # PostgreSQL: the backup's rows live, today's rows in the set-aside database...
    canary = "SELECT count(*) FROM public.restore_canary WHERE mark = %s"
    assert query(inv, canary, (f"today-{MARK}",)) == [(0,)]
    assert query(inv, canary, (f"today-{MARK}",), dbname=previous.group(1)) == [(1,)]
    # ... and the printed command puts them back.
    command = re.search(r"To roll back PostgreSQL alone: (docker exec .*?;')", output)
    assert command, output[-4000:]
    subprocess.run(["sh", "-c", command.group(1)], check=True, capture_output=True, timeout=60)
    assert query(inv, canary, (f"today-{MARK}",)) == [(1,)]


def _snapshot(inv, tmp_path: Path) -> Path:
    folder = tmp_path / "redis-backup"
    folder.mkdir()
    backup_redis.dump(container("redis"), str(folder), inv["cmx_redis_password"])
    return folder


def test_clients_writing_while_redis_comes_back_do_not_fail_the_restore(inv, tmp_path):
    """Before: the restarted server had to show exactly the loaded key counts; any write failed the step."""
    client = rds(inv)
    client.set(f"fault:{MARK}:in-snapshot", "1")
    client.set(f"fault:{MARK}:expiring", "1", px=1500)  # may expire between the load and the check
    folder = _snapshot(inv, tmp_path)
    client.delete(f"fault:{MARK}:in-snapshot")
    stop, written = threading.Event(), []

    def write_all_the_time():
        # No retries with backoff, short timeouts: it writes as soon as Redis accepts writes again.
        writer = redis.Redis(
            host="127.0.0.1", port=inv["cmx_redis_port"], password=inv["cmx_redis_password"],
            socket_timeout=0.2, socket_connect_timeout=0.2, retry=Retry(NoBackoff(), 0),
        )  # fmt: skip
        while not stop.is_set():
            try:
                writer.set(f"fault:{MARK}:client:{len(written)}", "x")
                written.append(time.monotonic())
            except redis.exceptions.RedisError:
                time.sleep(0.001)  # down (or loading) while restoring

    thread = threading.Thread(target=write_all_the_time, daemon=True)
    thread.start()
    try:
        result = backup_redis.restore(container("redis"), str(folder), inv["cmx_redis_password"])
        returned = time.monotonic()
        time.sleep(0.5)
    finally:
        stop.set()
        thread.join()
    assert [t for t in written if t > returned], "the client did not write after the restore"
    assert result["loaded"]["db0"] - result["checked"]["db0"] in (0, 1)  # the expiring key only
    assert client.get(f"fault:{MARK}:in-snapshot") == b"1"


@pytest.mark.parametrize("trap", [True, False], ids=["stopped", "killed"])
def test_a_loader_outliving_its_timeout_is_gone_before_redis_starts(inv, tmp_path, monkeypatch, trap):
    """Before: only the docker CLI was killed; Redis started while the loader still ran on its volume."""
    folder = _snapshot(inv, tmp_path)
    rds(inv).set(f"fault:{MARK}:previous", "kept")
    # The loader hangs while its temporary server holds the snapshot; in the background, a stop
    # runs its trap (previous data put back); in the foreground the trap waits and the loader is killed.
    stall = "sleep 600 & wait $!" if trap else "sleep 600"
    anchor = 'redis-cli -p "$port" config set appendonly yes'
    script = backup_redis.RESTORE_SCRIPT.replace(anchor, f"{stall}\n{anchor}")
    assert script != backup_redis.RESTORE_SCRIPT
    monkeypatch.setattr(backup_redis, "RESTORE_SCRIPT", script)
    monkeypatch.setattr(backup_redis, "LOADER_GRACE_SECONDS", 5, raising=False)
    monkeypatch.setattr(backup_redis, "LOADER_STOP_SECONDS", 3, raising=False)
    try:
        with pytest.raises((backup.BackupError, subprocess.TimeoutExpired)) as failed:
            backup_redis.restore(container("redis"), str(folder), inv["cmx_redis_password"], timeout=2)
        assert loader_containers() == [], "the loader still runs beside Redis"
    finally:
        docker("rm", "-f", f"{container('redis')}-restore", check=False)
    assert "did not finish within 2 s: the loader was stopped, previous data kept" in str(failed.value)
    wait_until(all_healthy, 120, "Redis to be healthy after the timed-out restore")
    assert rds(inv).get(f"fault:{MARK}:previous") == b"kept"
    files = docker("exec", container("redis"), "ls", "-a", "/data").stdout.split()
    assert not [name for name in files if name.startswith("cmx-restore")], files
