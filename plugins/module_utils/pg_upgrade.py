# Copyright: CleanMateX DevOps
# Apache License 2.0 (see galaxy.yml)
"""Moving a PostgreSQL data volume to another major (bin/cmx upgrade), and back (rollback).

Upgrade, each step checked before the next; nothing is changed before step 2 and the old cluster is never
written to:
  1. the volume's major (PG_VERSION) is read: the configured major already → nothing to do; a newer one →
     refused (no downgrade); the kept copy of an earlier upgrade still there → refused;
  2. the containers using the volumes are stopped and the volumes are copied to <volume>-pg<old> (kept);
  3. a server of the old major runs on the kept copy (no network, socket only): pg_dumpall into the backup
     folder (checked complete), and each table's row count and checksum;
  4. the stack's volumes are emptied, a server of the new major initialises them (the stack's initdb
     settings), the dump is restored, and every table's row count and checksum must match step 3.
The kept copy is the rollback: `rollback` copies it back (the configured major must then be the old one).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from datetime import UTC, datetime

from ansible_collections.cleanmatex.infra.plugins.module_utils import pg_volume

ARGUMENT_SPEC = {
    "state": {"type": "str", "default": "upgrade", "choices": ["inspect", "upgrade", "rollback"]},
    "volume": {"type": "str", "required": True},
    "wal_volume": {"type": "str", "default": ""},
    "old_image": {"type": "str", "default": ""},
    "new_image": {"type": "str", "required": True},
    "major": {"type": "int", "required": True},
    "superuser": {"type": "str", "default": "postgres"},
    "initdb_args": {
        "type": "str",
        "default": "--data-checksums --auth-host=scram-sha-256 --auth-local=trust",
    },
    "backup_dir": {"type": "path", "default": ""},
    "timeout": {"type": "int", "default": 600},
    "docker": {"type": "str", "default": "docker"},
}

DATA = "/var/lib/postgresql/data"
WAL_ROOT = "/var/lib/postgresql/wal"
WAL_DIR = f"{WAL_ROOT}/pg_wal"
DUMP_END = "PostgreSQL database cluster dump complete"
# Errors a pg_dumpall --clean --if-exists script always gives on a fresh cluster of the same superuser.
EXPECTED_ERRORS = (
    re.compile(r'ERROR:  role "[^"]+" already exists'),
    re.compile(r"ERROR:  current user cannot be dropped"),
)
# Row count and an order-independent checksum of every user table, as one JSON line per database.
STATS_SQL = r"""
SELECT coalesce(json_object_agg(t.name, t.stats), '{}') FROM (
  SELECT format('%I.%I', n.nspname, c.relname) AS name,
         (xpath('/row/s/text()', query_to_xml(format(
            'SELECT count(*) || '':'' || coalesce(mod(sum((''x'' || substr(md5(t::text), 1, 15))'
            '::bit(60)::bigint), 1000000007), 0) AS s FROM %I.%I t', n.nspname, c.relname),
            false, true, '')))[1]::text AS stats
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
  WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
    AND n.nspname NOT LIKE 'pg_toast%' AND n.nspname NOT LIKE 'pg_temp%'
) t
"""


class UpgradeError(Exception):
    pass


class Docker:
    def __init__(self, binary: str, timeout: int):
        self.binary, self.timeout = binary, timeout

    def run(self, *args: str, check: bool = True, stdin=None, stdout=None) -> subprocess.CompletedProcess:
        done = subprocess.run(
            [self.binary, *args],
            stdin=stdin,
            stdout=stdout if stdout is not None else subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            timeout=self.timeout,
        )
        if check and done.returncode != 0:
            raise UpgradeError(f"docker {' '.join(args[:3])} …: {(done.stderr or '').strip()[:400]}")
        return done

    def exists(self, volume: str) -> bool:
        return bool(volume) and self.run("volume", "inspect", volume, check=False).returncode == 0

    def sh(self, image: str, script: str, *mounts: str) -> str:
        """Run `script` as root in a one-off container of `image` (no network), the volumes mounted."""
        args = ["run", "--rm", "--network", "none", "--log-driver", "none", "--pull", "never", "--user", "0"]
        for mount in mounts:
            args += ["--mount", mount]
        return self.run(*args, "--entrypoint", "sh", image, "-c", script).stdout.strip()


def _mount(volume: str, target: str, readonly: bool = False) -> str:
    return f"type=volume,source={volume},target={target}" + (",readonly" if readonly else "")


def kept_name(volume: str, major: str) -> str:
    return f"{volume}-pg{major}"


def volume_major(docker: Docker, volume: str, image: str) -> str | None:
    """The volume's PG_VERSION as the upgrade guard reads it (pg_volume), or None without a cluster."""
    try:
        return pg_volume.volume_major(docker.binary, volume, image)
    except pg_volume.VolumeError as error:
        raise UpgradeError(str(error)) from error


