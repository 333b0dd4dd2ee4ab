"""Write a set of files and folders in one pass, touching only those whose content or mode differ.

Plain Python (no Ansible imports) so it is unit-tested directly; plugins/modules/cmx_files.py wraps it.
Writes are atomic (temporary file in the same folder, then rename), so a reader never sees half a file.
"""

from __future__ import annotations

import grp
import os
import pwd
import shlex
import stat
import subprocess
import tempfile
from dataclasses import dataclass, field


@dataclass
class SyncResult:
    changed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)

    @property
    def any_changed(self) -> bool:
        return bool(self.changed)


class ValidationError(Exception):
    """A file's validate command refused the new content; nothing was written for it."""


def _mode(value: str | int) -> int:
    return int(value, 8) if isinstance(value, str) else value


def _current_mode(path: str) -> int | None:
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        return None


def _read(path: str) -> bytes | None:
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except FileNotFoundError:
        return None


def _ids(owner: str | None, group: str | None) -> tuple[int, int]:
    """Numeric (uid, gid) for names or numbers; -1 leaves that one as it is."""
    uid = -1 if not owner else int(owner) if str(owner).isdigit() else pwd.getpwnam(owner).pw_uid
    gid = -1 if not group else int(group) if str(group).isdigit() else grp.getgrnam(group).gr_gid
    return uid, gid


def _owner_differs(path: str, uid: int, gid: int) -> bool:
    info = os.stat(path)
    return (uid != -1 and info.st_uid != uid) or (gid != -1 and info.st_gid != gid)


def ensure_directory(
    path: str,
    mode: str | int,
    check_mode: bool,
    result: SyncResult,
    owner: str | None = None,
    group: str | None = None,
) -> None:
    wanted = _mode(mode)
    uid, gid = _ids(owner, group)
    current = _current_mode(path)
    if current == wanted and os.path.isdir(path) and not _owner_differs(path, uid, gid):
        result.unchanged.append(path)
        return
    result.changed.append(path)
    if check_mode:
        return
    os.makedirs(path, exist_ok=True)
    os.chmod(path, wanted)
    os.chown(path, uid, gid)


def _validate(command: str, candidate: str, path: str) -> None:
    argv = [candidate if part == "%s" else part for part in shlex.split(command)]
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        detail = (done.stderr or done.stdout).strip()
        raise ValidationError(f"{path}: `{command}` refused the new content (rc={done.returncode}): {detail}")


def _kept_ids(path: str, uid: int, gid: int) -> tuple[int, int]:
    """A rewrite keeps the replaced file's owner and group unless new ones are asked for (as root; anyone
    else can only keep their own)."""
    try:
        existing = os.stat(path)
    except FileNotFoundError:
        return uid, gid
    if os.geteuid() != 0:
        return uid, gid
    return (existing.st_uid if uid == -1 else uid), (existing.st_gid if gid == -1 else gid)


def write_file(
    path: str,
    content: str,
    mode: str | int,
    check_mode: bool,
    result: SyncResult,
    validate: str | None = None,
    only_if_missing: bool = False,
    owner: str | None = None,
    group: str | None = None,
) -> None:
    wanted_mode = _mode(mode)
    uid, gid = _ids(owner, group)
    data = content.encode()
    current = _read(path)
    same_content = current is not None and (only_if_missing or current == data)
    if same_content and _current_mode(path) == wanted_mode and not _owner_differs(path, uid, gid):
        result.unchanged.append(path)
        return
    if same_content:
        # Only the mode or the owner differs.
        result.changed.append(path)
        if not check_mode:
            os.chmod(path, wanted_mode)
            os.chown(path, uid, gid)
        return
    result.changed.append(path)
    if check_mode:
        return
    folder = os.path.dirname(path) or "."
    handle, temp = tempfile.mkstemp(dir=folder, prefix=".cmx-")
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(temp, wanted_mode)
        os.chown(temp, *_kept_ids(path, uid, gid))
        if validate:
            _validate(validate, temp, path)
        os.replace(temp, path)
    except BaseException:
        if os.path.exists(temp):
            os.unlink(temp)
        raise


def sync(directories: list[dict], files: list[dict], check_mode: bool = False) -> SyncResult:
    """Create `directories` ({path, mode}), then write `files` ({path, content, mode, validate?,
    only_if_missing?}) in order, so an earlier file (compose's .env) exists when a later one is validated."""
    result = SyncResult()
    for entry in directories:
        ensure_directory(
            entry["path"],
            entry["mode"],
            check_mode,
            result,
            owner=entry.get("owner"),
            group=entry.get("group"),
        )
    for entry in files:
        write_file(
            entry["path"],
            entry["content"],
            entry["mode"],
            check_mode,
            result,
            validate=entry.get("validate"),
            only_if_missing=bool(entry.get("only_if_missing")),
            owner=entry.get("owner"),
            group=entry.get("group"),
        )
    return result


_FILE_OPTIONS = {
    "path": {"type": "path", "required": True},
    "content": {"type": "str", "required": True},
    "mode": {"type": "str", "required": True},
    "only_if_missing": {"type": "bool", "default": False},
    "owner": {"type": "str"},
    "group": {"type": "str"},
}
# Shared by the cmx_files module and its action plugin.
ARGUMENT_SPEC = {
    "directories": {
        "type": "list",
        "elements": "dict",
        "default": [],
        "options": {
            "path": {"type": "path", "required": True},
            "mode": {"type": "str", "required": True},
            "owner": {"type": "str"},
            "group": {"type": "str"},
        },
    },
    "files": {
        "type": "list",
        "elements": "dict",
        "default": [],
        "options": {**_FILE_OPTIONS, "validate": {"type": "str"}},
    },
    "secret_files": {
        "type": "list",
        "elements": "dict",
        "default": [],
        "options": {**_FILE_OPTIONS, "content": {"type": "str", "required": True, "no_log": True}},
    },
    "owner": {"type": "str"},
    "group": {"type": "str"},
}


def _with_default_owner(entries: list[dict], owner: str | None, group: str | None) -> list[dict]:
    """Entries without an owner (group) of their own get the call's."""
    return [
        {**entry, "owner": entry.get("owner") or owner, "group": entry.get("group") or group}
        for entry in entries
    ]


def task_result(params: dict, check_mode: bool) -> dict:
    """The module's result; {"failed": True, "msg": ...} on a refused validation or a failed write."""
    try:
        owner, group = params.get("owner"), params.get("group")
        result = sync(
            _with_default_owner(params["directories"], owner, group),
            _with_default_owner(params["secret_files"] + params["files"], owner, group),
            check_mode=check_mode,
        )
    except ValidationError as error:
        return {"failed": True, "msg": str(error)}
    except KeyError as error:
        return {"failed": True, "msg": f"unknown owner or group: {error}"}
    except OSError as error:
        return {"failed": True, "msg": f"could not write {error.filename}: {error.strerror}"}
    return {
        "changed": result.any_changed,
        "changed_paths": result.changed,
        "unchanged_paths": result.unchanged,
    }
