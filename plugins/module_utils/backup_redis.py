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

import hashlib
import json
import os
import posixpath
import re
import struct
import subprocess
import time

from ansible_collections.cleanmatex.infra.plugins.module_utils import backup, probes
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
            "format": "rdb",
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


# --- keys format: a Redis reached only over the network (external, managed) ------------------------------
#
# A managed Redis (ElastiCache) has no container to copy a snapshot from and refuses BGSAVE and SYNC, so
# the backup walks the keyspace instead: SCAN every logical database that has keys, PTTL + DUMP of each
# key (pipelined), into ``redis/keys.bin``. Not a point-in-time snapshot: a key written during the walk
# may or may not be in it (each key is copied as it was at its own moment), as with any SCAN.
#
# File: KEYS_MAGIC, then one record per key -
#   b"K", >H db, >q absolute expiry (unix ms, -1: none), >I key length, >Q payload length, key, payload
# (payload: the DUMP serialization, RDB-version specific), then b"E" and >Q the number of records: a file
# cut short has no trailer and is refused.
# Restore: RESTORE key <expiry> payload REPLACE ABSTTL (0: no expiry), after FLUSHDB of every database the
# backup or the server has keys in, so the server ends up holding what the backup holds (as with a snapshot).

KEYS_FILE = "redis/keys.bin"
KEYS_MAGIC = b"CMX-REDIS-KEYS 1\n"
_RECORD = struct.Struct(">HqIQ")
_TRAILER = struct.Struct(">Q")
SCAN_COUNT = 1000
# Pipelined commands per round trip, and payload bytes per RESTORE round trip.
PIPELINE_KEYS = 200
PIPELINE_BYTES = 8 << 20
RECV_SIZE = 1 << 20
PROBE_KEY = "cmx:restore-probe:"


class RedisRestoreError(backup.BackupError):
    """A keys restore failed; ``changed`` says whether the server's data was touched already."""

    def __init__(self, message: str, changed: bool):
        super().__init__(message)
        self.changed = changed


class _Patience:
    """A probes.RedisClient deadline that gives every socket operation ``seconds`` afresh."""

    def __init__(self, seconds: float):
        self.seconds = max(float(seconds), 0.001)

    def remaining(self) -> float:
        return self.seconds


class Connection:
    """probes.RedisClient plus pipelining (many commands, then their replies in order)."""

    def __init__(
        self,
        host: str,
        port: int,
        password: str = "",
        tls: bool = False,
        ca_file: str = "",
        timeout: float = 600,
    ):
        where = f"Redis at {host}:{port}{' (TLS)' if tls else ''}"
        self.where = where
        try:
            self.client = probes.RedisClient(host, port, _Patience(timeout), tls=tls, ca_file=ca_file or None)
        except (OSError, ValueError) as exc:
            raise backup.BackupError(f"cannot connect to {where}: {probes.describe_error(exc)}") from exc
        self.buf = bytearray()
        self.pos = 0
        if password:
            self.check(self.command("AUTH", password), "AUTH")

    def command(self, *args):
        return self.pipeline([args])[0]

    def check(self, reply, what: str):
        if isinstance(reply, probes.RespError):
            raise backup.BackupError(f"{what} on {self.where}: {reply.text}")
        return reply

    def _reply(self):
        while True:
            try:
                value, self.pos = probes._parse_at(
                    self.buf, self.pos
                )  # the RESP parser of probes, from a position
                return value
            except probes._Incomplete:
                del self.buf[: self.pos]
                self.pos = 0
                chunk = self.client.sock.recv(RECV_SIZE)
                if not chunk:
                    raise backup.BackupError(f"{self.where} closed the connection") from None
                self.buf += chunk

    def pipeline(self, commands) -> list:
        """Send every command, then read as many replies (errors are returned as probes.RespError)."""
        sock = self.client.sock
        sock.settimeout(self.client.deadline.remaining())
        try:
            sock.sendall(b"".join(probes.encode_command(*args) for args in commands))
            return [self._reply() for _ in commands]
        except (OSError, probes.RespProtocolError) as exc:
            raise backup.BackupError(f"{self.where}: {probes.describe_error(exc)}") from exc

    def keyspace(self) -> dict[str, int]:
        text = self.check(self.command("INFO", "keyspace"), "INFO keyspace")
        return backup.redis_key_counts(backup.parse_redis_info(_text(text)))

    def close(self) -> None:
        self.client.close()