def copy_volume(docker: Docker, image: str, source: str, target: str) -> None:
    """Copy every file of `source` into the new volume `target`."""
    docker.run("volume", "create", "--label", f"org.cleanmatex.upgrade-copy-of={source}", target)
    copy_into(docker, image, source, target)


def copy_into(docker: Docker, image: str, source: str, target: str) -> None:
    """Copy every file of `source` into the volume `target`, owners, modes and links kept."""
    docker.sh(
        image,
        'cp -a /from/. /to/ && chown "$(stat -c %u:%g /from)" /to && chmod "$(stat -c %a /from)" /to',
        _mount(source, "/from", readonly=True),
        _mount(target, "/to"),
    )


def empty_volume(docker: Docker, image: str, volume: str) -> None:
    docker.sh(image, "find /v -mindepth 1 -delete", _mount(volume, "/v"))


def owner(docker: Docker, image: str, volume: str) -> str:
    return docker.sh(image, "stat -c %u:%g /v", _mount(volume, "/v", readonly=True))


def stop_users(docker: Docker, volumes: list[str]) -> list[str]:
    """Stop the running containers that mount any of `volumes`; their names."""
    names: list[str] = []
    for volume in volumes:
        listed = docker.run("ps", "--filter", f"volume={volume}", "--format", "{{.Names}}").stdout.split()
        names += [name for name in listed if name not in names]
    if names:
        docker.run("stop", *names)
    return names


class Server:
    """A PostgreSQL container on the given volumes with no network: reached only through docker exec."""

    def __init__(
        self, docker: Docker, name: str, image: str, user: str, volumes: tuple[str, str], superuser: str
    ):
        volume, wal_volume = volumes
        self.docker, self.name, self.superuser = docker, name, superuser
        self.args = ["run", "-d", "--name", name, "--network", "none", "--user", user, "--pull", "never"]
        self.args += ["--mount", _mount(volume, DATA)]
        if wal_volume:
            self.args += ["--mount", _mount(wal_volume, WAL_ROOT)]
        self.image = image

    def start(self, env: dict[str, str], timeout: float) -> None:
        self.docker.run("rm", "-f", self.name, check=False)
        args = list(self.args)
        for key, value in env.items():
            args += ["-e", f"{key}={value}"]
        self.docker.run(*args, self.image, "postgres", "-c", "listen_addresses=")
        self.wait_ready(timeout)

    def wait_ready(self, timeout: float) -> None:
        """Until the last server of the entrypoint (PID 1, not initdb's temporary one) accepts connections."""
        deadline = time.monotonic() + timeout
        while True:
            probe = self.docker.run(
                "exec", self.name, "sh", "-c",
                f'[ "$(head -n1 {DATA}/postmaster.pid 2>/dev/null)" = 1 ] && pg_isready -q',
                check=False,
            )  # fmt: skip
            if probe.returncode == 0:
                return
            state = self.docker.run(
                "inspect", "-f", "{{.State.Running}}", self.name, check=False
            ).stdout.strip()
            if state != "true" or time.monotonic() > deadline:
                logs = self.docker.run("logs", "--tail", "15", self.name, check=False)
                raise UpgradeError(
                    f"PostgreSQL in {self.name} ({self.image}) did not start: "
                    f"{(logs.stdout + logs.stderr)[-900:]}"
                )
            time.sleep(0.2)

    def psql(self, database: str, sql: str) -> str:
        done = self.docker.run(
            "exec", self.name, "psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-U", self.superuser,
            "-d", database, "-c", sql,
        )  # fmt: skip
        return done.stdout.strip()

    def stats(self) -> dict[str, dict[str, str]]:
        databases = self.psql(
            "postgres", "SELECT datname FROM pg_database WHERE datallowconn AND NOT datistemplate ORDER BY 1"
        ).split()
        found = {db: json.loads(self.psql(db, STATS_SQL) or "{}") for db in databases}
        unread = [
            f"{db}.{table}" for db, tables in found.items() for table, value in tables.items() if not value
        ]
        if unread:
            raise UpgradeError(f"could not count the rows of {', '.join(unread[:5])} in {self.name}")
        return found

    def remove(self) -> None:
        self.docker.run("rm", "-f", self.name, check=False)


def _compare(before: dict, after: dict) -> list[str]:
    problems = []
    for database, tables in before.items():
        for table, value in tables.items():
            got = after.get(database, {}).get(table)
            if got != value:
                problems.append(f"{database}.{table}: {value} before, {got} after (rows:checksum)")
    return problems


