# Copyright: CleanMateX DevOps
# Apache-2.0 (see galaxy.yml)
"""Backup folders, manifests, checksums and retention (playbooks/backup.yml, restore.yml, reset.yml).

Plain Python, no Ansible or database imports, so every rule here is unit-tested on its own
(tests/unit/test_backup_*.py). The modules ``cmx_backup_*`` are thin wrappers.

Layout of one backup (a folder named after its UTC start time, under the inventory's ``cmx_backup_dir``)::

    20250601T120000Z/
      manifest.json               written last: a folder without it is an incomplete backup
      postgres/<db>.dump          pg_dump -Fc of the application database
      postgres/globals.sql        pg_dumpall --globals-only (roles)
      redis/dump.rdb              Redis snapshot (RDB)
      objects/<ab>/<sha256>       each distinct object body of the bucket, named by its sha256

While a backup or a prune runs, the folder holding the backups has ``.cmx-backup.lock`` (see backup_lock).

``manifest.json`` lists every file with its size and sha256, the server versions, the per-table row
counts of the dump's snapshot, the Redis key counts, the bucket's objects (key -> file) and when and
where the backup was taken.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import hashlib
import json
import os
import re
import shutil
import socket
import threading
import time
from dataclasses import dataclass

MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = 1
# UTC start time, plus -N when two backups start in the same second.
NAME_PATTERN = re.compile(r"^(?P<stamp>[0-9]{8}T[0-9]{6}Z)(?:-(?P<seq>[0-9]{1,4}))?$")
NAME_FORMAT = "%Y%m%dT%H%M%SZ"
CHUNK_SIZE = 1 << 20
SHA256_PATTERN = re.compile(r"^[0-9a-f]{64}$")
# Held by a backup (with its retention) and by a prune, in the backups folder; see backup_lock.
LOCK_NAME = ".cmx-backup.lock"
# Seconds a backup or prune waits for another one to finish before it gives up.
LOCK_WAIT = 60.0
_LOCKS_HELD = threading.local()


class BackupError(Exception):
    """A backup or restore cannot go on; the message says why and what to do."""


class TransferError(BackupError):
    """Received bytes differ from what the sender announced (size, checksum): a transient fault, retried."""


class ChecksumError(BackupError):
    """A file of a backup is missing or differs from the manifest; ``file`` names it."""

    def __init__(self, file: str, message: str):
        super().__init__(message)
        self.file = file


# --- folder names and retention ---------------------------------------------------------------------


def backup_name(now: datetime.datetime, seq: int = 0) -> str:
    """Folder name for a backup started at ``now`` (converted to UTC): ``YYYYMMDDTHHMMSSZ[-seq]``."""
    if now.tzinfo is not None:
        now = now.astimezone(datetime.UTC)
    return now.strftime(NAME_FORMAT) + (f"-{seq}" if seq else "")


def name_sort_key(name: str) -> tuple[str, int]:
    match = NAME_PATTERN.match(name)
    if not match:
        raise ValueError(f"not a backup folder name: {name}")
    return match.group("stamp"), int(match.group("seq") or 0)


def create_backup_dir(root: str, now: datetime.datetime | None = None) -> tuple[str, str]:
    """Create a new, empty backup folder under ``root`` (mode 0700). Returns (name, path).

    ``mkdir`` is atomic: two backups started in the same second get ``<stamp>`` and ``<stamp>-1``.
    """
    now = now or datetime.datetime.now(datetime.UTC)
    os.makedirs(root, mode=0o700, exist_ok=True)
    for seq in range(1000):
        name = backup_name(now, seq)
        path = os.path.join(root, name)
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            continue
        os.chmod(path, 0o700)  # mkdir's mode is filtered by the umask
        return name, path
    raise BackupError(f"could not create a new backup folder under {root}")


@dataclass(frozen=True)
class BackupEntry:
    name: str
    path: str
    complete: bool  # has a manifest.json (a backup that finished)


def list_backups(root: str) -> list[BackupEntry]:
    """Backup folders under ``root``, oldest first. Anything not named like a backup is ignored."""
    if not os.path.isdir(root):
        return []
    entries = []
    for name in os.listdir(root):
        path = os.path.join(root, name)
        if NAME_PATTERN.match(name) and os.path.isdir(path) and not os.path.islink(path):
            entries.append(BackupEntry(name, path, os.path.isfile(os.path.join(path, MANIFEST_NAME))))
    return sorted(entries, key=lambda entry: name_sort_key(entry.name))


def retention_plan(entries: list[BackupEntry], keep: int, protect: tuple[str, ...] = ()) -> list[BackupEntry]:
    """Which folders to delete so that the ``keep`` newest complete backups remain.

    * complete backups beyond the ``keep`` newest are deleted, oldest first;
    * incomplete folders (no manifest: a backup that failed or was interrupted) older than the newest
      complete backup are deleted too; newer ones are kept. :func:`prune` holds :func:`backup_lock`, which
      every backup holds while it runs, so an incomplete folder seen here is never a backup in progress;
    * names in ``protect`` (the backup just written) are never deleted.
    """
    if keep < 1:
        raise BackupError(f"the retention count must be at least 1, not {keep}")
    ordered = sorted(entries, key=lambda entry: name_sort_key(entry.name))
    complete = [entry for entry in ordered if entry.complete]
    doomed = complete[: max(len(complete) - keep, 0)]
    if complete:
        newest = name_sort_key(complete[-1].name)
        doomed += [e for e in ordered if not e.complete and name_sort_key(e.name) < newest]
    return sorted(
        (entry for entry in doomed if entry.name not in protect), key=lambda entry: name_sort_key(entry.name)
    )


@contextlib.contextmanager
def backup_lock(root: str, wait: float | None = None):
    """Exclusive lock for the backups under ``root``: ``fcntl.flock`` on ``<root>/.cmx-backup.lock``.

    A backup holds it from its new folder to the end of its retention, a prune while it deletes: so a
    prune never sees a backup in progress. Another holder is waited for up to ``wait`` seconds (default
    LOCK_WAIT), then BackupError names the lock file and its holder. Re-entrant in the holding thread
    (run_backup -> prune). The kernel drops the lock with its process; the file is removed on release.
    """
    root = os.path.abspath(root)
    held = getattr(_LOCKS_HELD, "roots", None)
    if held is None:
        held = _LOCKS_HELD.roots = set()
    if root in held:
        yield
        return
    os.makedirs(root, mode=0o700, exist_ok=True)
    path = os.path.join(root, LOCK_NAME)
    wait = LOCK_WAIT if wait is None else wait
    deadline = time.monotonic() + wait
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 512, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            if time.monotonic() >= deadline:
                raise BackupError(
                    f"another backup or prune is running: {path} is locked ({holder}); waited {wait:g} s. "
                    "Run again once it has finished"
                ) from None
            time.sleep(min(0.1, max(deadline - time.monotonic(), 0.01)))
            continue
        try:  # the previous holder may have removed the file between our open and flock
            if os.path.samestat(os.fstat(fd), os.stat(path)):
                break
        except FileNotFoundError:
            pass
        os.close(fd)
    try:
        started = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} on {socket.gethostname()} since {started}\n".encode())
        held.add(root)
        yield
    finally:
        held.discard(root)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)  # still locked: a waiter that opened this file sees it is gone and retries
        os.close(fd)


def prune(
    root: str,
    keep: int,
    protect: tuple[str, ...] = (),
    check_mode: bool = False,
    lock_wait: float | None = None,
) -> list[str]:
    """Apply :func:`retention_plan` under ``root`` holding :func:`backup_lock`; returns the deleted names."""
    if check_mode or not os.path.isdir(root):
        return [entry.name for entry in retention_plan(list_backups(root), keep, protect)]
    with backup_lock(root, lock_wait):
        doomed = retention_plan(list_backups(root), keep, protect)
        for entry in doomed:
            shutil.rmtree(entry.path)
    return [entry.name for entry in doomed]


def select_backup(root: str, requested: str = "") -> str:
    """The folder to restore: ``requested`` (a name under ``root`` or a path), else the newest complete one.

    Raises :class:`BackupError` with a message that says what exists when nothing fits.
    """
    if requested:
        path = requested if os.path.isabs(requested) else os.path.join(root, requested)
        path = os.path.normpath(path)
        if not os.path.isdir(path):
            raise BackupError(f"backup folder not found: {path}")
        if not os.path.isfile(os.path.join(path, MANIFEST_NAME)):
            raise BackupError(f"{path} has no {MANIFEST_NAME}: it is not a complete backup")
        return path
    complete = [entry for entry in list_backups(root) if entry.complete]
    if not complete:
        raise BackupError(f"no complete backup under {root} (run bin/cmx backup first)")
    return complete[-1].path


# --- checksums ----------------------------------------------------------------------------------------


def copy_stream(
    source, target, chunk_size: int = CHUNK_SIZE, expected_size: int | None = None, digests=()
) -> tuple[int, str]:
    """Copy a binary stream into another; returns (bytes copied, sha256 hex) computed on the way.

    ``expected_size`` (e.g. the Content-Length): a stream that ends at another size raises
    :class:`TransferError` (http.client answers b"" when the peer closes early, no error). ``digests``:
    more hashlib objects fed the same bytes (an md5 to compare with an S3 ETag).
    """
    digest = hashlib.sha256()
    size = 0
    while True:
        chunk = source.read(chunk_size)
        if not chunk:
            break
        digest.update(chunk)
        for other in digests:
            other.update(chunk)
        target.write(chunk)
        size += len(chunk)
    if expected_size is not None and size != expected_size:
        raise TransferError(f"received {size} bytes, {expected_size} announced (connection closed early)")
    return size, digest.hexdigest()


def file_digest(path: str) -> tuple[int, str]:
    """(size, sha256 hex) of a file, read in chunks."""
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as handle:
        while True:
            chunk = handle.read(CHUNK_SIZE)
            if not chunk:
                break
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


def safe_relpath(relpath: str) -> str:
    """A manifest file name must stay inside its backup folder: relative, normalised, no ``..``."""
    if not isinstance(relpath, str) or not relpath:
        raise BackupError(f"invalid file name in the manifest: {relpath!r}")
    if os.path.isabs(relpath) or "\\" in relpath or "\x00" in relpath:
        raise BackupError(f"invalid file name in the manifest: {relpath!r}")
    parts = relpath.split("/")
    if any(part in ("", ".", "..") for part in parts) or relpath == MANIFEST_NAME:
        raise BackupError(f"invalid file name in the manifest: {relpath!r}")
    return relpath


def object_file(sha256: str) -> str:
    """Where an object body lives in a backup: content-addressed, so any S3 key is safe and copies dedupe."""
    if not SHA256_PATTERN.match(sha256 or ""):
        raise BackupError(f"not a sha256: {sha256!r}")
    return f"objects/{sha256[:2]}/{sha256}"


# --- manifest -----------------------------------------------------------------------------------------


def build_manifest(
    *,
    name: str,
    created_at: str,
    finished_at: str,
    environment: str,
    project: str,
    files: dict[str, dict],
    postgres: dict,
    redis: dict,
    storage: dict,
) -> dict:
    """The manifest document. ``files`` maps a relative path to ``{"size": int, "sha256": hex}``."""
    checked = {}
    for relpath, info in sorted(files.items()):
        safe_relpath(relpath)
        size, sha = info.get("size"), info.get("sha256")
        if not isinstance(size, int) or size < 0 or not SHA256_PATTERN.match(str(sha)):
            raise BackupError(f"file {relpath}: size and sha256 are required in the manifest")
        checked[relpath] = {"size": size, "sha256": sha}
    return {
        "format": MANIFEST_FORMAT,
        "name": name,
        "created_at": created_at,
        "finished_at": finished_at,
        "environment": environment,
        "project": project,
        "postgres": postgres,
        "redis": redis,
        "storage": storage,
        "files": checked,
    }


def write_manifest(folder: str, manifest: dict) -> str:
    """Write ``manifest.json`` atomically (temporary file, fsync, rename), mode 0600. Returns its path."""
    path = os.path.join(folder, MANIFEST_NAME)
    temporary = path + ".tmp"
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(manifest, handle, indent=2, sort_keys=True)
        handle.write("\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)
    return path


def load_manifest(folder: str) -> dict:
    """Read and sanity-check ``manifest.json`` of a backup folder."""
    path = os.path.join(folder, MANIFEST_NAME)
    try:
        with open(path, encoding="utf-8") as handle:
            manifest = json.load(handle)
    except FileNotFoundError as exc:
        raise BackupError(f"{folder} has no {MANIFEST_NAME}: it is not a complete backup") from exc
    except (OSError, ValueError) as exc:
        raise BackupError(f"cannot read {path}: {exc}") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        found = manifest.get("format") if isinstance(manifest, dict) else type(manifest).__name__
        raise BackupError(f"{path}: unsupported manifest format {found!r} (expected {MANIFEST_FORMAT})")
    files = manifest.get("files")
    if not isinstance(files, dict) or not files:
        raise BackupError(f"{path}: the manifest lists no files")
    for relpath in files:
        safe_relpath(relpath)
    return manifest


def verify_files(folder: str, manifest: dict) -> list[str]:
    """Check every file of the manifest against its size and sha256; returns the checked names.

    Raises :class:`ChecksumError` naming the first file that is missing or differs. Files are checked
    in name order, sizes first (cheap), so a truncated file is found without hashing anything.
    """
    files = manifest["files"]
    for relpath in sorted(files):
        path = os.path.join(folder, safe_relpath(relpath))
        expected = files[relpath]
        try:
            size = os.path.getsize(path)
        except OSError:
            raise ChecksumError(
                relpath, f"checksum verification failed: {relpath} is missing from {folder}"
            ) from None
        if size != expected["size"]:
            raise ChecksumError(
                relpath,
                f"checksum verification failed: {relpath} is {size} bytes, the manifest says "
                f"{expected['size']} (file truncated or replaced)",
            )
    for relpath in sorted(files):
        expected = files[relpath]
        _, sha = file_digest(os.path.join(folder, relpath))
        if sha != expected["sha256"]:
            raise ChecksumError(
                relpath,
                f"checksum verification failed: sha256 of {relpath} is {sha}, the manifest says "
                f"{expected['sha256']} (file corrupted or modified)",
            )
    return sorted(files)


def unlisted_files(folder: str, manifest: dict) -> list[str]:
    """Files in the folder that the manifest does not list (ignored by a restore, reported)."""
    listed = set(manifest["files"]) | {MANIFEST_NAME}
    found = []
    for directory, _, names in os.walk(folder):
        for name in names:
            relpath = os.path.relpath(os.path.join(directory, name), folder).replace(os.sep, "/")
            if relpath not in listed:
                found.append(relpath)
    return sorted(found)


# --- row counts -----------------------------------------------------------------------------------------


def compare_counts(expected: dict[str, int], actual: dict[str, int]) -> list[str]:
    """Differences between two ``{"schema.table": rows}`` maps, one readable line each (empty: equal)."""
    problems = []
    for table in sorted(set(expected) | set(actual)):
        if table not in actual:
            problems.append(f"{table}: missing after the restore (backup had {expected[table]} rows)")
        elif table not in expected:
            problems.append(f"{table}: not in the backup ({actual[table]} rows after the restore)")
        elif expected[table] != actual[table]:
            problems.append(
                f"{table}: {actual[table]} rows after the restore, the backup had {expected[table]}"
            )
    return problems


def count_report(expected: dict[str, int], actual: dict[str, int]) -> list[str]:
    """One line per table, ``schema.table  rows  (backup: n)`` for the playbook's summary."""
    width = max((len(table) for table in set(expected) | set(actual)), default=0)
    lines = []
    for table in sorted(set(expected) | set(actual)):
        got, want = actual.get(table), expected.get(table)
        status = "ok" if got == want else "DIFFERS"
        lines.append(f"{table.ljust(width)}  {got if got is not None else '-':>10}  backup {want}  {status}")
    return lines


