"""Backup folders, manifest, checksum verification and retention (module_utils/backup.py, pure Python)."""

from __future__ import annotations

import datetime
import hashlib
import io
import json
import os

import pytest
from ansible_collections.cleanmatex.infra.plugins.module_utils import backup

NOW = datetime.datetime(2025, 6, 1, 12, 0, 0, tzinfo=datetime.UTC)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def make_backup(root, name: str, files: dict[str, bytes] | None = None, complete: bool = True) -> str:
    """A backup folder with the given files and, when complete, a valid manifest for them."""
    folder = os.path.join(root, name)
    os.makedirs(folder)
    files = files if files is not None else {"postgres/cmx_db.dump": b"PGDMP" + name.encode()}
    for relpath, data in files.items():
        path = os.path.join(folder, relpath)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as handle:
            handle.write(data)
    if complete:
        manifest = backup.build_manifest(
            name=name,
            created_at="2025-06-01T12:00:00Z",
            finished_at="2025-06-01T12:00:05Z",
            environment="ci",
            project="cmx",
            files={rel: {"size": len(data), "sha256": _sha(data)} for rel, data in files.items()},
            postgres={"tables": {"public.tenants": 1}},
            redis={"keys": {"db0": 2}},
            storage={"objects": []},
        )
        backup.write_manifest(folder, manifest)
    return folder


# --- names ---------------------------------------------------------------------------------------------


def test_backup_name_is_utc_and_sortable():
    local = datetime.datetime(2025, 6, 1, 14, 0, 0, tzinfo=datetime.timezone(datetime.timedelta(hours=2)))
    assert backup.backup_name(local) == "20250601T120000Z"
    assert backup.backup_name(NOW, 3) == "20250601T120000Z-3"


def test_sort_key_orders_same_second_suffixes_numerically():
    names = ["20250601T120000Z-10", "20250601T120000Z-2", "20250601T120000Z", "20250531T235959Z"]
    assert sorted(names, key=backup.name_sort_key) == [
        "20250531T235959Z",
        "20250601T120000Z",
        "20250601T120000Z-2",
        "20250601T120000Z-10",
    ]
    with pytest.raises(ValueError):
        backup.name_sort_key("latest")


def test_create_backup_dir_is_private_and_never_reuses_a_folder(tmp_path):
    root = tmp_path / "backups"
    first = backup.create_backup_dir(str(root), NOW)
    second = backup.create_backup_dir(str(root), NOW)
    assert first[0] == "20250601T120000Z"
    assert second[0] == "20250601T120000Z-1"
    assert os.stat(first[1]).st_mode & 0o777 == 0o700
    assert os.listdir(first[1]) == []


# --- listing, retention, selection --------------------------------------------------------------------


def test_list_backups_ignores_foreign_entries_and_flags_incomplete(tmp_path):
    make_backup(tmp_path, "20250601T120000Z")
    make_backup(tmp_path, "20250602T120000Z", complete=False)
    (tmp_path / "notes.txt").write_text("keep me")
    (tmp_path / "manual-copy").mkdir()
    os.symlink(tmp_path / "20250601T120000Z", tmp_path / "20250603T120000Z")
    entries = backup.list_backups(str(tmp_path))
    assert [(e.name, e.complete) for e in entries] == [
        ("20250601T120000Z", True),
        ("20250602T120000Z", False),
    ]
    assert backup.list_backups(str(tmp_path / "missing")) == []


def _entries(*specs):
    return [backup.BackupEntry(name, f"/b/{name}", complete) for name, complete in specs]


def test_retention_keeps_the_newest_complete_backups():
    entries = _entries(*[(f"2025060{day}T000000Z", True) for day in range(1, 10)])
    doomed = backup.retention_plan(entries, keep=7)
    assert [e.name for e in doomed] == ["20250601T000000Z", "20250602T000000Z"]
    assert backup.retention_plan(entries, keep=9) == []
    assert backup.retention_plan(entries, keep=20) == []


