# Copyright: CleanMateX DevOps
# Apache-2.0 (see galaxy.yml)
"""One backup of the stack: a new folder, PostgreSQL, Redis and the bucket copied in parallel, the
manifest last, then the retention. plugins/modules/cmx_backup.py is the thin wrapper.

The three copies are independent, so they run side by side (threads: each mostly waits on a docker
exec pipe or an HTTP socket); the backup takes as long as the PostgreSQL dump alone. If any part fails
the folder is removed and the error names the part: a folder exists only complete, with its manifest.
"""

from __future__ import annotations

import datetime
import shutil
import time
from concurrent.futures import ThreadPoolExecutor

from ansible_collections.cleanmatex.infra.plugins.module_utils import (
    backup,
    backup_postgres,
    backup_redis,
    backup_s3,
)


def utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def iso(moment: datetime.datetime) -> str:
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


def dump_redis(redis: dict, folder: str, docker: str = "docker") -> dict:
    """The Redis part: an RDB snapshot out of the container, or (no container) every key over the network."""
    timeout = float(redis.get("timeout") or 600)
    if redis.get("container"):
        return backup_redis.dump(redis["container"], folder, redis.get("password") or "", docker, timeout)
    if not redis.get("host"):
        raise backup.BackupError("no Redis container and no host to reach Redis at (redis.host)")
    return backup_redis.dump_keys(
        redis["host"],
        int(redis.get("port") or 6379),
        folder,
        password=redis.get("password") or "",
        tls=bool(redis.get("tls")),
        ca_file=redis.get("ca_file") or "",
        timeout=timeout,
    )


def run_backup(
    *,
    root: str,
    postgres: dict,
    redis: dict,
    storage: dict,
    environment: str,
    project: str,
    keep: int,
    docker: str = "docker",
    lock_wait: float | None = None,
) -> dict:
    """Take a complete backup under ``root``; returns the manifest, the folder, what the retention deleted.

    ``postgres``: container (or, empty, image: a one-off container of it runs the client tools),
    connection (host, port, user, password, dbname, sslmode, sslrootcert), compression.
    ``redis``: container (an RDB snapshot) or, empty, host, port, tls, ca_file (every key over the
    network, backup_redis.dump_keys), password, timeout.
    ``storage``: endpoint_url, access_key, secret_key, region, bucket, engine, workers, ca_file, addressing.
    The backup and its retention hold backup.backup_lock (a second backup waits ``lock_wait`` seconds,
    default backup.LOCK_WAIT, then fails naming the lock file): retention never removes a running backup.
    """
    with backup.backup_lock(root, lock_wait):
        return _run_locked(
            root=root,
            postgres=postgres,
            redis=redis,
            storage=storage,
            environment=environment,
            project=project,
            keep=keep,
            docker=docker,
        )


def _run_locked(
    *,
    root: str,
    postgres: dict,
    redis: dict,
    storage: dict,
    environment: str,
    project: str,
    keep: int,
    docker: str,
) -> dict:
    started = utc_now()
    name, folder = backup.create_backup_dir(root, started)
    timings: dict[str, float] = {}

    def timed(part: str, function, *args, **kwargs):
        begin = time.monotonic()
        try:
            return function(*args, **kwargs)
        except Exception as exc:
            raise backup.BackupError(f"{part}: {exc}") from exc
        finally:
            timings[part] = round(time.monotonic() - begin, 3)

    client = backup_s3.Client(
        storage["endpoint_url"],
        storage["access_key"],
        storage["secret_key"],
        storage.get("region") or "us-east-1",
        ca_file=storage.get("ca_file") or None,
        addressing=storage.get("addressing") or "path",
    )
    try:
        with ThreadPoolExecutor(max_workers=3, thread_name_prefix="cmx-backup") as pool:
            pg_job = pool.submit(
                timed,
                "PostgreSQL",
                backup_postgres.dump,
                connection=postgres["connection"],
                container=postgres["container"],
                folder=folder,
                compression=postgres.get("compression") or "",
                docker=docker,
                # Only without a container: a one-off container of the stack's image runs the tools.
                **({} if postgres.get("container") else {"image": postgres.get("image") or ""}),
            )
            redis_job = pool.submit(timed, "Redis", dump_redis, redis, folder, docker)
            s3_job = pool.submit(
                timed,
                "storage",
                backup_s3.backup_bucket,
                client,
                storage["bucket"],
                folder,
                int(storage.get("workers") or 8),
            )
            pg_part, redis_part, s3_part = pg_job.result(), redis_job.result(), s3_job.result()
        files = {**pg_part["files"], **redis_part["files"], **s3_part["files"]}
        unlisted = backup.unlisted_files(folder, {"files": files})
        if unlisted:
            raise backup.BackupError(f"files no backup step reported: {', '.join(unlisted[:10])}")
        manifest = backup.build_manifest(
            name=name,
            created_at=iso(started),
            finished_at=iso(utc_now()),
            environment=environment,
            project=project,
            files=files,
            postgres=pg_part["postgres"],
            redis=redis_part["redis"],
            storage={
                "engine": storage.get("engine") or "",
                "bucket": storage["bucket"],
                "object_count": len(s3_part["objects"]),
                "bytes": s3_part["bytes"],
                "objects": s3_part["objects"],
                # listed, then deleted before their GET: not in the backup, and not an error
                "skipped_deleted": s3_part.get("skipped_deleted", []),
            },
        )
        manifest["seconds"] = timings
        backup.write_manifest(folder, manifest)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    deleted = backup.prune(root, keep, protect=(name,)) if keep > 0 else []
    return {"name": name, "path": folder, "manifest": manifest, "deleted": deleted}
