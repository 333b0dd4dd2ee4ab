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
dump.rdb, so the snapshot is loaded by a one-off server started with ``--appendonly no`` beside the
stopped server's data, converted with ``CONFIG SET appendonly yes`` (a full AOF rewrite), checked by a
second start from that AOF alone, and only then swapped in and handed back to the stack's Redis.
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
# Seconds the loader gets to put the previous data back after a stop (SIGTERM), before it is killed.
LOADER_STOP_SECONDS = 20
# Seconds on top of the load timeout before the docker CLI of the loader is given up.
LOADER_GRACE_SECONDS = 60

# Runs in a one-off container (image of the Redis container, no network, as root) with the stopped
# server's data volume on /data and the backup's redis/ folder on /restore (read-only).
# With `appendonly yes` Redis 7+ loads appendonlydir/ at start and ignores dump.rdb; with the AOF simply
# removed it would start EMPTY. So everything is built in /data/cmx-restore.new, never touching the live
# files: a temporary server loads the snapshot with --appendonly no, `CONFIG SET appendonly yes` writes a
# complete AOF from it (a full rewrite: the documented way to switch from RDB to AOF), and a second start
# from that AOF alone - what the stack's Redis will do - must hold the same keys (keys without a TTL
# exactly; keys with one may only have expired meanwhile). Only then are appendonlydir/ and dump.rdb
# swapped in by renames, the previous ones kept in cmx-restore.old until the swap is complete.
# A failure or a stop (SIGTERM) puts the previous files back; so does the next run, or CMX_RESTORE_MODE=
# recover, after a kill. Output lines `cmx-restore-loaded dbN=keys` report what the snapshot held,
# `cmx-restore-checked dbN=keys` what the rebuilt AOF holds.
RESTORE_SCRIPT = r"""set -eu
data=${CMX_DATA_DIR:-/data}
snapshot=${CMX_SNAPSHOT_DIR:-/restore}/dump.rdb
port=${CMX_LOAD_PORT:-6399}
timeout=${CMX_LOAD_TIMEOUT:-600}
deadline=$(( $(date +%s) + timeout ))
new=cmx-restore.new
server=
cd "$data"

# Undo an interrupted swap (cmx-restore.old holds what was live; .complete: all of it) and forget a
# half-built copy. A no-op after a clean run.
recover() {
    if [ -d cmx-restore.old ]; then
        for item in appendonlydir dump.rdb; do
            if [ -e "cmx-restore.old/$item" ]; then
                rm -rf "$item"
                mv "cmx-restore.old/$item" "$item"
            elif [ -e cmx-restore.old/.complete ]; then
                rm -rf "$item"
            fi
        done
        rm -rf cmx-restore.old
        echo "cmx-restore: an interrupted swap was undone, the previous Redis data is back" >&2
    fi
    rm -rf "$new" cmx-restore.trash
}
if [ "${CMX_RESTORE_MODE:-load}" = recover ]; then
    recover
    chown -R redis:redis "$data" 2>/dev/null || true
    exit 0
fi

stop_server() {
    [ -n "$server" ] || return 0
    redis-cli -p "$port" shutdown nosave >/dev/null 2>&1 || kill "$server" 2>/dev/null || true
    wait "$server" 2>/dev/null || true
    server=
}
fail() {
    echo "cmx-restore: $*" >&2
    tail -n 5 "$data/$new/redis.log" >&2 2>/dev/null || true
    exit 1
}
finish() {
    status=$?
    trap - EXIT
    stop_server
    if [ "$status" -ne 0 ]; then
        recover
        echo "cmx-restore: failed, the previous Redis data was kept" >&2
    fi
    chown -R redis:redis "$data" 2>/dev/null || true
    exit "$status"
}
trap finish EXIT
trap 'exit 143' TERM INT HUP

start_server() {
    redis-server --port "$port" --bind 127.0.0.1 --protected-mode yes --dir "$data/$new" \
        --dbfilename dump.rdb --save '' --logfile "$data/$new/redis.log" "$@" &
    server=$!
}
# PONG once the data is loaded (LOADING errors until then).
wait_ready() {
    until [ "$(redis-cli -p "$port" ping 2>/dev/null)" = PONG ]; do
        kill -0 "$server" 2>/dev/null || fail "Redis could not load $1"
        [ "$(date +%s)" -lt "$deadline" ] || fail "loading $1 did not finish within ${timeout}s"
        sleep 0.05
    done
}
# "db keys expires" per database
keyspace() {
    redis-cli -p "$port" info keyspace | tr -d '\r' \
        | sed -n 's/^\(db[0-9]*\):keys=\([0-9]*\),expires=\([0-9]*\).*/\1 \2 \3/p'
}
persistent() {
    echo "$1" | while read -r db keys expires; do
        [ -z "$db" ] || [ $((keys - expires)) -eq 0 ] || echo "$db $((keys - expires))"
    done
}
# Same keys without a TTL; at most as many keys per database (some with a TTL may have expired).
same_keys() {
    [ "$(persistent "$1")" = "$(persistent "$2")" ] || return 1
    echo "$2" | while read -r db keys expires; do
        [ -n "$db" ] || continue
        before=$(echo "$1" | sed -n "s/^$db \([0-9]*\) .*/\1/p")
        [ "$keys" -le "${before:-0}" ] || exit 1
    done
}

recover
mkdir "$new"
cp "$snapshot" "$new/dump.rdb"
start_server --appendonly no
wait_ready "the snapshot"
loaded=$(keyspace)
echo "$loaded" | sed -n 's/^\(db[0-9]*\) \([0-9]*\) .*/cmx-restore-loaded \1=\2/p'

redis-cli -p "$port" config set appendonly yes >/dev/null
while :; do
    info=$(redis-cli -p "$port" info persistence | tr -d '\r')
    case "$info" in
        *aof_rewrite_in_progress:0*)
            case "$info" in *aof_rewrite_scheduled:0*) break ;; esac ;;
    esac
    [ "$(date +%s)" -lt "$deadline" ] || fail "the AOF rewrite did not finish within ${timeout}s"
    sleep 0.05
done
case "$info" in
    *aof_enabled:1*aof_last_bgrewrite_status:ok*) ;;
    *) fail "the AOF rewrite failed: $(echo "$info" | grep aof_ | tr '\n' ' ')" ;;
esac
ls "$new"/appendonlydir/*.manifest >/dev/null 2>&1 || fail "no AOF manifest after the rewrite"
# The server exits after fsyncing the AOF.
stop_server

# Start from the new AOF alone, as the stack's Redis will, and compare.
rm "$new/dump.rdb"
start_server --appendonly yes
wait_ready "the rebuilt AOF"
checked=$(keyspace)
stop_server
echo "$checked" | sed -n 's/^\(db[0-9]*\) \([0-9]*\) .*/cmx-restore-checked \1=\2/p'
same_keys "$loaded" "$checked" \
    || fail "the rebuilt AOF does not hold the snapshot's keys (loaded: $loaded; from the AOF: $checked)"
cp "$snapshot" "$new/dump.rdb"

# Swap by renames; cmx-restore.old -> cmx-restore.trash is the commit point.
rm -rf cmx-restore.old
mkdir cmx-restore.old
for item in appendonlydir dump.rdb; do
    [ ! -e "$item" ] || mv "$item" cmx-restore.old/
done
touch cmx-restore.old/.complete
mv "$new/appendonlydir" appendonlydir
mv "$new/dump.rdb" dump.rdb
mv cmx-restore.old cmx-restore.trash
rm -rf cmx-restore.trash "$new"
echo "cmx-restore: AOF rebuilt from the snapshot and checked"
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


def loaded_keys(output: str, kind: str = "loaded") -> dict[str, int]:
    """``cmx-restore-<kind> db0=12`` lines of the restore script, as ``{"db0": 12}``."""
    found = re.findall(rf"^cmx-restore-{kind} (db[0-9]+)=([0-9]+)$", output, re.MULTILINE)
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


def end_loader(docker: str, loader: str, wait: float = 60) -> bool:
    """Stop the loader container (SIGTERM: its trap puts the previous data back), kill it if it does not
    stop, and wait until it is gone. True once no container of that name exists any more."""
    _docker(docker, "stop", "--time", str(LOADER_STOP_SECONDS), loader, timeout=LOADER_STOP_SECONDS + wait)
    _docker(docker, "rm", "-f", loader, timeout=wait)  # --rm may already be removing it
    deadline = time.monotonic() + wait
    while _docker(docker, "inspect", "--type", "container", loader, timeout=wait).returncode == 0:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def _loader_argv(loader: str, image: str, mount: str, snapshot_dir: str, *env: str) -> list[str]:
    options = ["--rm", "--name", loader, "--network", "none", "--user", "0", "--entrypoint", "/bin/sh"]
    for value in env:
        options += ["-e", value]
    volumes = ["-v", f"{mount}:/data", "-v", f"{snapshot_dir}:/restore:ro"]
    return ["run", *options, *volumes, image, "-c", RESTORE_SCRIPT]


def restore(
    container: str, folder: str, password: str = "", docker: str = "docker", timeout: float = 600
) -> dict:
    """Replace the data of ``container`` by the snapshot ``folder/redis/dump.rdb`` (checksum verified).

    Stop the server, run :data:`RESTORE_SCRIPT` in a one-off container on its data volume (it loads,
    rebuilds the AOF and checks it before swapping it in), start the server again - also when the load
    failed: the previous data is back - and wait until it answers. Never two servers on the volume: the
    server starts only once the loader container is gone.
    """
    details = _inspect(docker, container)
    image, mount = details["Config"]["Image"], data_mount(details)
    snapshot_dir = os.path.dirname(os.path.join(os.path.abspath(folder), SNAPSHOT_FILE))
    loader = f"{container}-restore"  # one per project, named after its Redis container
    if not end_loader(docker, loader):
        raise backup.BackupError(f"a loader container {loader} of an earlier restore cannot be removed")
    stop = _docker(docker, "stop", "--time", "30", container)
    if stop.returncode != 0:
        raise backup.BackupError(f"could not stop {container}: {stop.stderr.strip()}")
    argv = _loader_argv(loader, image, mount, snapshot_dir, f"CMX_LOAD_TIMEOUT={int(timeout)}")
    try:
        run = _docker(docker, *argv, timeout=timeout + LOADER_GRACE_SECONDS)
    except subprocess.TimeoutExpired:
        # Only the docker CLI was killed; the loader may still be running on the volume.
        if not end_loader(docker, loader):
            raise backup.BackupError(
                f"loading the Redis snapshot did not finish within {timeout:.0f} s and the loader container "
                f"{loader} could not be removed, so {container} was NOT started again (two servers must "
                f"never share its data): remove it (docker rm -f {loader}), then run the restore again"
            ) from None
        recover = _loader_argv(loader, image, mount, snapshot_dir, "CMX_RESTORE_MODE=recover")
        recovered = _docker(docker, *recover, timeout=LOADER_GRACE_SECONDS)
        if recovered.returncode != 0:
            raise backup.BackupError(
                f"loading the Redis snapshot did not finish within {timeout:.0f} s; putting the previous "
                f"data back failed ({recovered.stderr.strip()[-500:]}), so {container} was NOT started again"
            ) from None
        start = _docker(docker, "start", container)
        started = "" if start.returncode == 0 else f"; could not start {container}: {start.stderr.strip()}"
        raise backup.BackupError(
            f"loading the Redis snapshot did not finish within {timeout:.0f} s: the loader was stopped, "
            f"previous data kept{started}"
        ) from None
    start = _docker(docker, "start", container)
    if run.returncode != 0:
        detail = (run.stderr.strip() or run.stdout.strip())[-2000:]
        started = "" if start.returncode == 0 else f"; could not start {container}: {start.stderr.strip()}"
        raise backup.BackupError(f"loading the Redis snapshot failed, previous data kept: {detail}{started}")
    replaced = "the Redis data was replaced by the snapshot (AOF rebuilt and checked), but"
    if start.returncode != 0:
        raise backup.BackupError(f"{replaced} {container} did not start: {start.stderr.strip()}")
    try:
        wait_ready(docker, container, password, timeout)
        served = info(container, password, docker)
    except backup.BackupError as exc:
        raise backup.BackupError(f"{replaced} {exc}") from exc
    # Informational: clients may write and keys expire as soon as the server is back.
    return {
        "loaded": loaded_keys(run.stdout),
        "checked": loaded_keys(run.stdout, "checked"),
        "keys": served["keys"],
        "version": served["version"],
        "aof_enabled": served["aof_enabled"],
    }