def test_retention_counts_only_complete_backups_and_cleans_failed_leftovers():
    entries = _entries(
        ("20250601T000000Z", True),
        ("20250602T000000Z", False),  # failed, older than the newest complete: removed
        ("20250603T000000Z", True),
        ("20250604T000000Z", True),
        ("20250605T000000Z", False),  # newer than every complete backup: may still be running
    )
    doomed = backup.retention_plan(entries, keep=2)
    assert [e.name for e in doomed] == ["20250601T000000Z", "20250602T000000Z"]


def test_retention_never_deletes_the_protected_backup_and_rejects_zero():
    entries = _entries(("20250601T000000Z", True), ("20250602T000000Z", True))
    assert backup.retention_plan(entries, keep=1, protect=("20250601T000000Z",)) == []
    with pytest.raises(backup.BackupError, match="at least 1"):
        backup.retention_plan(entries, keep=0)


def test_prune_deletes_only_backup_folders(tmp_path):
    for day in range(1, 5):
        make_backup(tmp_path, f"2025060{day}T000000Z")
    (tmp_path / "README").write_text("x")
    assert backup.prune(str(tmp_path), keep=2, check_mode=True) == ["20250601T000000Z", "20250602T000000Z"]
    assert len(os.listdir(tmp_path)) == 5
    assert backup.prune(str(tmp_path), keep=2) == ["20250601T000000Z", "20250602T000000Z"]
    assert sorted(os.listdir(tmp_path)) == ["20250603T000000Z", "20250604T000000Z", "README"]


def test_select_backup_defaults_to_the_newest_complete(tmp_path):
    make_backup(tmp_path, "20250601T000000Z")
    make_backup(tmp_path, "20250602T000000Z")
    make_backup(tmp_path, "20250603T000000Z", complete=False)
    assert backup.select_backup(str(tmp_path)) == str(tmp_path / "20250602T000000Z")
    assert backup.select_backup(str(tmp_path), "20250601T000000Z") == str(tmp_path / "20250601T000000Z")
    assert backup.select_backup(str(tmp_path), str(tmp_path / "20250601T000000Z")).endswith(
        "20250601T000000Z"
    )
    with pytest.raises(backup.BackupError, match="not a complete backup"):
        backup.select_backup(str(tmp_path), "20250603T000000Z")
    with pytest.raises(backup.BackupError, match="not found"):
        backup.select_backup(str(tmp_path), "20990101T000000Z")


def test_select_backup_without_any_backup_says_what_to_run(tmp_path):
    with pytest.raises(backup.BackupError, match=r"run bin/cmx backup first"):
        backup.select_backup(str(tmp_path))


# --- checksums and manifest ----------------------------------------------------------------------------


def test_copy_stream_hashes_while_copying():
    data = os.urandom(3 * 1024 * 1024 + 17)
    target = io.BytesIO()
    size, sha = backup.copy_stream(io.BytesIO(data), target, chunk_size=64 * 1024)
    assert (size, sha) == (len(data), _sha(data))
    assert target.getvalue() == data


def test_manifest_round_trip_and_verification(tmp_path):
    files = {"postgres/cmx_db.dump": os.urandom(1000), "redis/dump.rdb": b"REDIS0012", "objects/ab/x": b""}
    folder = make_backup(tmp_path, "20250601T120000Z", files)
    manifest = backup.load_manifest(folder)
    assert manifest["environment"] == "ci"
    assert manifest["files"]["objects/ab/x"] == {"size": 0, "sha256": _sha(b"")}
    assert backup.verify_files(folder, manifest) == sorted(files)
    assert os.stat(os.path.join(folder, "manifest.json")).st_mode & 0o777 == 0o600
    assert not os.path.exists(os.path.join(folder, "manifest.json.tmp"))


