"""Ship container images to a host that has no registry: save them on the control machine, load them there.

The control machine writes each missing image as a gzip-compressed `docker save` archive into its cache
(named after the image's content-hash tag, so an archive never changes under a name) and records its
sha256 and the image ID. The host verifies the archive's sha256, loads it, checks that the image it now
has carries the same ID (Docker image IDs are content addresses), then deletes the archive. Nothing is
shipped for an image the host already has.

Plain Python: the cmx_image_archive and cmx_image_load modules wrap it; tests drive it against the real
engine.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import re
import subprocess
import tempfile

CHUNK = 1024 * 1024


class TransferError(Exception):
    """An image could not be saved, verified or loaded; the message names the image and the fix."""


def archive_name(ref: str) -> str:
    """cmx/postgres:17-abc123 -> cmx_postgres_17-abc123.tar.gz (one flat file per image reference)."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", ref) + ".tar.gz"


def file_sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def image_id(ref: str, docker: str = "docker") -> str | None:
    done = subprocess.run(
        [docker, "image", "inspect", "--format", "{{.Id}}", ref], capture_output=True, text=True, check=False
    )
    return done.stdout.strip() if done.returncode == 0 and done.stdout.strip() else None


def _read_record(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as handle:
            record = json.load(handle)
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def save_archive(ref: str, cache_dir: str, docker: str = "docker") -> tuple[dict, bool]:
    """({ref, id, file, sha256, size}, written) for `ref`, reusing the cached archive when its record
    still matches the local image and the file. The archive is written to a temporary file and renamed."""
    wanted = image_id(ref, docker)
    if wanted is None:
        raise TransferError(
            f"{ref}: the control machine has no such image to ship (the images step pulls or builds it)"
        )
    os.makedirs(cache_dir, mode=0o700, exist_ok=True)
    path = os.path.join(cache_dir, archive_name(ref))
    record_path = path + ".json"
    record = _read_record(record_path)
    if (
        record.get("id") == wanted
        and os.path.isfile(path)
        and os.path.getsize(path) == record.get("size")
        and file_sha256(path) == record.get("sha256")
    ):
        return record, False
    digest = hashlib.sha256()
    fd, temp = tempfile.mkstemp(dir=cache_dir, prefix=".saving-")
    try:
        with os.fdopen(fd, "wb") as raw:
            counting = _HashingWriter(raw, digest)
            with gzip.GzipFile(fileobj=counting, mode="wb", compresslevel=1, mtime=0) as packed:
                saver = subprocess.Popen(
                    [docker, "save", ref], stdout=subprocess.PIPE, stderr=subprocess.PIPE
                )
                for chunk in iter(lambda: saver.stdout.read(CHUNK), b""):
                    packed.write(chunk)
                _, error = saver.communicate()
                if saver.returncode != 0:
                    raise TransferError(
                        f"{ref}: docker save failed: {error.decode(errors='replace').strip()}"
                    )
        os.chmod(temp, 0o600)
        os.replace(temp, path)
    except BaseException:
        if os.path.exists(temp):
            os.unlink(temp)
        raise
    record = {
        "ref": ref,
        "id": wanted,
        "file": path,
        "sha256": digest.hexdigest(),
        "size": os.path.getsize(path),
    }
    with open(record_path, "w", encoding="utf-8") as handle:
        json.dump(record, handle, indent=2)
    _prune_older(ref, cache_dir, keep=path)
    return record, True


class _HashingWriter:
    """File-like wrapper that hashes what is written through it (the archive's sha256 in one pass)."""

    def __init__(self, raw, digest):
        self._raw, self._digest = raw, digest

    def write(self, data):
        self._digest.update(data)
        return self._raw.write(data)

    def flush(self):
        self._raw.flush()


def _prune_older(ref: str, cache_dir: str, keep: str) -> None:
    """Drop the archives of the same repository with another tag (a rebuilt image supersedes them)."""
    repository = ref.rsplit(":", 1)[0]
    prefix = archive_name(repository + ":")[: -len(".tar.gz")]
    for name in os.listdir(cache_dir):
        path = os.path.join(cache_dir, name)
        if name.startswith(prefix) and path not in (keep, keep + ".json"):
            os.unlink(path)


def load_archive(entry: dict, docker: str = "docker") -> bool:
    """Load one shipped archive ({ref, id, file, sha256}) on the host. Returns False when the host already
    had that exact image (the archive is then only removed). The archive is removed in every case."""
    path = entry["file"]
    try:
        if image_id(entry["ref"], docker) == entry["id"]:
            return False
        actual = file_sha256(path)
        if actual != entry["sha256"]:
            raise TransferError(
                f"{entry['ref']}: the shipped archive {path} has sha256 {actual}, the control machine wrote "
                f"{entry['sha256']}: it was damaged on the way; nothing was loaded. Re-run to ship it again."
            )
        done = subprocess.run([docker, "load", "-i", path], capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise TransferError(f"{entry['ref']}: docker load failed: {(done.stderr or done.stdout).strip()}")
        loaded = image_id(entry["ref"], docker)
        if loaded != entry["id"]:
            raise TransferError(
                f"{entry['ref']}: after loading, the host's image is {loaded}, not {entry['id']} as on the "
                "control machine"
            )
        return True
    finally:
        if os.path.exists(path):
            os.unlink(path)


def missing_refs(refs: list[str], present: list[str] | None, docker: str = "docker") -> list[str]:
    """The references the host lacks: from its image list when known, otherwise asked one by one."""
    if present is not None:
        have = set(present)
        return [ref for ref in refs if ref not in have]
    return [ref for ref in refs if image_id(ref, docker) is None]


ARCHIVE_ARGUMENT_SPEC = {
    "images": {"type": "list", "elements": "str", "required": True},
    "cache_dir": {"type": "path", "required": True},
}


def archive_result(params: dict, check_mode: bool) -> dict:
    """cmx_image_archive: the archive of every image in `images`, written when not cached."""
    archives, written = [], []
    try:
        for ref in params["images"]:
            if check_mode:
                archives.append({"ref": ref, "id": image_id(ref), "file": "", "sha256": "", "size": 0})
                continue
            record, fresh = save_archive(ref, params["cache_dir"])
            archives.append(record)
            if fresh:
                written.append(ref)
    except (TransferError, OSError) as error:
        return {"failed": True, "msg": str(error)}
    # Writing the controller's cache is not a change to any host.
    return {"changed": False, "archives": archives, "written": written}


LOAD_ARGUMENT_SPEC = {
    "archives": {
        "type": "list",
        "elements": "dict",
        "required": True,
        "options": {
            "ref": {"type": "str", "required": True},
            "id": {"type": "str", "required": True},
            "file": {"type": "path", "required": True},
            "sha256": {"type": "str", "required": True},
            "size": {"type": "int"},
        },
    },
    "directory": {"type": "path"},
}


def load_result(params: dict, check_mode: bool) -> dict:
    """cmx_image_load: load every archive whose image the host lacks."""
    loaded = []
    try:
        for entry in params["archives"]:
            if params["directory"]:  # the copies sit there, under the control machine's file names
                entry = {**entry, "file": os.path.join(params["directory"], os.path.basename(entry["file"]))}
            if check_mode or load_archive(entry):
                loaded.append(entry["ref"])
    except (TransferError, OSError) as error:
        return {"failed": True, "msg": str(error), "loaded": loaded, "changed": bool(loaded)}
    return {"changed": bool(loaded), "loaded": loaded}
