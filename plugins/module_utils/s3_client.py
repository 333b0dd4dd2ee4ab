"""The one S3 client of the collection: path-style requests signed with SigV4 (s3sig), standard library only.

Used by cmx_s3_bucket (bucket + CORS) and the backup modules (list, download, upload). No proxy from the
environment is ever used: requests go straight to the endpoint.
"""

from __future__ import annotations

import urllib.error
import urllib.request
import xml.etree.ElementTree as ET
from dataclasses import dataclass

from ansible_collections.cleanmatex.infra.plugins.module_utils import s3sig

_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass
class Client:
    url: str
    access_key: str
    secret_key: str
    region: str = s3sig.DEFAULT_REGION
    timeout: float = 60.0

    def open(
        self,
        method: str,
        path: str,
        query: list[tuple[str, str]] | None = None,
        headers=None,
        body=None,
        payload_hash: str | None = None,
    ):
        """Send a signed request; returns the open response (the caller reads and closes it).
        ``path`` is raw (``/bucket/key``, the key unencoded, '?' and '#' included): it is encoded, never
        parsed. HTTP error statuses raise urllib.error.HTTPError."""
        signed = s3sig.sign(
            method,
            self.url,
            self.access_key,
            self.secret_key,
            region=self.region,
            headers=dict(headers or {}),
            payload_hash=payload_hash or s3sig.EMPTY_SHA256,
            path=path,
            query=query,
        )
        url = s3sig.request_url(self.url, path, query)
        request = urllib.request.Request(url, data=body, method=method, headers=signed)
        return _OPENER.open(request, timeout=self.timeout)

    def request(
        self,
        method: str,
        path: str,
        query: list[tuple[str, str]] | None = None,
        headers=None,
        body: bytes = b"",
    ) -> tuple[int, bytes]:
        """Send a small signed request and read the answer: (status, body); error statuses are returned."""
        import hashlib

        try:
            with self.open(
                method, path, query, headers, body or None, hashlib.sha256(body).hexdigest() if body else None
            ) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as error:
            with error:
                return error.code, error.read()


def strip_namespaces(root: ET.Element) -> ET.Element:
    """Drop XML namespaces: servers differ in whether they send one."""
    for element in root.iter():
        element.tag = element.tag.rsplit("}", 1)[-1]
    return root


def error_code(body: bytes) -> str:
    """The <Code> of an S3 error document ('' for an empty body, e.g. a HEAD answer)."""
    if not body:
        return ""
    try:
        return ET.fromstring(body).findtext("Code") or ""
    except ET.ParseError:
        return body[:200].decode(errors="replace").strip()


def error_message(operation: str, status: int, body: bytes) -> str:
    """'<operation>: HTTP <status> <Code>' plus a credentials hint for 401/403."""
    code = error_code(body)
    hint = " (check the S3 access key and secret key)" if status in (401, 403) else ""
    return f"{operation}: HTTP {status}{' ' + code if code else ''}{hint}"