def _text(value) -> str:
    return value.decode("utf-8", errors="replace") if isinstance(value, (bytes, bytearray)) else str(value)


def _db_number(name: str) -> int:
    return int(name[2:])


def network_info(
    host: str, port: int, password: str = "", tls: bool = False, ca_file: str = "", timeout: float = 600
) -> dict:
    """Version, persistence mode and key counts of a Redis reached over the network."""
    connection = Connection(host, port, password, tls, ca_file, timeout)
    try:
        return _server_info(connection)
    finally:
        connection.close()


def _server_info(connection: Connection) -> dict:
    text = _text(connection.check(connection.command("INFO"), "INFO"))
    parsed = backup.parse_redis_info(text)
    return {
        "version": parsed.get("redis_version", ""),
        "aof_enabled": parsed.get("aof_enabled") == "1",
        "keys": backup.redis_key_counts(parsed),
    }


class _HashingWriter:
    def __init__(self, handle):
        self.handle, self.digest, self.size = handle, hashlib.sha256(), 0

    def write(self, data: bytes) -> None:
        self.handle.write(data)
        self.digest.update(data)
        self.size += len(data)


def _write_batch(connection: Connection, writer: _HashingWriter, db: int, keys: list, counts: dict) -> None:
    replies = connection.pipeline([args for key in keys for args in (("PTTL", key), ("DUMP", key))])
    now_ms = int(time.time() * 1000)
    for key, pttl, payload in zip(keys, replies[0::2], replies[1::2], strict=True):
        connection.check(pttl, "PTTL")
        connection.check(payload, "DUMP")
        if payload is None or pttl == -2:
            continue  # deleted or expired since the SCAN
        expires = -1 if pttl < 0 else now_ms + pttl
        writer.write(b"K" + _RECORD.pack(db, expires, len(key), len(payload)))
        writer.write(bytes(key))
        writer.write(bytes(payload))
        name = f"db{db}"
        counts["keys"][name] = counts["keys"].get(name, 0) + 1
        if expires >= 0:
            counts["expiring"][name] = counts["expiring"].get(name, 0) + 1


def dump_keys(
    host: str,
    port: int,
    folder: str,
    password: str = "",
    tls: bool = False,
    ca_file: str = "",
    timeout: float = 600,
) -> dict:
    """Write ``folder/redis/keys.bin`` (every key of every database: DUMP, absolute expiry) over the
    network; returns ``{"files": {...}, "redis": {...manifest section, format "keys"...}}``."""
    os.makedirs(os.path.join(folder, "redis"), mode=0o700, exist_ok=True)
    path = os.path.join(folder, KEYS_FILE)
    connection = Connection(host, port, password, tls, ca_file, timeout)
    counts: dict = {"keys": {}, "expiring": {}}
    try:
        server = _server_info(connection)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            writer = _HashingWriter(handle)
            writer.write(KEYS_MAGIC)
            for name in sorted(server["keys"], key=_db_number):
                db = _db_number(name)
                connection.check(connection.command("SELECT", db), f"SELECT {db}")
                seen: set = set()
                cursor = b"0"
                while True:
                    reply = connection.check(connection.command("SCAN", cursor, "COUNT", SCAN_COUNT), "SCAN")
                    cursor, found = bytes(reply[0]), reply[1]
                    fresh = [bytes(key) for key in found if bytes(key) not in seen]
                    seen.update(fresh)
                    for start in range(0, len(fresh), PIPELINE_KEYS):
                        _write_batch(connection, writer, db, fresh[start : start + PIPELINE_KEYS], counts)
                    if cursor == b"0":
                        break
            records = sum(counts["keys"].values())
            writer.write(b"E" + _TRAILER.pack(records))
            handle.flush()
            os.fsync(handle.fileno())
    finally:
        connection.close()
    return {
        "files": {KEYS_FILE: {"size": writer.size, "sha256": writer.digest.hexdigest()}},
        "redis": {
            "format": "keys",
            "version": server["version"],
            "aof_enabled": server["aof_enabled"],
            # Exact: the keys in the file, per database (and how many of them have a TTL).
            "keys": dict(sorted(counts["keys"].items())),
            "expiring": dict(sorted(counts["expiring"].items())),
            "keys_file": KEYS_FILE,
        },
    }