def upgrade(params: dict, docker: Docker) -> dict:
    volume, wal_volume, major = params["volume"], params["wal_volume"], params["major"]
    new_image, old_image = params["new_image"], params["old_image"]
    found = volume_major(docker, volume, new_image)
    if found is None:
        return {"changed": False, "found": None, "msg": f"{volume} holds no cluster: nothing to upgrade"}
    if int(found) == major:
        return {"changed": False, "found": found, "msg": f"{volume} is PostgreSQL {major} already"}
    if int(found) > major:
        raise UpgradeError(
            f"Refused: {volume} holds PostgreSQL {found}, newer than cmx_postgres_major {major}. "
            f"A cluster cannot be moved to an older major. Nothing was changed. "
            f"Set cmx_postgres_major: {found}, or roll back an "
            "earlier upgrade (bin/cmx upgrade --rollback) if its kept copy is still there."
        )
    if not old_image:
        raise UpgradeError(
            f"{volume} holds PostgreSQL {found}: an image of that major is needed (old_image)."
        )
    wal = wal_volume if docker.exists(wal_volume) else ""
    volumes = [volume] + ([wal] if wal else [])
    kept = {name: kept_name(name, found) for name in volumes}
    leftovers = [name for name in kept.values() if docker.exists(name)]
    if leftovers:
        raise UpgradeError(
            f"Refused: {', '.join(leftovers)} (the kept copy of an earlier upgrade) exists. "
            "Nothing was changed. "
            f"Roll back to it (bin/cmx upgrade --rollback) or, once you no longer need it, remove it "
            f"(docker volume rm {' '.join(leftovers)}) and run the upgrade again."
        )
    user = owner(docker, new_image, volume)
    stopped = stop_users(docker, volumes)
    try:
        before, dump_path = _copy_and_dump(params, docker, volumes, kept, found, user)
    except (UpgradeError, OSError, subprocess.TimeoutExpired) as error:
        # Nothing of the stack's volumes was changed: drop the copies, start what was stopped.
        for name in kept.values():
            docker.run("volume", "rm", "-f", name, check=False)
        if stopped:
            docker.run("start", *stopped, check=False)
        raise UpgradeError(f"{error}. Nothing was changed: {volume} is as it was") from error

    rollback = (
        f"{volume} is incomplete; the old cluster is intact in {', '.join(kept.values())}: roll back with "
        f"bin/cmx upgrade --rollback (then set cmx_postgres_major back to {found})"
    )
    for name in volumes:
        empty_volume(docker, new_image, name)
    new = Server(
        docker, f"{_project(volume)}-pg-upgrade-new", new_image, user, (volume, wal), params["superuser"]
    )
    env = {
        "POSTGRES_USER": params["superuser"],
        # A password is needed to initialise; the dump sets the superuser's real one (its SCRAM hash).
        "POSTGRES_PASSWORD": os.urandom(12).hex(),
        "POSTGRES_DB": "postgres",
        "POSTGRES_INITDB_ARGS": params["initdb_args"],
    }
    if wal:
        env["POSTGRES_INITDB_WALDIR"] = WAL_DIR
    try:
        new.start(env, params["timeout"])
        _restore(params, docker, new, dump_path, before, rollback)
    except (UpgradeError, OSError, subprocess.TimeoutExpired) as error:
        if rollback in str(error):
            raise
        raise UpgradeError(f"{error}. {rollback}") from error
    finally:
        new.remove()
    return _done(volume, found, major, before, kept, dump_path, stopped)


def _project(volume: str) -> str:
    return volume.rsplit("_", 2)[0]


