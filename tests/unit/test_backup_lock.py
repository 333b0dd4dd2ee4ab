"""Overlapping backups (issue 16, item 7): a backup and its retention hold ``<root>/.cmx-backup.lock``, so
retention never deletes a backup that is still being written. The parts are fakes; the lock is real flock.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import threading

import pytest
from ansible_collections.cleanmatex.infra.plugins.module_utils import backup, backup_run
from test_probes_support import wait_for


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _write(folder, relpath, data):
    os.makedirs(os.path.join(folder, os.path.dirname(relpath)), exist_ok=True)
    with open(os.path.join(folder, relpath), "wb") as handle:
        handle.write(data)
    return {relpath: {"size": len(data), "sha256": _sha(data)}}


class Parts:
    """PostgreSQL, Redis and bucket parts replaced by small files; a dump can be held until released."""

    def __init__(self, monkeypatch):
        self.hold: dict[str, threading.Event] = {}  # folder name -> released
        self.started: list[str] = []
        monkeypatch.setattr(backup_run.backup_postgres, "dump", self.pg_dump)
        monkeypatch.setattr(backup_run.backup_redis, "dump", self.redis_dump)
        monkeypatch.setattr(backup_run.backup_s3, "backup_bucket", self.bucket)
        monkeypatch.setattr(backup, "LOCK_WAIT", 0.3, raising=False)

    def pg_dump(self, *, connection, container, folder, compression, docker):
        name = os.path.basename(folder)
        self.started.append(name)
        release = self.hold.get("next")
        if release is not None:
            self.hold.pop("next")
            assert release.wait(30), "the test never released the dump"
        return {"files": _write(folder, "postgres/cmx_db.dump", b"PGDMP"), "postgres": {"tables": {}}}

    def redis_dump(self, container, folder, password, docker, timeout):
        return {"files": _write(folder, "redis/dump.rdb", b"REDIS0012"), "redis": {"keys": {}}}

    def bucket(self, client, bucket_name, folder, workers):
        files = _write(folder, backup.object_file(_sha(b"obj")), b"obj")
        entry = {"key": "a.txt", "size": 3, "sha256": _sha(b"obj"), "file": next(iter(files))}
        return {"objects": [entry], "files": files, "bytes": 3, "skipped_deleted": []}


ARGS = {
    "postgres": {"container": "cmx-postgres", "connection": {}},
    "redis": {"container": "cmx-redis"},
    "storage": {"endpoint_url": "http://127.0.0.1:9", "access_key": "a", "secret_key": "s", "bucket": "b"},
    "environment": "ci",
    "project": "cmx",
}


def start_held_backup(parts: Parts, root, results: dict) -> tuple[threading.Thread, threading.Event]:
    """A backup in a thread whose dump waits for the returned event: a backup in progress."""
    release = threading.Event()
    parts.hold["next"] = release

    def run():
        try:
            results["first"] = backup_run.run_backup(root=str(root), keep=1, **ARGS)
        except Exception as exc:  # reported by the test
            results["first"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    wait_for(lambda: parts.started, timeout=10, what="the first backup to start its dump")
    return thread, release


def test_a_second_backup_fails_naming_the_lock_and_the_running_one_survives(tmp_path, monkeypatch):
    parts = Parts(monkeypatch)
    results: dict = {}
    thread, release = start_held_backup(parts, tmp_path, results)
    running = parts.started[0]
    try:
        # Without the lock this backup finished and its retention (keep 1) deleted the running one's folder.
        with pytest.raises(backup.BackupError, match=r"\.cmx-backup\.lock is locked \(pid [0-9]+ on "):
            backup_run.run_backup(root=str(tmp_path), keep=1, **ARGS)
        assert os.path.isdir(tmp_path / running)
    finally:
        release.set()
        thread.join(30)
    assert not isinstance(results["first"], Exception), results["first"]
    assert results["first"]["name"] == running
    backup.verify_files(str(tmp_path / running), backup.load_manifest(str(tmp_path / running)))
    assert os.listdir(tmp_path) == [running], "nothing else left behind, the lock file removed"


def test_a_second_backup_waits_for_the_first_then_runs(tmp_path, monkeypatch):
    parts = Parts(monkeypatch)
    waiting = threading.Event()
    sleep = backup.time.sleep

    def noted_sleep(seconds):
        waiting.set()
        sleep(seconds)

    monkeypatch.setattr(backup.time, "sleep", noted_sleep)
    results: dict = {}
    thread, release = start_held_backup(parts, tmp_path, results)
    second = threading.Thread(
        target=lambda: results.update(
            second=backup_run.run_backup(root=str(tmp_path), keep=2, lock_wait=30, **ARGS)
        )
    )
    second.start()
    assert waiting.wait(10), "the second backup did not wait for the lock"
    release.set()
    thread.join(30)
    second.join(30)
    names = [results["first"]["name"], results["second"]["name"]]
    assert sorted(os.listdir(tmp_path)) == sorted(names)
    assert all(entry.complete for entry in backup.list_backups(str(tmp_path)))


def test_prune_waits_for_the_lock_and_deletes_nothing_meanwhile(tmp_path, monkeypatch):
    monkeypatch.setattr(backup, "LOCK_WAIT", 0.3, raising=False)
    for day in (1, 2):
        folder = tmp_path / f"2025060{day}T000000Z"
        folder.mkdir()
        (folder / "manifest.json").write_text("{}")
    (tmp_path / "20250603T000000Z").mkdir()  # another backup writing, older than a complete one below
    (tmp_path / "20250604T000000Z").mkdir()
    (tmp_path / "20250604T000000Z" / "manifest.json").write_text("{}")
    lock = os.open(tmp_path / ".cmx-backup.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        os.write(lock, b"pid 4242 on testhost since 2025-06-03T00:00:00+00:00\n")
        with pytest.raises(backup.BackupError, match=r"is locked \(pid 4242 on testhost .*waited 0.3 s"):
            backup.prune(str(tmp_path), keep=1)
        assert len(backup.list_backups(str(tmp_path))) == 4
    finally:
        os.close(lock)
    # The holder is gone (its process ended: the kernel dropped the lock); a stale file does not block.
    assert backup.prune(str(tmp_path), keep=1) == ["20250601T000000Z", "20250602T000000Z", "20250603T000000Z"]
    assert sorted(os.listdir(tmp_path)) == ["20250604T000000Z"]


def test_the_lock_is_reentrant_in_its_thread_and_released(tmp_path):
    with backup.backup_lock(str(tmp_path), wait=0):
        assert (tmp_path / ".cmx-backup.lock").read_text().startswith(f"pid {os.getpid()} on ")
        with backup.backup_lock(str(tmp_path), wait=0):  # run_backup -> prune
            pass
        assert (tmp_path / ".cmx-backup.lock").exists()
        other: list = []

        def in_another_thread():
            try:
                with backup.backup_lock(str(tmp_path), wait=0):
                    other.append("acquired")
            except backup.BackupError as exc:
                other.append(exc)

        thread = threading.Thread(target=in_another_thread)
        thread.start()
        thread.join(10)
        assert isinstance(other[0], backup.BackupError)
    assert not (tmp_path / ".cmx-backup.lock").exists()
    with backup.backup_lock(str(tmp_path), wait=0):
        pass
