# Copyright: CleanMateX DevOps
# Apache-2.0 (see galaxy.yml)
"""Copy every object of a bucket into a backup folder and back, with the standard library only.

Path-style requests through the collection's S3 client (module_utils/s3_client.py, as cmx_s3_bucket):
ListObjectsV2 with continuation tokens, GET streamed into a file while its sha256 is computed, PUT
streamed from the file with that sha256 as the signed payload hash (the server checks the body against
it). No boto3, so it runs on any target that has Python, and several transfers run in parallel threads.

Object bodies are stored content-addressed (``objects/<ab>/<sha256>``, see backup.object_file): any key,
even ``../x`` or ``a/`` next to ``a/b``, maps to a safe file name, and identical bodies are stored once.
The manifest keeps key -> file, size, sha256, Content-Type and user metadata (x-amz-meta-*).

A body is kept only when its size equals the announced Content-Length and, for a single-part object (an
ETag without '-', not SSE-KMS/SSE-C), its md5 equals the ETag. Transient faults (connection errors, a body
cut short, HTTP 5xx/429) are retried RETRY_DELAYS; then the error names the key.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET
from concurrent.futures import ThreadPoolExecutor

from ansible_collections.cleanmatex.infra.plugins.module_utils import backup
from ansible_collections.cleanmatex.infra.plugins.module_utils.s3_client import (
    Client,
    error_code,
    error_message,
    strip_namespaces,
)

# Headers kept with an object and sent again on restore.
KEPT_HEADERS = (
    "content-type",
    "content-encoding",
    "content-disposition",
    "content-language",
    "cache-control",
)


# Pauses (seconds) before the 2nd, 3rd ... attempt of a request that failed transiently.
RETRY_DELAYS = (0.5, 2.0, 5.0)
RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
_MD5_ETAG = re.compile(r"^[0-9a-fA-F]{32}$")


class S3BackupError(backup.BackupError):
    """An S3 request failed; the message names the operation, the key and the HTTP status."""

    def __init__(self, message: str, status: int = 0, code: str = ""):
        super().__init__(message)
        self.status, self.code = status, code


def object_path(bucket: str, key: str) -> str:
    """The raw request path of an object: Client.open encodes it ('?', '#', '%' stay in the key)."""
    return f"/{bucket}/{key}"


def _error(operation: str, exc: Exception) -> S3BackupError:
    if isinstance(exc, urllib.error.HTTPError):
        with exc:
            body = exc.read(65536)
        return S3BackupError(error_message(operation, exc.code, body), exc.code, error_code(body))
    return S3BackupError(f"{operation}: {exc}")


def _transient(exc: Exception) -> bool:
    if isinstance(exc, urllib.error.HTTPError):
        return exc.code in RETRY_STATUSES
    # URLError, ConnectionError and TimeoutError are OSErrors; a local one (disk full) is not retried.
    return isinstance(
        exc,
        (
            urllib.error.URLError,
            ConnectionError,
            TimeoutError,
            http.client.HTTPException,
            backup.TransferError,
        ),
    )


def _retrying(operation: str, attempt):
    """``attempt()``, again after each of RETRY_DELAYS while it fails transiently; else S3BackupError."""
    for number, delay in enumerate((*RETRY_DELAYS, None), start=1):
        try:
            return attempt()
        except (urllib.error.URLError, OSError, http.client.HTTPException, backup.TransferError) as exc:
            if delay is None or not _transient(exc):
                error = _error(operation, exc)
                if number > 1:
                    error = S3BackupError(f"{error} (failed {number} attempts)", error.status, error.code)
                raise error from exc
            if isinstance(exc, urllib.error.HTTPError):
                exc.close()
            time.sleep(delay)
    raise AssertionError("unreachable")


def parse_list_page(body: bytes) -> tuple[list[dict], str | None]:
    """One ListObjectsV2 page: ([{"key", "size", "etag"}], next continuation token or None)."""
    root = strip_namespaces(ET.fromstring(body))
    url_encoded = (root.findtext("EncodingType") or "").lower() == "url"
    objects = []
    for node in root.findall("Contents"):
        key = node.findtext("Key") or ""
        if url_encoded:  # S3 form-encodes: a space is "+", a "+" is "%2B" (as botocore decodes it)
            key = urllib.parse.unquote_plus(key)
        objects.append(
            {
                "key": key,
                "size": int(node.findtext("Size") or 0),
                "etag": (node.findtext("ETag") or "").strip('"'),
            }
        )
    truncated = (root.findtext("IsTruncated") or "false").lower() == "true"
    token = root.findtext("NextContinuationToken")
    if truncated and not token:
        raise S3BackupError("ListObjectsV2: the listing is truncated but has no continuation token")
    return objects, token if truncated else None


def _list_page(client: Client, bucket: str, query: list[tuple[str, str]]) -> tuple[list[dict], str | None]:
    with client.open("GET", f"/{bucket}", query) as response:
        body = response.read()
        length = response.headers.get("Content-Length")
    if length and length.isdigit() and len(body) != int(length):
        raise backup.TransferError(f"received {len(body)} bytes of the listing, {length} announced")
    return parse_list_page(body)


def list_objects(client: Client, bucket: str) -> list[dict]:
    """Every object of the bucket, in key order."""
    objects: list[dict] = []
    token = None
    while True:
        query = [("encoding-type", "url"), ("list-type", "2"), ("max-keys", "1000")]
        if token:
            query.append(("continuation-token", token))
        page, token = _retrying(
            f"list the objects of bucket {bucket}", lambda q=query: _list_page(client, bucket, q)
        )
        objects.extend(page)
        if not token:
            return sorted(objects, key=lambda item: item["key"])


def download(client: Client, bucket: str, item: dict, folder: str) -> dict | None:
    """GET one listed object (``{"key", "size"}``) into the folder's content-addressed store, checked
    against its Content-Length and single-part ETag, retried; returns its manifest entry, or None when the
    object was deleted since the listing (404 NoSuchKey)."""
    key = item["key"]
    try:
        return _retrying(
            f"download s3://{bucket}/{key}", lambda: _download_once(client, bucket, item, folder)
        )
    except S3BackupError as exc:
        if exc.status == 404 and exc.code == "NoSuchKey":  # not NoSuchBucket: that still fails
            return None
        raise


def _download_once(client: Client, bucket: str, item: dict, folder: str) -> dict:
    staging = os.path.join(folder, "objects", ".incoming")
    os.makedirs(staging, mode=0o700, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=staging)
    try:
        md5 = hashlib.md5(usedforsecurity=False)
        with os.fdopen(fd, "wb") as target, client.open("GET", object_path(bucket, item["key"])) as response:
            headers = {name.lower(): value for name, value in response.headers.items()}
            announced = headers.get("content-length", "")
            expected = int(announced) if announced.isdigit() else item.get("size")
            size, sha = backup.copy_stream(response, target, expected_size=expected, digests=(md5,))
        etag = headers.get("etag", "").strip('"')
        # The ETag of a single-part object is its md5 (not with SSE-KMS or SSE-C, nor multipart: '-N').
        encrypted = headers.get("x-amz-server-side-encryption", "").startswith("aws:kms") or (
            "x-amz-server-side-encryption-customer-algorithm" in headers
        )
        if _MD5_ETAG.match(etag) and not encrypted and md5.hexdigest() != etag.lower():
            raise backup.TransferError(f"the body's md5 {md5.hexdigest()} differs from its ETag {etag}")
        relpath = backup.object_file(sha)
        final = os.path.join(folder, relpath)
        os.makedirs(os.path.dirname(final), mode=0o700, exist_ok=True)
        os.replace(temporary, final)  # identical bodies: same name, same content
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise
    return {
        "key": item["key"],
        "size": size,
        "sha256": sha,
        "file": relpath,
        "headers": {name: headers[name] for name in KEPT_HEADERS if name in headers},
        "metadata": {
            name[len("x-amz-meta-") :]: value
            for name, value in headers.items()
            if name.startswith("x-amz-meta-")
        },
    }


def upload(client: Client, bucket: str, entry: dict, folder: str) -> None:
    """PUT one object from the backup folder, signed with its (already verified) sha256; retried."""
    _retrying(f"upload s3://{bucket}/{entry['key']}", lambda: _upload_once(client, bucket, entry, folder))


def _upload_once(client: Client, bucket: str, entry: dict, folder: str) -> None:
    path = os.path.join(folder, backup.safe_relpath(entry["file"]))
    headers = {"Content-Length": str(entry["size"])}
    headers.update({name.title(): value for name, value in (entry.get("headers") or {}).items()})
    headers.update({f"x-amz-meta-{name}": value for name, value in (entry.get("metadata") or {}).items()})
    with (
        open(path, "rb") as body,
        client.open(
            "PUT",
            object_path(bucket, entry["key"]),
            headers=headers,
            body=body if entry["size"] else b"",
            payload_hash=entry["sha256"],
        ) as response,
    ):
        response.read()


def backup_bucket(client: Client, bucket: str, folder: str, workers: int = 8) -> dict:
    """Download every object. Returns ``{"objects": [...], "files": {relpath: {size, sha256}}, "bytes",
    "skipped_deleted": [keys listed but deleted before their GET]}``."""
    listed = list_objects(client, bucket)
    with ThreadPoolExecutor(max_workers=max(workers, 1)) as pool:
        results = list(pool.map(lambda item: download(client, bucket, item, folder), listed))
    staging = os.path.join(folder, "objects", ".incoming")
    if os.path.isdir(staging):
        os.rmdir(staging)
    entries = [entry for entry in results if entry is not None]
    deleted = [item["key"] for item, entry in zip(listed, results, strict=True) if entry is None]
    files = {entry["file"]: {"size": entry["size"], "sha256": entry["sha256"]} for entry in entries}
    return {
        "objects": entries,
        "files": files,
        "bytes": sum(entry["size"] for entry in entries),
        "skipped_deleted": deleted,
    }


def restore_bucket(client: Client, bucket: str, folder: str, objects: list[dict], workers: int = 8) -> dict:
    """PUT every object of the manifest; report the objects in the bucket that the backup does not have."""
    with ThreadPoolExecutor(max_workers=max(workers, 1)) as pool:
        list(pool.map(lambda entry: upload(client, bucket, entry, folder), objects))
    wanted = {entry["key"] for entry in objects}
    present = list_objects(client, bucket)
    extra = [item["key"] for item in present if item["key"] not in wanted]
    missing = sorted(wanted - {item["key"] for item in present})
    if missing:
        raise S3BackupError(
            f"objects missing from bucket {bucket} after the restore: {', '.join(missing[:20])}"
        )
    return {"uploaded": len(objects), "bytes": sum(entry["size"] for entry in objects), "extra": extra}
