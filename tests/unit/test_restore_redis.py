"""Redis restore and snapshot: faults injected into the real loader script and real servers (issue 16,
items 4 and 12).

The loader script (``backup_redis.RESTORE_SCRIPT``, run in a one-off container in production) runs here
with ``sh`` and Debian's redis-server on a temporary "volume" folder:
* it swaps in an AOF only after a second start from that AOF alone held the snapshot's keys;
* an unreadable snapshot, a rebuilt AOF that lost keys, a stop (SIGTERM) or its own timeout keep the
  previous data; a kill in the middle of the swap is undone by the next run (or the recover mode).
``bgsave`` runs against a real server through a stand-in ``docker`` (``docker exec`` -> local program):
a BGSAVE already running is waited for and followed by a fresh one; a BGSAVE that takes too long fails.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis
from ansible_collections.cleanmatex.infra.plugins.module_utils import backup, backup_redis

REDIS_SERVER = shutil.which("redis-server")
REDIS_CLI = shutil.which("redis-cli")
pytestmark = pytest.mark.skipif(
    not (REDIS_SERVER and REDIS_CLI), reason="redis-server not installed (apt-get install redis-server)"
)

PREVIOUS = {0: {b"prev:a": b"1", b"prev:b": b"2"}, 3: {b"prev:other-db": b"x"}}
SNAPSHOT = {
    0: {f"snap:{n}".encode(): os.urandom(32) for n in range(40)},
    1: {b"snap:db1": b"one"},
}
TTL_KEY = b"snap:with-ttl"  # in db0, expires in an hour: a key with a TTL survives the check


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def port_open(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


class Server:
    """redis-server on ``folder`` as the stack runs it (appendonly yes), or for a snapshot (no AOF)."""

    def __init__(self, folder: Path, appendonly: str = "yes", binary: str | None = None):
        self.folder, self.port = folder, free_port()
        argv = [binary or REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(folder)]
        argv += ["--appendonly", appendonly, "--save", "", "--protected-mode", "no", "--loglevel", "warning"]
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 30
        while True:
            try:
                if self.client().ping():
                    break
            except redis.exceptions.RedisError:
                pass
            assert self.proc.poll() is None, self.proc.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.02)

    def client(self, db: int = 0) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, db=db)

    def stop(self) -> None:
        self.proc.terminate()  # SIGTERM: a clean shutdown, the AOF is fsync'ed
        self.proc.wait(30)


def fill(server: Server, data: dict) -> None:
    for db, keys in data.items():
        client = server.client(db)
        for key, value in keys.items():
            client.set(key, value)


def content(folder: Path) -> dict:
    """What the stack's Redis would serve from ``folder``: {db: {key: value}}."""
    server = Server(folder)
    try:
        found = {}
        for db in range(16):
            client = server.client(db)
            keys = {key: client.get(key) for key in client.scan_iter()}
            if keys:
                found[db] = keys
        return found
    finally:
        server.stop()


@pytest.fixture
def volume(tmp_path) -> Path:
    """The stack's data volume with the previous data (an AOF, as the stack writes it)."""
    folder = tmp_path / "volume"
    folder.mkdir()
    server = Server(folder)
    fill(server, PREVIOUS)
    server.stop()
    assert (folder / "appendonlydir").is_dir()
    return folder


@pytest.fixture
def snapshot(tmp_path) -> Path:
    """A backup's redis/ folder: dump.rdb of a server holding SNAPSHOT (and TTL_KEY, one hour)."""
    folder = tmp_path / "restore"
    folder.mkdir()
    server = Server(folder, appendonly="no")
    fill(server, SNAPSHOT)
    server.client().set(TTL_KEY, b"later", ex=3600)
    server.client().save()
    server.stop()
    return folder


def expected_snapshot() -> dict:
    return {0: {**SNAPSHOT[0], TTL_KEY: b"later"}, 1: SNAPSHOT[1]}


def loader_env(volume: Path, snapshot: Path, wrappers: Path | None = None, **extra: str) -> dict:
    env = dict(os.environ, CMX_DATA_DIR=str(volume), CMX_SNAPSHOT_DIR=str(snapshot))
    env.update({"CMX_LOAD_PORT": str(free_port()), "CMX_LOAD_TIMEOUT": "60", **extra})
    if wrappers:
        env["PATH"] = f"{wrappers}:{env['PATH']}"
    return env


# The stack's images: Debian (dash) when built, Alpine (busybox ash) when pulled.
SHELLS = [["sh"]] + ([[shutil.which("busybox"), "sh"]] if shutil.which("busybox") else [])