# --- globals --------------------------------------------------------------------------------------------

_CREATE_ROLE = re.compile(r"^CREATE ROLE (?P<role>.+);$")
_ALTER_ROLE_WITH = re.compile(r"^ALTER ROLE (?P<role>.+?) WITH .*;$")


def quote_ident(name: str) -> str:
    """PostgreSQL identifier as pg_dumpall writes it: bare when it is a plain lower-case name."""
    if re.fullmatch(r"[a-z_][a-z0-9_$]*", name):
        return name
    return '"' + name.replace('"', '""') + '"'


_TOLERATED = re.compile(r"^(ALTER ROLE|GRANT|REVOKE|COMMENT ON ROLE|SECURITY LABEL ON ROLE) .*;$")
SKIPPED_MARK = "cmx-restore-skipped"


def _tolerated(line: str) -> str:
    """A role statement run so that a lack of privilege (a managed server's own roles, SUPERUSER or
    REPLICATION attributes a non-superuser may not set) is a WARNING, not an error (a subtransaction)."""
    literal = "'" + line.replace("'", "''") + "'"
    return (
        f"DO $cmx_restore$ BEGIN EXECUTE {literal}; EXCEPTION WHEN insufficient_privilege "
        f"OR feature_not_supported THEN RAISE WARNING '{SKIPPED_MARK}: % (%)', {literal}, SQLERRM; "
        "END $cmx_restore$;"
    )


