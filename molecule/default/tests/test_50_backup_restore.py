"""Backup, reset with the volumes removed, restore: the data comes back identical (issue: database lifecycle).

Runs the real playbooks (playbooks/backup.yml, restore.yml, reset.yml, down.yml and the dev.yml converge)
against the ci stack, with the ci inventory and CMX_PROJECT_DIR as Molecule sets them:

* PostgreSQL: the same per-table row counts and md5 of the ordered rows of every table;
* Redis: the same keys, types, values and TTLs, also after a restart (the AOF was rebuilt);
* the bucket: the same keys with the same sha256, Content-Type and metadata;
* the restore takes a backup first and keeps the database it replaced, renamed aside;
* a corrupted backup is refused before anything is touched, naming the file;
* reset takes a backup first and refuses production without the confirmation variable;
* the retention keeps the newest backups.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import shutil
import subprocess
import uuid
from pathlib import Path

import psycopg2
import pytest
from conftest import INVENTORY, PROJECT, PROJECT_DIR, all_healthy, container, docker, wait_until
from conftest import pg_connect as pg
from conftest import redis_client as rds
from conftest import s3_client as s3

ROOT = Path(__file__).resolve().parents[3]
BACKUP_DIR = PROJECT_DIR / "backups"
MARK = uuid.uuid4().hex[:12]
PREFIX = f"bk:{MARK}:"
STAMP = PROJECT_DIR / ".converged"  # the last full converge (roles/converge_state)

TABLES_SQL = """
SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname !~ '^pg_(toast|temp_)'
ORDER BY 1, 2
"""


# --- helpers ---------------------------------------------------------------------------------------------


def playbook(path: str, *extra: str, check: bool = True, timeout: float = 900) -> subprocess.CompletedProcess:
    env = dict(os.environ, ANSIBLE_FORCE_COLOR="0", ANSIBLE_NOCOLOR="1", CMX_PROJECT_DIR=str(PROJECT_DIR))
    vault_pass = INVENTORY / ".vault-pass-ci"
    if vault_pass.is_file():
        env.setdefault("ANSIBLE_VAULT_PASSWORD_FILE", str(vault_pass))
    run = subprocess.run(
        ["ansible-playbook", "-i", str(INVENTORY), str(ROOT / path), *extra],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check:
        assert run.returncode == 0, (
            f"{path} {' '.join(extra)} failed:\n{run.stdout[-6000:]}\n{run.stderr[-3000:]}"
        )
    return run


def backups() -> list[str]:
    if not BACKUP_DIR.is_dir():
        return []
    return sorted(p.name for p in BACKUP_DIR.iterdir() if (p / "manifest.json").is_file())


def newest_backup() -> Path:
    names = backups()
    assert names, f"no complete backup under {BACKUP_DIR}"
    return BACKUP_DIR / names[-1]


# --- what is compared ------------------------------------------------------------------------------------


def database_state(inv) -> dict[str, tuple[int, str]]:
    """Every table: (row count, md5 of its rows as text, ordered)."""
    conn = pg(inv)
    try:
        with conn.cursor() as cur:
            cur.execute(TABLES_SQL)
            state = {}
            for schema, table in cur.fetchall():
                cur.execute(
                    f"SELECT count(*), md5(coalesce(string_agg(t::text, E'\\n' ORDER BY t::text), '')) "
                    f'FROM "{schema}"."{table}" t'
                )
                state[f"{schema}.{table}"] = cur.fetchone()
            return state
    finally:
        conn.close()


def redis_state(inv) -> dict:
    """Our keys in db0 and db1: type, value and whether a TTL is set."""
    state = {}
    for db in (0, 1):
        client = rds(inv, db)
        for key in sorted(client.scan_iter(match=f"{PREFIX}*".encode(), count=1000)):
            kind = client.type(key).decode()
            if kind == "string":
                value = client.get(key)
            elif kind == "hash":
                value = sorted(client.hgetall(key).items())
            elif kind == "list":
                value = client.lrange(key, 0, -1)
            elif kind == "set":
                value = sorted(client.smembers(key))
            elif kind == "zset":
                value = client.zrange(key, 0, -1, withscores=True)
            else:
                value = kind
            state[(db, key)] = (kind, value, client.pttl(key) > 0)
    return state


def bucket_state(inv) -> dict[str, tuple[str, str, dict]]:
    client, bucket, state = s3(inv), inv["cmx_s3_bucket"], {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for item in page.get("Contents", []):
            got = client.get_object(Bucket=bucket, Key=item["Key"])
            body = got["Body"].read()
            state[item["Key"]] = (
                hashlib.sha256(body).hexdigest(),
                got.get("ContentType"),
                got.get("Metadata"),
            )
    return state


# --- data written before the backup ------------------------------------------------------------------------


def write_database(inv) -> None:
    rng = random.Random(MARK)
    conn = pg(inv)
    conn.autocommit = False  # one transaction: all of it or nothing
    try:
        with conn, conn.cursor() as cur:
            cur.execute(
                "INSERT INTO tenants (slug, name, currency) VALUES (%s, %s, 'EUR') RETURNING id",
                (f"bk-{MARK}", f"Backup Test {MARK} / Ünïcødé"),
            )
            tenant = cur.fetchone()[0]
            branches = []
            for code in ("A1", "B2", "C3"):
                cur.execute(
                    "INSERT INTO branches (tenant_id, code, name) VALUES (%s, %s, %s) RETURNING id",
                    (tenant, code, f"Branch {code}"),
                )
                branches.append(cur.fetchone()[0])
            cur.execute(
                "INSERT INTO users (tenant_id, email, full_name, role, branch_id) "
                "VALUES (%s, %s, 'Bea Backup', 'manager', %s) RETURNING id",
                (tenant, f"bea-{MARK}@example.test", branches[0]),
            )
            user = cur.fetchone()[0]
            customers = []
            for n in range(60):
                cur.execute(
                    "INSERT INTO customers (tenant_id, full_name, phone, email, notes) "
                    "VALUES (%s, %s, %s, %s, %s) RETURNING id",
                    (
                        tenant,
                        f"Customer {n} O'Brien",
                        f"+49-{MARK[:4]}-{n:04d}",
                        None,
                        "x" * rng.randint(0, 300),
                    ),
                )
                customers.append(cur.fetchone()[0])
            services = []
            for code, unit in (("WASH", "kg"), ("IRON", "item"), ("DRY", "item"), ("DUVET", "set")):
                cur.execute(
                    "INSERT INTO services (tenant_id, code, name, unit) VALUES (%s, %s, %s, %s) RETURNING id",
                    (tenant, code, code.title(), unit),
                )
                services.append(cur.fetchone()[0])
            cur.execute(
                "INSERT INTO price_lists (tenant_id, name, currency, is_default) "
                "VALUES (%s, 'Standard', 'EUR', true) RETURNING id",
                (tenant,),
            )
            price_list = cur.fetchone()[0]
            for service in services:
                cur.execute(
                    "INSERT INTO price_list_items (tenant_id, price_list_id, service_id, unit_price) "
                    "VALUES (%s, %s, %s, %s)",
                    (tenant, price_list, service, round(rng.uniform(1, 30), 2)),
                )
            for n in range(80):
                cur.execute(
                    "INSERT INTO orders (tenant_id, branch_id, customer_id, price_list_id, created_by, "
                    "order_number, currency) VALUES (%s, %s, %s, %s, %s, %s, 'EUR') RETURNING id",
                    (tenant, rng.choice(branches), rng.choice(customers), price_list, user, f"BK-{n:05d}"),
                )
                order = cur.fetchone()[0]
                for _ in range(rng.randint(1, 4)):
                    cur.execute(
                        "INSERT INTO order_items (tenant_id, order_id, service_id, quantity, unit_price) "
                        "VALUES (%s, %s, %s, %s, %s)",
                        (
                            tenant,
                            order,
                            rng.choice(services),
                            rng.randint(1, 9),
                            round(rng.uniform(1, 30), 2),
                        ),
                    )
                for status in ("processing", "ready", "delivered")[: rng.randint(0, 3)]:
                    cur.execute("UPDATE orders SET status = %s WHERE id = %s", (status, order))
            # A table of random rows: every common type, NULLs, bytes, JSON.
            cur.execute(
                "CREATE TABLE IF NOT EXISTS public.backup_random ("
                " id bigserial PRIMARY KEY, label text, amount numeric(14,4), ratio double precision,"
                " payload bytea, doc jsonb, seen_at timestamptz, flag boolean)"
            )
            cur.execute(
                "INSERT INTO public.backup_random (label, amount, ratio, payload, doc, seen_at, flag) "
                "SELECT md5(random()::text) || E'\\t\\n''\"\\\\', (random() * 1e6)::numeric(14,4), random(),"
                " decode(md5(random()::text), 'hex'), jsonb_build_object('n', g, 'r', random()),"
                " now() - random() * interval '900 days',"
                " CASE WHEN g % 7 = 0 THEN NULL ELSE random() < 0.5 END"
                " FROM generate_series(1, 25000) g"
            )
    finally:
        conn.close()


def write_redis(inv) -> None:
    client = rds(inv)
    client.set(f"{PREFIX}plain", "hello")
    client.set(f"{PREFIX}binary".encode(), bytes(range(256)))
    client.set(f"{PREFIX}ttl", "expires later", ex=7200)
    client.hset(f"{PREFIX}hash", mapping={f"f{n}": os.urandom(16) for n in range(50)})
    client.rpush(f"{PREFIX}list", *[f"item-{n}" for n in range(500)])
    client.sadd(f"{PREFIX}set", *[os.urandom(8) for _ in range(200)])
    client.zadd(f"{PREFIX}zset", {f"m{n}": n / 7 for n in range(300)})
    client.set(f"{PREFIX}big", os.urandom(2 * 1024 * 1024))
    rds(inv, 1).set(f"{PREFIX}db1", "other database")


def write_objects(inv) -> None:
    client, bucket = s3(inv), inv["cmx_s3_bucket"]
    bodies = {
        f"bk-{MARK}/empty.txt": b"",
        f"bk-{MARK}/nested/deep/invoice 2025 (Ä).pdf": os.urandom(70_000),
        f"bk-{MARK}/large.bin": os.urandom(3 * 1024 * 1024 + 5),
        f"bk-{MARK}/same-a.bin": b"identical body",
        f"bk-{MARK}/same-b.bin": b"identical body",
        f"bk-{MARK}/plus+and=equals&amp.txt": b"special characters in the key",
    }
    bodies.update({f"bk-{MARK}/many/{n:03d}.json": json.dumps({"n": n}).encode() for n in range(25)})
    for key, body in bodies.items():
        client.put_object(
            Bucket=bucket, Key=key, Body=body, ContentType="application/x-cmx-test", Metadata={"origin": MARK}
        )


# --- tests ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module", autouse=True)
def stack_up(inv):
    wait_until(all_healthy, 180, "the stack to be healthy before the backup tests")
    yield
    # Leave the stack as the other verify tests expect it: this file's data removed.
    conn = pg(inv)
    try:
        with conn.cursor() as cur:
            cur.execute("DROP TABLE IF EXISTS public.backup_random")
            cur.execute("DELETE FROM tenants WHERE slug = %s", (f"bk-{MARK}",))
    finally:
        conn.close()
    for db in (0, 1):
        client = rds(inv, db)
        for key in client.scan_iter(match=f"{PREFIX}*"):
            client.delete(key)
    client, bucket = s3(inv), inv["cmx_s3_bucket"]
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=f"bk-{MARK}/"):
        for item in page.get("Contents", []):
            client.delete_object(Bucket=bucket, Key=item["Key"])


def test_reset_takes_a_backup_then_recreates_schema_and_seed(inv):
    before = set(backups())
    assert STAMP.exists(), "the molecule converge records its fingerprint"
    run = playbook("playbooks/reset.yml")
    assert len(set(backups()) - before) == 1, "reset did not take a backup first"
    # The next converge must run every step (migrations) instead of stopping early on the old stamp.
    assert not STAMP.exists(), "reset left the last converge's stamp"
    assert "Take a backup first" in run.stdout
    conn = pg(inv)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM supabase_migrations.schema_migrations")
            assert cur.fetchone()[0] == len(list((ROOT / "supabase" / "migrations").glob("*.sql")))
            cur.execute("SELECT count(*) FROM tenants WHERE slug = 'demo-laundry'")
            assert cur.fetchone()[0] == 1, "ci is seeded"
            cur.execute("SELECT has_database_privilege('cmx_readonly', current_database(), 'CONNECT')")
            assert cur.fetchone()[0], "the init SQL ran again"
    finally:
        conn.close()


def test_round_trip_backup_volumes_removed_restore(inv):
    write_database(inv)
    write_redis(inv)
    write_objects(inv)
    db_before, redis_before, bucket_before = database_state(inv), redis_state(inv), bucket_state(inv)
    assert db_before["public.backup_random"][0] == 25000
    assert len(redis_before) == 9 and len([k for k in bucket_before if k.startswith(f"bk-{MARK}/")]) == 31

    playbook("playbooks/backup.yml")
    folder = newest_backup()
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["environment"] == "ci" and manifest["postgres"]["server_version"]
    assert manifest["postgres"]["tables"] == {table: rows for table, (rows, _) in db_before.items()}
    assert manifest["redis"]["version"] and manifest["storage"]["object_count"] == len(bucket_before)
    for relpath, info in manifest["files"].items():
        data = (folder / relpath).read_bytes()
        assert (len(data), hashlib.sha256(data).hexdigest()) == (info["size"], info["sha256"]), relpath
    assert oct((folder).stat().st_mode & 0o777) == "0o700"

    # Reset with the volumes removed, then the normal converge.
    playbook("playbooks/down.yml", "-e", "cmx_down_remove_volumes=true")
    label = f"label=com.docker.compose.project={PROJECT}"
    volumes = docker("volume", "ls", "-q", "--filter", label).stdout.split()
    assert not any(
        v.endswith(("_postgres_data", "_postgres_wal", "_redis_data", "_storage_data")) for v in volumes
    ), volumes
    playbook("dev.yml")
    assert f"{PREFIX}plain".encode() not in set(rds(inv).scan_iter(match=f"{PREFIX}*"))
    assert not [k for k in bucket_state(inv) if k.startswith(f"bk-{MARK}/")]

    assert STAMP.exists()
    run = playbook("playbooks/restore.yml")
    assert not STAMP.exists(), "restore left the stamp: the next converge could skip migrations"
    output = " ".join(run.stdout.split())  # the yaml callback folds long lines
    assert folder.name in output and "every row count as in the manifest" in output, output[-3000:]
    # A backup of the data it replaced came first, and that database was renamed aside, not dropped.
    assert re.search(r"Backup taken before the restore: [0-9]{8}T[0-9]{6}Z", output), output[-3000:]
    kept = re.search(r"Previous database kept as (\S+) ", output)
    assert kept and kept.group(1).startswith(f"{inv['cmx_postgres_db']}_before_restore_"), output[-3000:]
    aside = psycopg2.connect(
        host="127.0.0.1", port=inv["cmx_postgres_port"], user=inv["cmx_postgres_user"],
        password=inv["cmx_postgres_password"], dbname=kept.group(1), sslmode="disable",
    )  # fmt: skip
    try:
        with aside.cursor() as cur:
            cur.execute("SELECT to_regclass('public.backup_random') IS NULL")
            assert cur.fetchone()[0], "the set-aside database is the one the restore replaced"
    finally:
        aside.close()

    assert database_state(inv) == db_before
    assert redis_state(inv) == redis_before
    assert bucket_state(inv) == bucket_before

    # Through PgBouncer too (the restored database replaced the one its pool knew).
    conn = pg(inv, "cmx_pgbouncer_port")
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM public.backup_random")
            assert cur.fetchone()[0] == 25000
    finally:
        conn.close()

    # Redis keeps the restored data across a restart: it was written to the append-only file.
    docker("restart", container("redis"))
    wait_until(all_healthy, 120, "the stack to be healthy after restarting Redis")
    assert redis_state(inv) == redis_before
    assert rds(inv).info("persistence")["aof_enabled"] == 1


def test_restore_refuses_a_corrupted_backup_before_touching_anything(inv, tmp_path):
    copy = tmp_path / "corrupted"
    shutil.copytree(newest_backup(), copy)
    rdb = copy / "redis" / "dump.rdb"
    data = bytearray(rdb.read_bytes())
    data[len(data) // 2] ^= 0xFF
    rdb.write_bytes(bytes(data))
    canary = f"{PREFIX}canary"
    rds(inv).set(canary, "still here")

    run = playbook("playbooks/restore.yml", "-e", f"cmx_restore_from={copy}", check=False)
    output = run.stdout + run.stderr
    assert run.returncode != 0
    assert "refusing to restore" in output and "redis/dump.rdb" in output, output[-3000:]
    assert "Restore the roles and the database" not in output
    assert rds(inv).get(canary) == b"still here"


def test_reset_and_restore_refuse_production_without_confirmation():
    before = backups()
    run = playbook("playbooks/reset.yml", "-e", "cmx_environment=production", check=False)
    output = " ".join((run.stdout + run.stderr).split())
    assert run.returncode != 0
    assert "re-run with -e cmx_reset_confirm=production" in output, output[-3000:]
    run = playbook("playbooks/restore.yml", "-e", "cmx_environment=staging", check=False)
    output = " ".join((run.stdout + run.stderr).split())
    assert run.returncode != 0
    assert "re-run with -e cmx_restore_confirm=staging" in output, output[-3000:]
    assert backups() == before, "nothing may happen before the confirmation check"


def test_retention_keeps_the_newest_backups(tmp_path):
    root = tmp_path / "kept"
    for _ in range(3):
        playbook("playbooks/backup.yml", "-e", f"cmx_backup_dir={root}", "-e", "cmx_backup_retention=2")
    names = sorted(p.name for p in root.iterdir())
    assert len(names) == 2 and all((root / name / "manifest.json").is_file() for name in names)