def run_loader(volume, snapshot, wrappers=None, shell=("sh",), **extra) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*shell, "-c", backup_redis.RESTORE_SCRIPT],
        env=loader_env(volume, snapshot, wrappers, **extra),
        capture_output=True,
        text=True,
        timeout=120,
    )


def leftovers(volume: Path) -> list[str]:
    return sorted(path.name for path in volume.iterdir() if path.name.startswith("cmx-restore"))


def wrapper(folder: Path, name: str, body: str) -> Path:
    """A ``name`` program in ``folder`` (put first on PATH) that may misbehave, then runs the real one."""
    folder.mkdir(exist_ok=True)
    real = shutil.which(name)
    script = folder / name
    head = f"#!{sys.executable}\nimport os, sys\nargs = sys.argv[1:]\n"
    script.write_text(f"{head}{body}\nos.execv({real!r}, [{real!r}, *args])\n")
    script.chmod(0o755)
    return folder


# --- the loader ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("shell", SHELLS, ids=lambda shell: os.path.basename(shell[0]))
def test_loader_swaps_in_an_aof_checked_by_a_second_start(volume, snapshot, shell):
    run = run_loader(volume, snapshot, shell=shell)

    assert run.returncode == 0, run.stderr
    assert "cmx-restore: AOF rebuilt from the snapshot and checked" in run.stdout
    assert backup_redis.loaded_keys(run.stdout) == {"db0": 41, "db1": 1}
    assert backup_redis.loaded_keys(run.stdout, "checked") == {"db0": 41, "db1": 1}
    assert leftovers(volume) == []
    assert (volume / "appendonlydir").is_dir() and (volume / "dump.rdb").is_file()
    assert content(volume) == expected_snapshot()


def test_unreadable_snapshot_keeps_the_previous_data(volume, snapshot):
    rdb = snapshot / "dump.rdb"
    rdb.write_bytes(b"REDIS0011" + os.urandom(rdb.stat().st_size))

    run = run_loader(volume, snapshot)

    assert run.returncode != 0
    assert "Redis could not load the snapshot" in run.stderr
    assert "the previous Redis data was kept" in run.stderr
    assert leftovers(volume) == []
    assert content(volume) == PREVIOUS


def test_rebuilt_aof_that_lost_keys_is_refused(volume, snapshot, tmp_path):
    """The second start finds no AOF (lost between the rewrite and the check): the swap never happens."""
    lose_the_aof = (
        "if '--appendonly' in args and args[args.index('--appendonly') + 1] == 'yes':\n"
        "    import shutil\n"
        "    shutil.rmtree(os.path.join(args[args.index('--dir') + 1], 'appendonlydir'))"
    )
    wrappers = wrapper(tmp_path / "bin", "redis-server", lose_the_aof)

    run = run_loader(volume, snapshot, wrappers)

    assert run.returncode != 0
    assert "the rebuilt AOF does not hold the snapshot's keys" in run.stderr, run.stderr
    assert "the previous Redis data was kept" in run.stderr
    assert leftovers(volume) == []
    assert content(volume) == PREVIOUS


def _stalled_loader(volume, snapshot, tmp_path, shell=("sh",), **extra) -> tuple[subprocess.Popen, int]:
    """A loader whose temporary server looks as if it were still loading (PING answers LOADING)."""
    stall = (
        "if args[-1:] == ['ping']:\n    print('LOADING Redis is loading the dataset in memory'); sys.exit(0)"
    )
    env = loader_env(volume, snapshot, wrapper(tmp_path / "bin", "redis-cli", stall), **extra)
    proc = subprocess.Popen(
        [*shell, "-c", backup_redis.RESTORE_SCRIPT],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    port = int(env["CMX_LOAD_PORT"])
    deadline = time.monotonic() + 30
    while not port_open(port):
        assert proc.poll() is None and time.monotonic() < deadline, "the temporary server did not start"
        time.sleep(0.02)
    return proc, port


@pytest.mark.parametrize("shell", SHELLS, ids=lambda shell: os.path.basename(shell[0]))
def test_stopped_loader_puts_the_previous_data_back(volume, snapshot, tmp_path, shell):
    """docker stop sends SIGTERM: the loader stops its server and puts the previous data back."""
    proc, port = _stalled_loader(volume, snapshot, tmp_path, shell)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=30)

    assert proc.returncode == 143
    assert "the previous Redis data was kept" in stderr
    assert not port_open(port), "the temporary server still runs"
    assert leftovers(volume) == []
    assert content(volume) == PREVIOUS