def prepare_globals_sql(
    sql: str, managed_roles: list[str] | tuple[str, ...] = (), tolerate_privileges: bool = False
) -> str:
    """Make ``pg_dumpall --globals-only`` output restorable onto a running cluster.

    * ``CREATE ROLE r;`` becomes a block that tolerates an existing role (the bootstrap role and the
      stack's ``cmx_readonly`` always exist), so the script runs with ``ON_ERROR_STOP``;
    * ``ALTER ROLE r WITH ... PASSWORD ...`` is dropped for ``managed_roles`` (the inventory's login role):
      its password belongs to the inventory, and PgBouncer's user list holds that role's SCRAM secret,
      which a restored older secret would no longer match.
    Everything else (other roles' attributes and passwords, memberships, per-role settings) is kept.
    * ``tolerate_privileges`` (a restore as a non-superuser, e.g. a managed server's master login): each
      one-line ALTER ROLE / GRANT / REVOKE / COMMENT statement it may not run is skipped with a WARNING
      (``cmx-restore-skipped: <statement> (<error>)``) instead of aborting the transaction.
    """
    managed = {quote_ident(role) for role in managed_roles}
    out = []
    for line in sql.splitlines():
        create = _CREATE_ROLE.match(line)
        alter = _ALTER_ROLE_WITH.match(line)
        if create:
            out.append(
                f"DO $cmx_restore$ BEGIN {line} EXCEPTION WHEN duplicate_object THEN NULL; END $cmx_restore$;"
            )
        elif alter and alter.group("role") in managed:
            out.append(f"-- ALTER ROLE {alter.group('role')} WITH ... skipped: managed by the inventory")
        elif tolerate_privileges and _TOLERATED.match(line) and "$cmx_restore$" not in line:
            out.append(_tolerated(line))
        else:
            out.append(line)
    return "\n".join(out) + "\n"


