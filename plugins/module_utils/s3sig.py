# Copyright: CleanMateX
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""AWS Signature Version 4 in the standard library only (hmac + hashlib).

Used by the S3 probe (a ``HEAD`` of the bucket) and the collection's S3 client;
:func:`bucket_base` gives the base URL and path of path-style or virtual-hosted
requests. It has
no third-party dependency so that it runs in the slim health image (python3
only) and on any Ansible target.

Only what a health probe needs is implemented: header-based signing (no
presigned URLs, no chunked uploads, no path normalisation for non-S3
services). The canonical request follows the AWS documentation:

    Method \\n CanonicalURI \\n CanonicalQuery \\n CanonicalHeaders \\n
    SignedHeaders \\n HexEncode(Hash(Payload))
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import ipaddress
import urllib.parse

ALGORITHM = "AWS4-HMAC-SHA256"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
DEFAULT_REGION = "us-east-1"

# RFC 3986 unreserved characters are never encoded (AWS "UriEncode").
_UNRESERVED = "-_.~"


def uri_encode(value: str, keep_slash: bool = False) -> str:
    """AWS UriEncode: percent-encode everything except unreserved characters (uppercase hex)."""
    return urllib.parse.quote(value, safe=_UNRESERVED + ("/" if keep_slash else ""))


def canonical_uri(path: str) -> str:
    """S3 canonical URI: the absolute path, each segment URI-encoded once, slashes kept."""
    if not path:
        return "/"
    if not path.startswith("/"):
        path = "/" + path
    return uri_encode(path, keep_slash=True)


def canonical_query(query: str | list[tuple[str, str]] | None) -> str:
    """Canonical query string: encoded names/values, sorted by name then value, joined by '&'."""
    if not query:
        return ""
    pairs = urllib.parse.parse_qsl(query, keep_blank_values=True) if isinstance(query, str) else list(query)
    encoded = sorted((uri_encode(str(k)), uri_encode(str(v))) for k, v in pairs)
    return "&".join(f"{k}={v}" for k, v in encoded)


def canonical_headers(headers: dict[str, str]) -> tuple[str, str]:
    """Return (canonical headers block, signed headers list).

    Names are lower-cased and sorted; values are trimmed and runs of spaces
    collapsed; repeated headers (given as lists) are comma-joined.
    """
    merged: dict[str, list[str]] = {}
    for name, value in headers.items():
        values = value if isinstance(value, (list, tuple)) else [value]
        merged.setdefault(name.strip().lower(), []).extend(" ".join(str(v).split()) for v in values)
    names = sorted(merged)
    block = "".join(f"{n}:{','.join(merged[n])}\n" for n in names)
    return block, ";".join(names)


def canonical_request(
    method: str,
    path: str,
    query: str | list[tuple[str, str]] | None,
    headers: dict[str, str],
    payload_hash: str,
) -> tuple[str, str]:
    """Return (canonical request, signed headers)."""
    block, signed = canonical_headers(headers)
    creq = "\n".join(
        [method.upper(), canonical_uri(path), canonical_query(query), block, signed, payload_hash]
    )
    return creq, signed


def credential_scope(datestamp: str, region: str, service: str) -> str:
    return f"{datestamp}/{region}/{service}/aws4_request"


def string_to_sign(amz_date: str, scope: str, creq: str) -> str:
    return "\n".join([ALGORITHM, amz_date, scope, hashlib.sha256(creq.encode("utf-8")).hexdigest()])


def _hmac(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode("utf-8"), hashlib.sha256).digest()


def signing_key(secret_key: str, datestamp: str, region: str, service: str) -> bytes:
    """kSigning = HMAC(HMAC(HMAC(HMAC("AWS4" + secret, date), region), service), "aws4_request")."""
    k_date = _hmac(("AWS4" + secret_key).encode("utf-8"), datestamp)
    k_region = _hmac(k_date, region)
    k_service = _hmac(k_region, service)
    return _hmac(k_service, "aws4_request")


def amz_date(now: datetime.datetime | None = None) -> str:
    now = now or datetime.datetime.now(datetime.UTC)
    if now.tzinfo is not None:
        now = now.astimezone(datetime.UTC)
    return now.strftime("%Y%m%dT%H%M%SZ")


