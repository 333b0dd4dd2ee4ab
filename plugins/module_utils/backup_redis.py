# Copyright: CleanMateX DevOps
# Apache-2.0 (see galaxy.yml)
"""Redis half of a backup: a fresh RDB snapshot (BGSAVE, waited for) streamed out of the Redis container.

``BGSAVE`` forks and writes ``dump.rdb`` atomically (temporary file + rename) whatever the persistence
settings (RDB, AOF or both); ``BGSAVE SCHEDULE`` waits for a running AOF rewrite instead of failing.
Completion is seen in ``INFO persistence`` (``rdb_saves`` grows, nothing in progress, last status ok),
then the file is streamed out with ``cat`` (sha256 on the way). ``redis-cli --rdb`` would do the same
over the replication protocol but waits ``repl-diskless-sync-delay`` (5 s by default) for other replicas
on every backup. The password goes by environment (``REDISCLI_AUTH``), never argv.

Restore (:func:`restore`): with ``appendonly yes`` Redis 7+ loads its AOF at start and ignores
dump.rdb, so the snapshot is loaded by a one-off server started with ``--appendonly no`` on the stopped
server's data volume, converted with ``CONFIG SET appendonly yes`` (a full AOF rewrite) and only then
handed back to the stack's Redis, which must then serve exactly the keys the snapshot held.
"""

from __future__ import annotations

import json
import os
import posixpath
import re
import subprocess
import time

from ansible_collections.cleanmatex.infra.plugins.module_utils import backup
from ansible_collections.cleanmatex.infra.plugins.module_utils.backup_exec import exec_capture, exec_to_file

SNAPSHOT_FILE = "redis/dump.rdb"

# Runs in a one-off container (image of the Redis container, no network, as root) with the stopped
# server's data volume on /data and the backup's redis/ folder on /restore (read-only).
# With `appendonly yes` Redis 7+ loads appendonlydir/ at start and ignores dump.rdb; with the AOF simply
# removed it would start EMPTY. So a temporary server loads the snapshot with --appendonly no, then
# `CONFIG SET appendonly yes` writes a complete AOF from the loaded data (a full rewrite: the documented way
# to switch from RDB to AOF). The previous AOF and dump.rdb are kept aside until the new ones are complete
# and put back on failure. Output lines `cmx-restore-loaded dbN=keys` report what the snapshot held.
RESTORE_SCRIPT = r"""set -eu
cd /data
port=6399
timeout=${CMX_LOAD_TIMEOUT:-600}

rm -rf appendonlydir.before-restore dump.rdb.before-restore
[ ! -e appendonlydir ] || mv appendonlydir appendonlydir.before-restore
[ ! -e dump.rdb ] || mv dump.rdb dump.rdb.before-restore

finish() {
    status=$?
    redis-cli -p "$port" shutdown nosave >/dev/null 2>&1 || true
    wait 2>/dev/null || true
    if [ "$status" -ne 0 ]; then
        rm -rf appendonlydir dump.rdb
        [ ! -e appendonlydir.before-restore ] || mv appendonlydir.before-restore appendonlydir
        [ ! -e dump.rdb.before-restore ] || mv dump.rdb.before-restore dump.rdb
        echo "cmx-restore: failed, the previous Redis data was put back" >&2
    fi
    chown -R redis:redis /data 2>/dev/null || true
    exit "$status"
}
trap finish EXIT

cp /restore/dump.rdb dump.rdb
redis-server --port "$port" --bind 127.0.0.1 --protected-mode yes --dir /data --dbfilename dump.rdb \
    --appendonly no --save '' --logfile /tmp/redis-restore.log &
server=$!

# PONG once the snapshot is loaded (LOADING errors until then).
waited=0
until [ "$(redis-cli -p "$port" ping 2>/dev/null)" = PONG ]; do
    if ! kill -0 "$server" 2>/dev/null; then
        echo "cmx-restore: Redis could not load the snapshot:" >&2
        tail -n 5 /tmp/redis-restore.log >&2 || true
        exit 1
    fi
    waited=$((waited + 1))
    if [ "$waited" -gt $((timeout * 20)) ]; then
        echo "cmx-restore: Redis did not load the snapshot within ${timeout}s" >&2
        tail -n 5 /tmp/redis-restore.log >&2 || true
        exit 1
    fi
    sleep 0.05
done
redis-cli -p "$port" info keyspace | tr -d '\r' \
    | sed -n 's/^\(db[0-9]*\):keys=\([0-9]*\).*/cmx-restore-loaded \1=\2/p'

redis-cli -p "$port" config set appendonly yes >/dev/null
waited=0
while :; do
    info=$(redis-cli -p "$port" info persistence | tr -d '\r')
    case "$info" in
        *aof_rewrite_in_progress:0*)
            case "$info" in *aof_rewrite_scheduled:0*) break ;; esac ;;
    esac
    waited=$((waited + 1))
    if [ "$waited" -gt $((timeout * 20)) ]; then
        echo "cmx-restore: the AOF rewrite did not finish within ${timeout}s" >&2
        exit 1
    fi
    sleep 0.05
done
case "$info" in
    *aof_enabled:1*aof_last_bgrewrite_status:ok*) ;;
    *)
        echo "cmx-restore: the AOF rewrite failed:" >&2
        echo "$info" | grep aof_ >&2
        tail -n 5 /tmp/redis-restore.log >&2 || true
        exit 1
        ;;
esac
if ! ls appendonlydir/*.manifest >/dev/null 2>&1; then
    echo "cmx-restore: no AOF manifest after the rewrite" >&2
    exit 1
fi
redis-cli -p "$port" shutdown nosave >/dev/null 2>&1 || true
# The server exits after fsyncing the AOF; wait for it before the volume is handed back.
wait || true
rm -rf appendonlydir.before-restore dump.rdb.before-restore
echo "cmx-restore: AOF rebuilt from the snapshot"
"""