def _copy_and_dump(params: dict, docker: Docker, volumes: list, kept: dict, found: str, user: str) -> tuple:
    """Copy the volumes to their kept names; dump the old cluster from the copy and count its rows."""
    volume, wal, major = volumes[0], (volumes[1:] or [""])[0], params["major"]
    for name in volumes:
        copy_volume(docker, params["new_image"], name, kept[name])
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    folder = os.path.join(params["backup_dir"] or ".", f"upgrade-{stamp}-pg{found}-to-pg{major}")
    os.makedirs(folder, mode=0o700, exist_ok=True)
    dump_path = os.path.join(folder, "dumpall.sql")

    old_volumes = (kept[volume], kept.get(wal, ""))
    old = Server(
        docker,
        f"{_project(volume)}-pg-upgrade-old",
        params["old_image"],
        user,
        old_volumes,
        params["superuser"],
    )
    try:
        old.start({}, params["timeout"])
        before = old.stats()
        fd = os.open(dump_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            docker.run(
                "exec", old.name, "pg_dumpall", "-U", params["superuser"], "--clean", "--if-exists",
                stdout=handle,
            )  # fmt: skip
    finally:
        old.remove()
    with open(dump_path, "rb") as handle:
        handle.seek(max(0, os.path.getsize(dump_path) - 4096))
        if DUMP_END.encode() not in handle.read():
            raise UpgradeError(f"the dump {dump_path} is incomplete; nothing was changed in {volume}")

    return before, dump_path


def _restore(params: dict, docker: Docker, new: Server, dump_path: str, before: dict, rollback: str) -> None:
    with open(dump_path, encoding="utf-8") as handle:
        restored = docker.run(
            "exec", "-i", new.name, "psql", "-X", "-q", "-U", params["superuser"], "-d", "postgres",
            "-v", "ON_ERROR_STOP=0", "-f", "-", stdin=handle, check=False,
        )  # fmt: skip
    errors = [line for line in restored.stderr.splitlines() if "ERROR:" in line or "FATAL:" in line]
    unexpected = [line for line in errors if not any(p.search(line) for p in EXPECTED_ERRORS)]
    if restored.returncode != 0 or unexpected:
        raise UpgradeError(f"restoring the dump failed: {unexpected[:5]}. {rollback}")
    mismatches = _compare(before, new.stats())
    if mismatches:
        raise UpgradeError(f"the restored data differs: {'; '.join(mismatches[:10])}. {rollback}")
    docker.run("exec", new.name, "vacuumdb", "-U", params["superuser"], "--all", "--analyze-only", "-q")


def _done(
    volume: str, found: str, major: int, before: dict, kept: dict, dump_path: str, stopped: list
) -> dict:
    tables = sum(len(t) for t in before.values())
    rows = sum(int(v.split(":")[0]) for t in before.values() for v in t.values())
    return {
        "changed": True,
        "found": found,
        "kept": list(kept.values()),
        "dump": dump_path,
        "stopped": stopped,
        "tables": tables,
        "rows": rows,
        "msg": (
            f"{volume}: PostgreSQL {found} → {major}; {tables} tables, {rows} rows, every row count and "
            f"checksum equal. The old cluster is kept in {', '.join(kept.values())} (roll back: "
            f"bin/cmx upgrade --rollback; remove it when you no longer need it: "
            f"docker volume rm {' '.join(kept.values())}). Dump: {dump_path}"
        ),
    }


def rollback(params: dict, docker: Docker) -> dict:
    volume, wal_volume, image = params["volume"], params["wal_volume"], params["new_image"]
    candidates = [
        v["Name"]
        for v in map(json.loads, docker.run("volume", "ls", "--format", "{{json .}}").stdout.splitlines())
        if re.fullmatch(re.escape(volume) + r"-pg\d+", v["Name"])
    ]
    if not candidates:
        raise UpgradeError(
            f"Nothing to roll back to: no kept copy {volume}-pg<major> exists. Nothing was changed."
        )
    kept = sorted(candidates)[-1]
    old_major = kept.rsplit("-pg", 1)[1]
    if int(old_major) != params["major"]:
        raise UpgradeError(
            f"{kept} holds PostgreSQL {old_major}: set cmx_postgres_major: {old_major} to roll back to it. "
            "Nothing was changed."
        )
    wal = wal_volume if docker.exists(wal_volume) else ""
    kept_wal = kept_name(wal, old_major) if wal and docker.exists(kept_name(wal, old_major)) else ""
    pairs = [(kept, volume)] + ([(kept_wal, wal)] if kept_wal else [])
    stopped = stop_users(docker, [volume] + ([wal] if wal else []))
    for source, target in pairs:
        empty_volume(docker, image, target)
        copy_into(docker, image, source, target)
    found = volume_major(docker, volume, image)
    if found != old_major:
        raise UpgradeError(f"after the copy {volume} holds {found}, not {old_major}; {kept} is unchanged")
    return {
        "changed": True,
        "found": found,
        "kept": [source for source, _ in pairs],
        "stopped": stopped,
        "msg": (
            f"{volume} holds PostgreSQL {old_major} again (copied from {kept}, which is kept). "
            "Start the stack with "
            f"cmx_postgres_major: {old_major} (bin/cmx up)."
        ),
    }


def task_result(params: dict, check_mode: bool) -> dict:
    docker = Docker(params["docker"], params["timeout"])
    try:
        if params["state"] == "inspect":
            found = volume_major(docker, params["volume"], params["new_image"])
            return {"changed": False, "found": found, "msg": f"{params['volume']}: {found or 'no cluster'}"}
        if check_mode:
            return {"changed": False, "msg": "check mode: nothing moved"}
        if params["state"] == "rollback":
            return rollback(params, docker)
        return upgrade(params, docker)
    except (UpgradeError, OSError, subprocess.TimeoutExpired) as error:
        return {"failed": True, "msg": str(error)}