# --- Redis snapshot -------------------------------------------------------------------------------------


def check_rdb(path: str) -> None:
    """An RDB file starts with ``REDIS`` + 4 version digits and ends with the EOF opcode and a checksum."""
    size = os.path.getsize(path)
    with open(path, "rb") as handle:
        head = handle.read(9)
        if size < 18 or not re.fullmatch(rb"REDIS[0-9]{4}", head):
            raise BackupError(f"{path} is not an RDB snapshot (header {head[:9]!r}, {size} bytes)")
        handle.seek(size - 9)
        if handle.read(1) != b"\xff":
            raise BackupError(f"{path} is truncated: no RDB end-of-file marker before the checksum")


def parse_redis_info(text: str) -> dict:
    """``INFO`` output as a dict; ``keyspace`` lines (``db0:keys=3,expires=0,...``) become dicts of ints."""
    info: dict = {"keyspace": {}}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or ":" not in line:
            continue
        key, value = line.split(":", 1)
        if re.fullmatch(r"db[0-9]+", key):
            fields = dict(item.split("=", 1) for item in value.split(",") if "=" in item)
            info["keyspace"][key] = {
                name: int(fields[name]) for name in ("keys", "expires") if name in fields
            }
        else:
            info[key] = value
    return info


def redis_key_counts(info: dict) -> dict[str, int]:
    """``{"db0": keys, ...}`` from :func:`parse_redis_info`; empty databases are absent, as in INFO."""
    return {db: values.get("keys", 0) for db, values in sorted(info.get("keyspace", {}).items())}