def _env(password: str) -> dict[str, str]:
    return {"REDISCLI_AUTH": password} if password else {}


def info(container: str, password: str = "", docker: str = "docker") -> dict:
    """Version, persistence mode and key counts of the running server."""
    result = exec_capture(container, ["redis-cli", "INFO"], env=_env(password), docker=docker)
    text = result.stdout.decode("utf-8", errors="replace")
    if "redis_version:" not in text:  # redis-cli prints NOAUTH / errors on stdout with exit code 0
        raise backup.BackupError(f"redis-cli INFO in {container} failed: {text.strip()[:300]}")
    parsed = backup.parse_redis_info(text)
    return {
        "version": parsed.get("redis_version", ""),
        "aof_enabled": parsed.get("aof_enabled") == "1",
        "keys": backup.redis_key_counts(parsed),
        "raw": parsed,
    }


def _cli(container: str, args: list[str], password: str, docker: str) -> str:
    """One redis-cli command; redis-cli exits 0 on server errors, so error replies are detected here."""
    result = exec_capture(container, ["redis-cli", *args], env=_env(password), docker=docker)
    text = result.stdout.decode("utf-8", errors="replace").strip()
    if text.startswith(("ERR", "NOAUTH", "WRONGPASS", "NOPERM", "MISCONF", "LOADING")):
        raise backup.BackupError(f"redis-cli {' '.join(args)} in {container}: {text[:300]}")
    return text


def _persistence(container: str, password: str, docker: str) -> dict:
    return backup.parse_redis_info(_cli(container, ["INFO", "persistence"], password, docker))


def bgsave(
    container: str, before: dict, password: str = "", docker: str = "docker", timeout: float = 600
) -> None:
    """Start a fresh snapshot (after any save already running) and wait until it is on disk.

    ``before`` is ``INFO`` taken just before: completion is ``rdb_saves`` growing (Redis 7+) or, on
    older servers, ``LASTSAVE`` moving.
    """
    deadline = time.monotonic() + timeout
    lastsave = None if "rdb_saves" in before else _cli(container, ["LASTSAVE"], password, docker)
    while True:
        try:
            _cli(container, ["BGSAVE", "SCHEDULE"], password, docker)
            break
        except backup.BackupError as exc:
            if "already in progress" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.1)  # a save started before ours: wait for it, then take ours
            before = _persistence(container, password, docker)
    while True:
        time.sleep(0.02)
        info = _persistence(container, password, docker)
        if info.get("rdb_bgsave_in_progress") == "0":
            if lastsave is None:
                done = int(info.get("rdb_saves", 0)) > int(before.get("rdb_saves", 0))
            else:
                done = _cli(container, ["LASTSAVE"], password, docker) != lastsave
            if done:
                if info.get("rdb_last_bgsave_status") != "ok":
                    raise backup.BackupError(f"BGSAVE in {container} failed (see the Redis log)")
                return
        if time.monotonic() > deadline:
            raise backup.BackupError(f"BGSAVE in {container} did not finish within {timeout:.0f} s")


def snapshot_path(container: str, password: str, docker: str) -> str:
    """Where the server writes its RDB file (CONFIG GET dir dbfilename), /data/dump.rdb if unreadable."""
    try:
        lines = _cli(container, ["CONFIG", "GET", "dir", "dbfilename"], password, docker).splitlines()
    except backup.BackupError:
        return "/data/dump.rdb"
    values = dict(zip(lines[0::2], lines[1::2], strict=False))
    return posixpath.join(values.get("dir", "/data"), values.get("dbfilename", "dump.rdb"))