def read_keys(path: str):
    """Records of a keys file, one by one: (db, expires_ms, key, payload). Raises BackupError on a file that
    is not one, is cut short, or whose trailer count differs."""
    with open(path, "rb") as handle:
        if handle.read(len(KEYS_MAGIC)) != KEYS_MAGIC:
            raise backup.BackupError(f"{path} is not a Redis keys backup (bad header)")
        records = 0
        while True:
            kind = handle.read(1)
            if kind == b"K":
                head = handle.read(_RECORD.size)
                if len(head) == _RECORD.size:
                    db, expires, key_size, payload_size = _RECORD.unpack(head)
                    key, payload = handle.read(key_size), handle.read(payload_size)
                    if len(key) == key_size and len(payload) == payload_size:
                        records += 1
                        yield db, expires, key, payload
                        continue
            elif kind == b"E":
                tail = handle.read(_TRAILER.size)
                if len(tail) == _TRAILER.size and handle.read(1) == b"":
                    if _TRAILER.unpack(tail)[0] != records:
                        raise backup.BackupError(
                            f"{path}: {records} records, its trailer says {_TRAILER.unpack(tail)[0]}"
                        )
                    return
            raise backup.BackupError(f"{path} is truncated or damaged after {records} records")


def scan_keys_file(path: str) -> dict:
    """A first pass over a keys file: records per database, with and without expiry (checks its structure)."""
    keys: dict[str, int] = {}
    expiring: dict[str, int] = {}
    for db, expires, _key, _payload in read_keys(path):
        keys[f"db{db}"] = keys.get(f"db{db}", 0) + 1
        if expires >= 0:
            expiring[f"db{db}"] = expiring.get(f"db{db}", 0) + 1
    return {"keys": keys, "expiring": expiring}


def _restore_args(key: bytes, expires: int, payload: bytes) -> tuple:
    if expires < 0:
        return ("RESTORE", key, 0, payload, "REPLACE")
    return ("RESTORE", key, expires, payload, "REPLACE", "ABSTTL")