def test_verification_names_a_corrupted_file(tmp_path):
    folder = make_backup(tmp_path, "20250601T120000Z", {"a.bin": b"A" * 100, "redis/dump.rdb": b"B" * 100})
    with open(os.path.join(folder, "redis/dump.rdb"), "r+b") as handle:
        handle.seek(50)
        handle.write(b"X")  # same size, different content
    with pytest.raises(backup.ChecksumError) as caught:
        backup.verify_files(folder, backup.load_manifest(folder))
    assert caught.value.file == "redis/dump.rdb"
    assert "redis/dump.rdb" in str(caught.value) and "sha256" in str(caught.value)


def test_verification_names_a_truncated_or_missing_file(tmp_path):
    folder = make_backup(tmp_path, "20250601T120000Z", {"a.bin": b"A" * 100, "b.bin": b"B" * 100})
    os.truncate(os.path.join(folder, "b.bin"), 10)
    with pytest.raises(backup.ChecksumError, match=r"b\.bin is 10 bytes, the manifest says 100"):
        backup.verify_files(folder, backup.load_manifest(folder))
    os.unlink(os.path.join(folder, "a.bin"))
    with pytest.raises(backup.ChecksumError, match=r"a\.bin is missing"):
        backup.verify_files(folder, backup.load_manifest(folder))


@pytest.mark.parametrize(
    "bad", ["../etc/passwd", "/etc/passwd", "a//b", "a/./b", "manifest.json", "", "a\\b"]
)
def test_manifest_file_names_cannot_leave_the_folder(bad):
    with pytest.raises(backup.BackupError, match="invalid file name"):
        backup.safe_relpath(bad)


def _write_json(path, document) -> None:
    with open(path, "w") as handle:
        json.dump(document, handle)


def test_load_manifest_rejects_tampered_paths_and_unknown_formats(tmp_path):
    folder = make_backup(tmp_path, "20250601T120000Z")
    path = os.path.join(folder, "manifest.json")
    with open(path) as handle:
        document = json.load(handle)
    document["files"]["../../outside"] = {"size": 1, "sha256": "0" * 64}
    _write_json(path, document)
    with pytest.raises(backup.BackupError, match="invalid file name"):
        backup.load_manifest(folder)
    document["format"] = 99
    _write_json(path, document)
    with pytest.raises(backup.BackupError, match="unsupported manifest format 99"):
        backup.load_manifest(folder)
    with open(path, "w") as handle:
        handle.write("{not json")
    with pytest.raises(backup.BackupError, match="cannot read"):
        backup.load_manifest(folder)


def test_build_manifest_requires_size_and_sha256():
    with pytest.raises(backup.BackupError, match="size and sha256"):
        backup.build_manifest(
            name="n", created_at="", finished_at="", environment="ci", project="cmx",
            files={"a": {"size": 1, "sha256": "nope"}}, postgres={}, redis={}, storage={},
        )  # fmt: skip


def test_unlisted_files_are_reported(tmp_path):
    folder = make_backup(tmp_path, "20250601T120000Z", {"a.bin": b"A"})
    (tmp_path / "20250601T120000Z" / "stray.txt").write_text("x")
    assert backup.unlisted_files(folder, backup.load_manifest(folder)) == ["stray.txt"]


def test_object_files_are_content_addressed():
    sha = _sha(b"hello")
    assert backup.object_file(sha) == f"objects/{sha[:2]}/{sha}"
    with pytest.raises(backup.BackupError):
        backup.object_file("../../x")


# --- row counts ----------------------------------------------------------------------------------------


def test_compare_counts_reports_every_difference():
    expected = {"public.orders": 5, "public.tenants": 1, "public.gone": 3}
    actual = {"public.orders": 4, "public.tenants": 1, "public.new": 0}
    assert backup.compare_counts(expected, actual) == [
        "public.gone: missing after the restore (backup had 3 rows)",
        "public.new: not in the backup (0 rows after the restore)",
        "public.orders: 4 rows after the restore, the backup had 5",
    ]
    assert backup.compare_counts(expected, dict(expected)) == []