def dump(
    container: str, folder: str, password: str = "", docker: str = "docker", timeout: float = 600
) -> dict:
    """Write ``folder/redis/dump.rdb``; returns ``{"files": {...}, "redis": {...manifest section...}}``."""
    os.makedirs(os.path.join(folder, "redis"), mode=0o700, exist_ok=True)
    path = os.path.join(folder, SNAPSHOT_FILE)
    server = info(container, password, docker)
    bgsave(container, server.pop("raw"), password, docker, timeout)
    source = snapshot_path(container, password, docker)
    result = exec_to_file(container, ["cat", source], path, docker=docker)
    backup.check_rdb(path)
    return {
        "files": {SNAPSHOT_FILE: {"size": result.size, "sha256": result.sha256}},
        "redis": {
            "version": server["version"],
            "aof_enabled": server["aof_enabled"],
            # INFO just before the snapshot: informational (writes and expiring keys move it).
            "keys": server["keys"],
            "snapshot_file": SNAPSHOT_FILE,
        },
    }


def _docker(docker: str, *args: str, timeout: float | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [docker, *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def _inspect(docker: str, container: str) -> dict:
    done = _docker(docker, "inspect", "--type", "container", container)
    if done.returncode != 0:
        raise backup.BackupError(f"container {container} not found: {done.stderr.strip()}")
    return json.loads(done.stdout)[0]


def data_mount(details: dict) -> str:
    """``-v`` source of the container's /data: the volume name, or the host path of a bind mount."""
    for mount in details.get("Mounts", []):
        if mount.get("Destination") == "/data":
            return mount.get("Name") or mount["Source"]
    raise backup.BackupError(
        f"{details.get('Name', 'the Redis container')} has no /data mount to restore into"
    )


def loaded_keys(output: str) -> dict[str, int]:
    """``cmx-restore-loaded db0=12`` lines of the restore script, as ``{"db0": 12}``."""
    found = re.findall(r"^cmx-restore-loaded (db[0-9]+)=([0-9]+)$", output, re.MULTILINE)
    return {db: int(keys) for db, keys in sorted(found)}


def wait_ready(docker: str, container: str, password: str, timeout: float) -> None:
    """Until the server answers PING (it answers LOADING while it reads its append-only file)."""
    deadline = time.monotonic() + timeout
    while True:
        answer = exec_capture(
            container, ["redis-cli", "PING"], env=_env(password), docker=docker, check=False
        )
        if answer.rc == 0 and answer.stdout.strip() == b"PONG":
            return
        if time.monotonic() > deadline:
            state = _inspect(docker, container)["State"]
            detail = (answer.stdout or answer.stderr).decode(errors="replace").strip()[:200]
            raise backup.BackupError(
                f"{container} does not answer {timeout:.0f} s after the restore "
                f"({state.get('Status')}: {detail})"
            )
        time.sleep(0.05)


def restore(
    container: str, folder: str, password: str = "", docker: str = "docker", timeout: float = 600
) -> dict:
    """Replace the data of ``container`` by the snapshot ``folder/redis/dump.rdb`` (checksum verified).

    Stop the server, run :data:`RESTORE_SCRIPT` in a one-off container on its data volume, start it
    again (also when the load failed: the script put the previous data back), wait until it answers and
    check that it serves exactly the keys the snapshot held.
    """
    details = _inspect(docker, container)
    image, mount = details["Config"]["Image"], data_mount(details)
    snapshot_dir = os.path.dirname(os.path.join(os.path.abspath(folder), SNAPSHOT_FILE))
    loader = f"{container}-restore"  # one per project, named after its Redis container
    _docker(docker, "rm", "-f", loader)
    stop = _docker(docker, "stop", "--time", "30", container)
    if stop.returncode != 0:
        raise backup.BackupError(f"could not stop {container}: {stop.stderr.strip()}")
    try:
        run = _docker(
            docker, "run", "--rm", "--name", loader, "--network", "none", "--user", "0",
            "--entrypoint", "/bin/sh", "-e", f"CMX_LOAD_TIMEOUT={int(timeout)}",
            "-v", f"{mount}:/data", "-v", f"{snapshot_dir}:/restore:ro",
            image, "-c", RESTORE_SCRIPT,
            timeout=timeout + 60,
        )  # fmt: skip
    finally:
        start = _docker(docker, "start", container)
    if run.returncode != 0:
        detail = (run.stderr.strip() or run.stdout.strip())[-2000:]
        raise backup.BackupError(f"loading the Redis snapshot failed, previous data kept: {detail}")
    if start.returncode != 0:
        raise backup.BackupError(f"could not start {container} again: {start.stderr.strip()}")
    loaded = loaded_keys(run.stdout)
    wait_ready(docker, container, password, timeout)
    served = info(container, password, docker)
    if served["keys"] != loaded:
        raise backup.BackupError(
            f"Redis does not serve the restored snapshot: the snapshot held {loaded or 'no keys'}, "
            f"{container} serves {served['keys'] or 'no keys'}"
        )
    return {
        "loaded": loaded,
        "keys": served["keys"],
        "version": served["version"],
        "aof_enabled": served["aof_enabled"],
    }