def restore_keys(
    host: str,
    port: int,
    folder: str,
    section: dict,
    password: str = "",
    tls: bool = False,
    ca_file: str = "",
    timeout: float = 600,
) -> dict:
    """Put the keys of ``folder/<section.keys_file>`` (checksum verified) into the Redis at host:port.

    Before anything is changed: the file's records match the manifest's key counts, and the server accepts
    the backup's DUMP payloads (one is restored under a probe key with a TTL and deleted again: a payload of
    a newer Redis is refused here). Then every database the backup or the server has keys in is flushed
    (FLUSHDB) and the keys are RESTOREd with their absolute expiry (keys already expired are skipped);
    every RESTORE must answer OK, and afterwards every database holds at least the restored keys without a
    TTL (clients may add keys meanwhile, keys with a TTL may expire). A failure after the first FLUSHDB
    raises RedisRestoreError(changed=True): the message says what was flushed and restored so far.
    """
    path = os.path.join(folder, section.get("keys_file") or KEYS_FILE)
    found = scan_keys_file(path)
    expected = {db: int(count) for db, count in (section.get("keys") or {}).items() if int(count)}
    if found["keys"] != expected:
        raise RedisRestoreError(
            f"nothing was changed: {section.get('keys_file')} holds {found['keys']} keys, the manifest says "
            f"{expected}",
            changed=False,
        )
    connection = Connection(host, port, password, tls, ca_file, timeout)
    flushed: list[str] = []
    restored: dict[str, int] = {}
    expired: dict[str, int] = {}
    try:
        before = connection.keyspace()
        first = next(read_keys(path), None)
        if first is not None:
            db, _expires, _key, payload = first
            connection.check(connection.command("SELECT", db), f"SELECT {db}")
            probe = PROBE_KEY + os.urandom(8).hex()
            answer = connection.command("RESTORE", probe, 60000, payload, "REPLACE")
            if isinstance(answer, probes.RespError):
                raise RedisRestoreError(
                    f"nothing was changed: {connection.where} refuses the backup's keys (taken from Redis "
                    f"{section.get('version') or '?'}): {answer.text}",
                    changed=False,
                )
            connection.check(connection.command("DEL", probe), "DEL")
        databases = sorted(set(found["keys"]) | set(before), key=_db_number)
        for name in databases:
            connection.check(connection.command("SELECT", _db_number(name)), f"SELECT {name}")
            connection.check(connection.command("FLUSHDB"), f"FLUSHDB ({name})")
            flushed.append(name)
        current, batch, size = None, [], 0

        def send():
            replies = connection.pipeline(batch)
            failure = ""
            for args, reply in zip(batch, replies, strict=True):
                if args[0] == "SELECT":
                    connection.check(reply, " ".join(map(str, args)))
                    continue
                if isinstance(reply, probes.RespError) or reply != "OK":
                    # The rest of the pipeline ran all the same: counted, then the first error is raised.
                    text = reply.text if isinstance(reply, probes.RespError) else repr(reply)
                    failure = failure or f"RESTORE of a key of db{current} answered {text}"
                    continue
                restored[f"db{current}"] = restored.get(f"db{current}", 0) + 1
            if failure:
                raise backup.BackupError(failure)
            batch.clear()

        for db, expires, key, payload in read_keys(path):
            if db != current:
                if batch:
                    send()
                current, size = db, 0
                batch.append(("SELECT", db))
            if 0 <= expires <= int(time.time() * 1000):
                expired[f"db{db}"] = expired.get(f"db{db}", 0) + 1
                continue
            batch.append(_restore_args(key, expires, payload))
            size += len(payload)
            if len(batch) >= PIPELINE_KEYS or size >= PIPELINE_BYTES:
                send()
                size = 0
        if batch:
            send()
        counts = {}
        for name in databases:
            connection.check(connection.command("SELECT", _db_number(name)), f"SELECT {name}")
            counts[name] = int(connection.check(connection.command("DBSIZE"), "DBSIZE"))
        lost = []
        for name, total in sorted(found["keys"].items()):
            persistent = total - found["expiring"].get(name, 0)
            if counts.get(name, 0) < persistent:
                lost.append(f"{name}: {counts.get(name, 0)} keys, the backup has {persistent} without a TTL")
        if lost:
            raise backup.BackupError("keys missing after the restore: " + "; ".join(lost))
        server = _server_info(connection)
    except RedisRestoreError:
        raise
    except backup.BackupError as exc:
        if not flushed:
            raise RedisRestoreError(f"nothing was changed: {exc}", changed=False) from exc
        done = sum(restored.values())
        raise RedisRestoreError(
            f"PARTIAL Redis restore: databases {', '.join(flushed)} were flushed and {done} of "
            f"{sum(found['keys'].values())} keys restored when it failed: {exc}. Run the restore again (it "
            "flushes those databases and restores every key again)",
            changed=True,
        ) from exc
    finally:
        connection.close()
    return {
        "format": "keys",
        "loaded": dict(sorted(restored.items())),
        "expired": dict(sorted(expired.items())),
        "checked": counts,
        "keys": server["keys"],
        "version": server["version"],
        "aof_enabled": server["aof_enabled"],
    }