def test_count_report_marks_differences():
    lines = backup.count_report({"public.a": 1, "public.bb": 2}, {"public.a": 1, "public.bb": 3})
    assert lines[0].startswith("public.a ") and lines[0].endswith("ok")
    assert lines[1].endswith("DIFFERS")


# --- one backup run (the parts replaced by fakes) --------------------------------------------------------


def _fake_parts(monkeypatch, fail: str = ""):
    from ansible_collections.cleanmatex.infra.plugins.module_utils import backup_run

    def write(folder, relpath, data):
        path = os.path.join(folder, relpath)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as handle:
            handle.write(data)
        return {relpath: {"size": len(data), "sha256": _sha(data)}}

    def pg_dump(*, connection, container, folder, compression, docker):
        if fail == "postgres":
            raise backup.BackupError("pg_dump in container cmx-postgres failed (exit 1): boom")
        return {
            "files": write(folder, "postgres/cmx_db.dump", b"PGDMP"),
            "postgres": {"tables": {"public.t": 3}},
        }

    def redis_dump(container, folder, password, docker, timeout):
        return {"files": write(folder, "redis/dump.rdb", b"REDIS0012"), "redis": {"keys": {"db0": 1}}}

    def bucket(client, bucket_name, folder, workers):
        files = write(folder, backup.object_file(_sha(b"obj")), b"obj")
        entry = {"key": "a/b.txt", "size": 3, "sha256": _sha(b"obj"), "file": next(iter(files))}
        return {"objects": [entry], "files": files, "bytes": 3}

    monkeypatch.setattr(backup_run.backup_postgres, "dump", pg_dump)
    monkeypatch.setattr(backup_run.backup_redis, "dump", redis_dump)
    monkeypatch.setattr(backup_run.backup_s3, "backup_bucket", bucket)
    return backup_run


RUN_ARGS = {
    "postgres": {"container": "cmx-postgres", "connection": {}, "compression": ""},
    "redis": {"container": "cmx-redis", "password": "", "timeout": 5},
    "storage": {
        "endpoint_url": "http://x",
        "access_key": "a",
        "secret_key": "s",
        "bucket": "b",
        "engine": "e",
    },
    "environment": "ci",
    "project": "cmx",
}


def test_run_backup_writes_a_verifiable_manifest_and_applies_retention(tmp_path, monkeypatch):
    backup_run = _fake_parts(monkeypatch)
    for day in range(1, 4):
        make_backup(tmp_path, f"2020010{day}T000000Z")
    result = backup_run.run_backup(root=str(tmp_path), keep=2, **RUN_ARGS)
    manifest = backup.load_manifest(result["path"])
    assert backup.verify_files(result["path"], manifest) == [
        backup.object_file(_sha(b"obj")),
        "postgres/cmx_db.dump",
        "redis/dump.rdb",
    ]
    assert manifest["environment"] == "ci" and manifest["storage"]["object_count"] == 1
    assert set(manifest["seconds"]) == {"PostgreSQL", "Redis", "storage"}
    assert result["deleted"] == ["20200101T000000Z", "20200102T000000Z"]
    assert sorted(os.listdir(tmp_path)) == ["20200103T000000Z", result["name"]]


def test_run_backup_failure_names_the_part_and_leaves_no_folder(tmp_path, monkeypatch):
    backup_run = _fake_parts(monkeypatch, fail="postgres")
    make_backup(tmp_path, "20200101T000000Z")
    with pytest.raises(backup.BackupError, match=r"^PostgreSQL: pg_dump in container cmx-postgres failed"):
        backup_run.run_backup(root=str(tmp_path), keep=1, **RUN_ARGS)
    assert os.listdir(tmp_path) == ["20200101T000000Z"], (
        "the failed backup's folder is removed, retention not run"
    )