def test_loader_timeout_keeps_the_previous_data(volume, snapshot, tmp_path):
    proc, port = _stalled_loader(volume, snapshot, tmp_path, CMX_LOAD_TIMEOUT="1")
    _, stderr = proc.communicate(timeout=60)

    assert proc.returncode == 1
    assert "loading the snapshot did not finish within 1s" in stderr
    assert "the previous Redis data was kept" in stderr
    assert not port_open(port)
    assert content(volume) == PREVIOUS


@pytest.mark.parametrize("stage", ["moving-aside", "complete", "committed"])
def test_a_swap_killed_halfway_is_undone(volume, snapshot, tmp_path, stage):
    """States a SIGKILL can leave behind; the recover mode (and any later run) sorts them out."""
    other = tmp_path / "new"
    other.mkdir()
    server = Server(other)
    fill(server, {0: {b"new:only": b"n"}})
    server.stop()
    old = volume / "cmx-restore.old"
    old.mkdir()
    (volume / "appendonlydir").rename(old / "appendonlydir")
    (volume / "cmx-restore.new").mkdir()  # a half-built copy
    if stage in ("complete", "committed"):
        (old / ".complete").touch()
        (other / "appendonlydir").rename(volume / "appendonlydir")
    if stage == "committed":
        old.rename(volume / "cmx-restore.trash")

    run = run_loader(volume, snapshot, CMX_RESTORE_MODE="recover")

    assert run.returncode == 0, run.stderr
    assert leftovers(volume) == []
    assert content(volume) == ({0: {b"new:only": b"n"}} if stage == "committed" else PREVIOUS)


def test_next_load_first_undoes_an_interrupted_swap(volume, snapshot):
    old = volume / "cmx-restore.old"
    old.mkdir()
    (volume / "appendonlydir").rename(old / "appendonlydir")  # killed while moving the live files aside

    run = run_loader(volume, snapshot)

    assert run.returncode == 0, run.stderr
    assert "an interrupted swap was undone" in run.stderr
    assert content(volume) == expected_snapshot()


# --- BGSAVE against a real server -----------------------------------------------------------------------


@pytest.fixture
def redis_container(tmp_path, monkeypatch):
    """A real server and a stand-in docker: ``docker exec -e NAME fake redis-cli ARGS`` -> local redis-cli."""
    folder = tmp_path / "server"
    folder.mkdir()
    server = Server(folder, appendonly="no")
    docker = tmp_path / "docker"
    docker.write_text(
        f"#!{sys.executable}\nimport os, sys\nargs = sys.argv[1:]\ni = 1\n"
        "while args[i].startswith('-'):\n    i += 2 if args[i] == '-e' else 1\n"
        "argv = args[i + 1:]\n"
        f"if argv[0] == 'redis-cli':\n    argv = [{REDIS_CLI!r}, '-p', '{server.port}', *argv[1:]]\n"
        "os.execvp(argv[0], argv)\n"
    )
    docker.chmod(0o755)
    fill(server, {0: {f"k{n}".encode(): b"v" for n in range(50)}})
    yield server, str(docker)
    server.client().config_set("rdb-key-save-delay", 0)
    server.stop()


def test_bgsave_already_running_is_waited_for_then_a_fresh_one_is_taken(redis_container):
    server, docker = redis_container
    client = server.client()
    client.config_set("rdb-key-save-delay", 20000)  # 50 keys x 20 ms: a save of about 1 s
    before = backup_redis._persistence("fake", "", docker)
    client.bgsave()
    client.set("written-after-the-first-save-began", "1")

    backup_redis.bgsave("fake", before, docker=docker, timeout=60)

    after = client.info("persistence")
    assert after["rdb_bgsave_in_progress"] == 0 and after["rdb_last_bgsave_status"] == "ok"
    assert after["rdb_saves"] == int(before["rdb_saves"]) + 2, "ours must follow the save already running"
    client.config_set("rdb-key-save-delay", 0)
    check = Server(server.folder, appendonly="no")  # the file on disk is ours: it has the late key
    try:
        assert check.client().get("written-after-the-first-save-began") == b"1"
    finally:
        check.stop()


def test_bgsave_that_takes_too_long_fails_naming_the_timeout(redis_container):
    server, docker = redis_container
    client = server.client()
    client.config_set("rdb-key-save-delay", 100000)  # 50 keys x 100 ms: about 5 s
    before = backup_redis._persistence("fake", "", docker)

    with pytest.raises(backup.BackupError, match="BGSAVE in fake did not finish within 1 s"):
        backup_redis.bgsave("fake", before, docker=docker, timeout=1)
    client.config_set("rdb-key-save-delay", 0)