def host_header(url: str) -> str:
    """The Host header a client sends for ``url`` (port only when not the scheme default)."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    port = parts.port
    default = {"http": 80, "https": 443}.get(parts.scheme)
    if port is not None and port != default:
        host = f"{host}:{port}"
    return host


def sign(
    method: str,
    url: str,
    access_key: str,
    secret_key: str,
    region: str = DEFAULT_REGION,
    service: str = "s3",
    headers: dict[str, str] | None = None,
    payload_hash: str | None = None,
    now: datetime.datetime | str | None = None,
    session_token: str | None = None,
    content_sha256_header: bool | None = None,
    path: str | None = None,
    query: str | list[tuple[str, str]] | None = None,
) -> dict[str, str]:
    """Sign a request and return the complete header set to send (Host, X-Amz-Date, Authorization ...).

    ``url`` carries the (unencoded) path and the query string; ``now`` may be
    a datetime or an ``YYYYMMDDTHHMMSSZ`` string (test vectors). For service
    "s3" the ``x-amz-content-sha256`` header is added and signed, as S3
    requires; other services sign the payload hash without sending it.

    With ``path`` (raw, unencoded: an object key may hold '?', '#' or '%') the
    path (joined to the path of ``url``, the endpoint) and ``query`` are signed
    as given: a raw key is never parsed as a URL. Send the request to
    :func:`request_url` with the same arguments.
    """
    parts = urllib.parse.urlsplit(url)
    if path is None:
        path, query = parts.path, parts.query
    else:
        path = parts.path.rstrip("/") + path
    date = now if isinstance(now, str) else amz_date(now)
    payload_hash = payload_hash or EMPTY_SHA256
    if content_sha256_header is None:
        content_sha256_header = service == "s3"

    out: dict[str, str] = {}
    has_host = False
    for name, value in (headers or {}).items():
        out[name] = value
        has_host = has_host or name.lower() == "host"
    if not has_host:
        out["Host"] = host_header(url)
    out["X-Amz-Date"] = date
    if content_sha256_header:
        out["X-Amz-Content-Sha256"] = payload_hash
    if session_token:
        out["X-Amz-Security-Token"] = session_token

    creq, signed = canonical_request(method, path, query, out, payload_hash)
    scope = credential_scope(date[:8], region, service)
    sts = string_to_sign(date, scope, creq)
    signature = hmac.new(
        signing_key(secret_key, date[:8], region, service), sts.encode("utf-8"), hashlib.sha256
    ).hexdigest()
    out["Authorization"] = (
        f"{ALGORITHM} Credential={access_key}/{scope}, SignedHeaders={signed}, Signature={signature}"
    )
    return out


def request_url(endpoint: str, path: str, query: str | list[tuple[str, str]] | None = None) -> str:
    """The URL for the raw ``path`` (joined to the endpoint's own path) and ``query``, encoded exactly as
    :func:`sign` with ``path=`` signs them. The raw path is never parsed."""
    parts = urllib.parse.urlsplit(endpoint)
    url = f"{parts.scheme}://{parts.netloc}{canonical_uri(parts.path.rstrip('/') + path)}"
    encoded = canonical_query(query)
    return f"{url}?{encoded}" if encoded else url


def encode_url_path(url: str) -> str:
    """Return ``url`` with its path percent-encoded the way :func:`canonical_uri` signs it."""
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit(parts._replace(path=canonical_uri(parts.path)))


ADDRESSING_STYLES = ("path", "virtual")


def bucket_base(endpoint: str, bucket: str, addressing: str = "path") -> tuple[str, str]:
    """Where requests for ``bucket`` go: ``(base URL, path prefix)`` to pass to :func:`sign` and
    :func:`request_url` (``path=prefix + "/" + key``).

    ``path``: ``(endpoint, "/<bucket>")`` - ``https://endpoint/bucket/key``.
    ``virtual``: ``("https://<bucket>.<endpoint host>[:port]<endpoint path>", "")`` -
    ``https://bucket.endpoint/key``; the bucket is part of the host name, so the Host header and the
    signature carry it and the canonical path does not. An IP address endpoint cannot be virtual-hosted.
    """
    if addressing not in ADDRESSING_STYLES:
        raise ValueError(f"S3 addressing must be path or virtual, not {addressing!r}")
    if addressing == "path" or not bucket:
        return endpoint, f"/{bucket}" if bucket else ""
    parts = urllib.parse.urlsplit(endpoint)
    host = parts.hostname or ""
    try:
        ipaddress.ip_address(host)
        is_ip = True
    except ValueError:
        is_ip = False
    if not host or is_ip:
        raise ValueError(
            f"virtual-host S3 addressing needs a host name in the endpoint, not {host or endpoint!r}"
            " (use path addressing)"
        )
    if "/" in bucket or not bucket.strip("."):
        raise ValueError(f"bucket name {bucket!r} cannot be a host name label")
    netloc = f"{bucket}.{host}" + (f":{parts.port}" if parts.port is not None else "")
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", "")), ""


def split_bucket(path: str) -> tuple[str, str]:
    """``/bucket/raw key`` -> ``("bucket", "/raw key")``; ``/bucket`` -> ``("bucket", "")``. The key is
    never parsed (it may hold '?', '#' or '%')."""
    bucket, sep, rest = path.lstrip("/").partition("/")
    return bucket, (sep + rest) if sep else ""
