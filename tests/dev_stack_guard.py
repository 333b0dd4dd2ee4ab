#!/usr/bin/env python3
"""Proves the test command leaves a developer's dev stack exactly as it was.

    dev_stack_guard.py snapshot SNAPSHOT.json   # before the tests
    dev_stack_guard.py compare SNAPSHOT.json    # after: exit 1 listing every difference
    dev_stack_guard.py fill                     # CI: put a row, a key and an object in the dev stack

A snapshot holds, for the dev project (compose project `cmx`, folder `.cmx/`): each container's ID, start
time and restart count; the project's volumes and network; every file under `.cmx/` (backups included)
by size, mode and sha256; and the data itself, read through the ports published on 127.0.0.1 with real
clients: row count and checksum of every table, every Redis key's DUMP, every object's size and ETag.
Reading changes nothing; with no dev stack running, only the folder is compared.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROJECT = os.environ.get("CMX_GUARD_PROJECT", "cmx")
PROJECT_DIR = Path(os.environ.get("CMX_GUARD_PROJECT_DIR", ROOT / ".cmx"))


def docker(*args: str) -> str:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=True, timeout=60).stdout


def containers() -> dict:
    ids = docker("ps", "-aq", "--filter", f"label=com.docker.compose.project={PROJECT}").split()
    if not ids:
        return {}
    found = {}
    for item in json.loads(docker("inspect", *ids)):
        found[item["Name"].lstrip("/")] = {
            "id": item["Id"],
            "started_at": item["State"]["StartedAt"],
            "restart_count": item["RestartCount"],
            "running": item["State"]["Running"],
        }
    return found


def docker_objects(kind: str) -> list[str]:
    listed = docker(kind, "ls", "-q", "--filter", f"label=com.docker.compose.project={PROJECT}")
    return sorted(listed.split())


def files() -> dict:
    found = {}
    if not PROJECT_DIR.is_dir():
        return found
    for path in sorted(PROJECT_DIR.rglob("*")):
        info = path.lstat()
        entry = {"mode": oct(stat.S_IMODE(info.st_mode))}
        if stat.S_ISREG(info.st_mode):
            entry["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
        found[str(path.relative_to(PROJECT_DIR))] = entry
    return found


def _settings() -> dict:
    """Connection settings from the rendered stack (.cmx/.env and .cmx/secrets/), read-only."""
    env = {}
    for line in (PROJECT_DIR / ".env").read_text().splitlines():
        if "=" in line and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            env[key.strip()] = value.strip().strip('"')
    secrets = PROJECT_DIR / "secrets"
    env["POSTGRES_PASSWORD"] = (secrets / "postgres_password").read_text()
    env["REDIS_PASSWORD"] = (secrets / "redis_password").read_text()
    env["S3_ACCESS_KEY"] = (secrets / "s3_access_key").read_text()
    env["S3_SECRET_KEY"] = (secrets / "s3_secret_key").read_text()
    return env


def _pg(env: dict):
    import psycopg2

    return psycopg2.connect(
        host="127.0.0.1",
        port=env["POSTGRES_PORT"],
        user=env["POSTGRES_USER"],
        password=env["POSTGRES_PASSWORD"],
        dbname=env["POSTGRES_DB"],
        sslmode="disable",
        connect_timeout=5,
    )


def postgres(env: dict) -> dict:
    conn = _pg(env)
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT quote_ident(table_schema) || '.' || quote_ident(table_name)"
                " FROM information_schema.tables WHERE table_type = 'BASE TABLE'"
                " AND table_schema NOT IN ('pg_catalog', 'information_schema') ORDER BY 1"
            )
            tables = [row[0] for row in cur.fetchall()]
            found = {}
            for table in tables:
                # Every row's text, sorted: the same rows give the same checksum in any physical order.
                digest = "md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), ''))"
                cur.execute(f"SELECT count(*), {digest} FROM {table} t")
                found[table] = list(cur.fetchone())
            return found
    finally:
        conn.close()


def _redis(env: dict, db: int = 0):
    import redis

    password = env["REDIS_PASSWORD"] or None
    return redis.Redis(host="127.0.0.1", port=int(env["REDIS_PORT"]), password=password, db=db)


def redis_keys(env: dict) -> dict:
    found = {}
    for db in _redis(env).info("keyspace") or {}:
        conn = _redis(env, int(db[2:]))
        found[db] = {
            key.decode("utf-8", "backslashreplace"): hashlib.sha256(conn.dump(key) or b"").hexdigest()
            for key in sorted(conn.scan_iter(count=1000))
        }
    return found


def _s3(env: dict):
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=f"http://127.0.0.1:{env['S3_PORT']}",
        aws_access_key_id=env["S3_ACCESS_KEY"],
        aws_secret_access_key=env["S3_SECRET_KEY"],
        region_name="us-east-1",
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 2}),
    )


def objects(env: dict) -> dict:
    client = _s3(env)
    found = {}
    for bucket in client.list_buckets()["Buckets"]:
        name = bucket["Name"]
        listed = {}
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=name):
            for item in page.get("Contents", []):
                listed[item["Key"]] = [item["Size"], item["ETag"]]
        found[name] = listed
    return found


def fill() -> None:
    """Data of every kind in the dev stack (a row, a key, an object), for the guard to compare in CI."""
    env = _settings()
    mark = f"guard-{os.getpid()}"
    conn = _pg(env)
    try:
        with conn, conn.cursor() as cur:
            cur.execute("CREATE TABLE IF NOT EXISTS dev_stack_guard (mark text PRIMARY KEY, at timestamptz)")
            cur.execute("INSERT INTO dev_stack_guard VALUES (%s, now())", (mark,))
    finally:
        conn.close()
    _redis(env).set(f"guard:{mark}", mark)
    _s3(env).put_object(Bucket=env["S3_BUCKET"], Key=f"guard/{mark}.txt", Body=mark.encode())
    print(f"dev stack guard: wrote row, key and object {mark}")


def snapshot() -> dict:
    shot = {"project": PROJECT, "project_dir": str(PROJECT_DIR), "files": files()}
    running = containers()
    shot["containers"] = running
    shot["volumes"] = docker_objects("volume")
    shot["networks"] = docker_objects("network")
    if running and all(item["running"] for item in running.values()):
        env = _settings()
        shot["postgres"] = postgres(env)
        shot["redis"] = redis_keys(env)
        shot["s3"] = objects(env)
    return shot


def differences(before: dict, after: dict, path: str = "") -> list[str]:
    """Every path at which `after` differs from `before`, one line each."""
    if isinstance(before, dict) and isinstance(after, dict):
        found = []
        for key in sorted(set(before) | set(after)):
            where = f"{path}/{key}" if path else str(key)
            if key not in after:
                found.append(f"{where}: gone (was {json.dumps(before[key])[:120]})")
            elif key not in before:
                found.append(f"{where}: new ({json.dumps(after[key])[:120]})")
            else:
                found.extend(differences(before[key], after[key], where))
        return found
    if before != after:
        return [f"{path}: {json.dumps(before)[:120]} -> {json.dumps(after)[:120]}"]
    return []


def describe(shot: dict) -> str:
    if not shot["containers"]:
        return f"no dev stack running; {len(shot['files'])} paths under {shot['project_dir']}"
    tables = shot.get("postgres", {})
    rows = sum(count for count, _ in tables.values())
    keys = sum(len(keys) for keys in shot.get("redis", {}).values())
    objects_count = sum(len(keys) for keys in shot.get("s3", {}).values())
    return (
        f"dev stack '{shot['project']}': {len(shot['containers'])} containers, {len(tables)} tables"
        f" ({rows} rows), {keys} Redis keys, {objects_count} objects, {len(shot['files'])} paths under"
        f" {shot['project_dir']}"
    )


def main(argv: list[str]) -> int:
    if argv[1:] == ["fill"]:
        fill()
        return 0
    if len(argv) != 3 or argv[1] not in ("snapshot", "compare"):
        sys.stderr.write(__doc__)
        return 64
    target = Path(argv[2])
    if argv[1] == "snapshot":
        shot = snapshot()
        target.write_text(json.dumps(shot, indent=1, sort_keys=True))
        print(f"dev stack guard: recorded {describe(shot)}")
        return 0
    before = json.loads(target.read_text())
    after = snapshot()
    changed = differences(before, after)
    if changed:
        print(f"dev stack guard: the tests changed the developer's dev stack ({len(changed)} differences):")
        for line in changed:
            print(f"  {line}")
        return 1
    print(f"dev stack guard: untouched — {describe(after)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
