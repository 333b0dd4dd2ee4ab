"""The one S3 client of the collection: requests signed with SigV4 (s3sig), standard library only.

Used by cmx_s3_bucket (bucket + CORS) and the backup modules (list, download, upload). No proxy from the
environment is ever used: requests go straight to the endpoint.

* ``addressing="path"`` (default): ``<endpoint>/<bucket>/<key>``; ``"virtual"``: ``https://<bucket>.<endpoint
  host>/<key>`` (AWS S3 and providers that want the bucket in the host name); the signature covers the host
  and path actually sent.
* https endpoints are verified (certificate chain and host name) against ``ca_file`` when given, else
  against the system's trusted CAs.
"""

from __future__ import annotations

import ssl
import urllib.error
import urllib.request
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

from ansible_collections.cleanmatex.infra.plugins.module_utils import s3sig


def tls_context(ca_file: str | None = None) -> ssl.SSLContext:
    """Verify the server's certificate chain and host name against ``ca_file`` (PEM) or the system CAs."""
    context = ssl.create_default_context(cafile=ca_file or None)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


@dataclass
class Client:
    url: str
    access_key: str
    secret_key: str
    region: str = s3sig.DEFAULT_REGION
    timeout: float = 60.0
    ca_file: str | None = None
    addressing: str = "path"
    _opener: urllib.request.OpenerDirector = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        if self.addressing not in s3sig.ADDRESSING_STYLES:
            raise ValueError(f"S3 addressing must be path or virtual, not {self.addressing!r}")
        handlers: list = [urllib.request.ProxyHandler({})]
        if self.url.lower().startswith("https:"):
            handlers.append(urllib.request.HTTPSHandler(context=tls_context(self.ca_file)))
        self._opener = urllib.request.build_opener(*handlers)

    def target(self, path: str) -> tuple[str, str]:
        """(base URL, path below it) of the raw request path ``/bucket/key``, as the addressing wants."""
        if self.addressing == "path":
            return self.url, path
        bucket, rest = s3sig.split_bucket(path)
        base, prefix = s3sig.bucket_base(self.url, bucket, self.addressing)
        return base, prefix + rest

    def build(
        self,
        method: str,
        path: str,
        query: list[tuple[str, str]] | None = None,
        headers=None,
        payload_hash: str | None = None,
    ) -> tuple[str, dict]:
        """The URL to send to and the signed headers (Host, X-Amz-Date, Authorization ...) of a request."""
        base, below = self.target(path)
        signed = s3sig.sign(
            method,
            base,
            self.access_key,
            self.secret_key,
            region=self.region,
            headers=dict(headers or {}),
            payload_hash=payload_hash or s3sig.EMPTY_SHA256,
            path=below,
            query=query,
        )
        return s3sig.request_url(base, below, query), signed

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
        url, signed = self.build(method, path, query, headers, payload_hash)
        request = urllib.request.Request(url, data=body, method=method, headers=signed)
        return self._opener.open(request, timeout=self.timeout)

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
