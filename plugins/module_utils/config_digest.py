"""Digests of configuration that holds secrets, safe to publish in container labels.

A container label (``org.cleanmatex.config-hash``) changes when a mounted file or a secret changes, which
makes Compose recreate the container. A plain SHA-256 of a password in a label lets anyone who can run
``docker inspect`` (or reads a pasted inspect output) test password guesses offline. These digests are
HMAC-SHA256 under a random key generated once per host into the stack's secrets folder and kept across
converges: the same inputs give the same label (idempotence), a changed secret gives a new one, and without
the key a label says nothing about the secret.

Plain Python, unit-tested; plugins/modules/cmx_config_digest.py wraps it (the key never leaves the host).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets

KEY_BYTES = 32
KEY_MODE = 0o600
_KEY_PATTERN = re.compile(r"^[0-9a-f]{64}$")


class KeyFileError(Exception):
    """The key file exists but does not hold a key this module wrote."""


def read_key(path: str) -> bytes | None:
    """The key stored at `path`, or None when there is no file."""
    try:
        with open(path, encoding="ascii") as handle:
            text = handle.read().strip()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as error:
        raise KeyFileError(f"{path}: cannot read the label key ({error})") from error
    if not _KEY_PATTERN.match(text):
        raise KeyFileError(
            f"{path} does not hold a label key (64 hex digits). Fix: delete it; the next converge writes "
            "a new one (containers whose labels change are recreated once)."
        )
    return bytes.fromhex(text)


def ensure_key(path: str, check_mode: bool = False) -> tuple[bytes, bool]:
    """(key, created): the key at `path`, written first (random, mode 0600, its folder 0700) when missing.

    In check mode a missing key is generated but not written (the caller reports a change)."""
    key = read_key(path)
    if key is not None:
        return key, False
    key = secrets.token_bytes(KEY_BYTES)
    if check_mode:
        return key, True
    folder = os.path.dirname(path) or "."
    if not os.path.isdir(folder):
        os.makedirs(os.path.dirname(folder) or ".", mode=0o755, exist_ok=True)
        os.makedirs(folder, mode=0o700, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, KEY_MODE)
    except FileExistsError:  # written meanwhile by a concurrent run: use that one
        return read_key(path) or key, False
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write(key.hex() + "\n")
    os.chmod(path, KEY_MODE)
    return key, True


def config_digest(key: bytes, parts) -> str:
    """HMAC-SHA256 (hex) of `parts` (a string or a list of strings) under `key`.

    Lists are encoded as JSON, so ['a:b', 'c'] and ['a', 'b:c'] differ."""
    message = parts if isinstance(parts, str) else json.dumps(list(parts), ensure_ascii=False)
    return hmac.new(key, message.encode("utf-8"), hashlib.sha256).hexdigest()


def digests(key: bytes, inputs: dict) -> dict[str, str]:
    """{name: config_digest(key, parts)} for every entry of `inputs`."""
    return {name: config_digest(key, parts) for name, parts in inputs.items()}


# Shared by the cmx_config_digest module and its action plugin.
ARGUMENT_SPEC = {
    "key_file": {"type": "path", "required": True},
    "inputs": {"type": "dict", "required": True, "no_log": True},
}


def task_result(params: dict, check_mode: bool) -> dict:
    """The module's result; {"failed": True, "msg": ...} when the key file is not usable."""
    try:
        key, created = ensure_key(params["key_file"], check_mode)
    except KeyFileError as error:
        return {"failed": True, "msg": str(error)}
    return {"changed": created, "key_created": created, "digests": digests(key, params["inputs"])}
