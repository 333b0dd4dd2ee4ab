# Copyright: CleanMateX
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Dependency probes shared by cmx_wait_healthy, the /health server and the smoke script.

Plain Python: the only optional third-party import is psycopg2 (Debian
``python3-psycopg2``), with psycopg 3 as a fallback. Redis speaks RESP over a
raw socket (TLS with :mod:`ssl` for ``rediss://``), S3 and HTTP use urllib, SigV4
comes from :mod:`s3sig`. TLS always verifies the certificate chain and host name,
against a given CA file (``ca_file``) or the system's trusted CAs; failures read
"TLS: certificate verify failed (<why>) at host:port".

Every probe takes a ``timeout`` in seconds, never raises and returns a
:class:`ProbeResult` (name, status "up"/"down", latency_ms rounded to 0.1,
error text or None). Error texts never contain passwords, secret keys or
URL credentials.
"""

from __future__ import annotations

import base64
import contextlib
import inspect
import math
import re
import selectors
import socket
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import asdict, dataclass

try:
    from ansible_collections.cleanmatex.infra.plugins.module_utils import s3sig
except ImportError:  # flat copy (health image): the module_utils files side by side on sys.path
    import s3sig  # type: ignore[no-redef]

UP = "up"
DOWN = "down"
DEFAULT_TIMEOUT = 2.0


def has_postgres_driver() -> bool:
    """psycopg2 or psycopg 3 importable by this interpreter."""
    for name in ("psycopg2", "psycopg"):
        try:
            __import__(name)
            return True
        except ImportError:
            continue
    return False


def reexec_in_project_venv(script_dir: str, argv: list) -> None:
    """Run the calling command-line tool again under the checkout's .venv when this Python lacks a driver.

    The tools work on any Python with python3-psycopg2; on one without it, a converged checkout's .venv
    (created by bootstrap.sh) has one. Returns when there is nothing better to run under.
    """
    import os
    import sys

    venv = os.path.realpath(os.path.join(script_dir, os.pardir, ".venv"))
    python = os.path.join(venv, "bin", "python")
    if has_postgres_driver() or not os.access(python, os.X_OK) or os.path.realpath(sys.prefix) == venv:
        return
    os.execv(python, [python, *argv])


@dataclass
class ProbeResult:
    name: str
    status: str
    latency_ms: float
    error: str | None = None

    @property
    def up(self) -> bool:
        return self.status == UP

    def as_dict(self) -> dict:
        return asdict(self)


class ProbeTimeout(Exception):
    """Raised inside a probe when its own deadline passes."""


class _Deadline:
    def __init__(self, timeout: float):
        self.timeout = max(0.001, float(timeout))
        self.start = time.monotonic()
        self.end = self.start + self.timeout

    def remaining(self) -> float:
        left = self.end - time.monotonic()
        if left <= 0:
            raise ProbeTimeout(f"timed out after {_ms(self.timeout)} ms")
        return left

    def elapsed_ms(self) -> float:
        return round((time.monotonic() - self.start) * 1000.0, 1)


def _ms(seconds: float) -> int:
    return round(seconds * 1000)


# --------------------------------------------------------------------------- secrets

_URL_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s]*@")
# A key=value value: quoted as libpq does ('..' with \' and \\ escapes; doubled quotes kept inside too), in
# double quotes, or up to white space. A quote left open by a cut-off message runs to the end.
_KV_VALUE = r"""'(?:[^'\\]|\\.|'')*'?|"(?:[^"\\]|\\.)*"?|\S+"""
_KV_PASSWORD = re.compile(rf"(?i)\b(password|passwd|pwd|secret[_-]?key|sslpassword)\s*=\s*({_KV_VALUE})")
# PASSWORD followed by an SQL string constant, as CREATE/ALTER ROLE shows in PostgreSQL's log and errors:
# '..' with doubled quotes, E'..' with backslash escapes, or $tag$..$tag$; one cut off runs to the end.
# roles/backup/vars/main.yml (__backup_secret_pattern) holds the same expression for regex_replace.
SQL_PASSWORD_LITERAL = re.compile(
    r"(?i)(PASSWORD\s+)(?:E'(?:[^'\\]|\\.|'')*'?|'(?:[^']|'')*'?|(\$\w*\$)[\s\S]*?(?:\2|\Z))"
)


def _unquote(value: str) -> list[str]:
    """A quoted secret as written and as meant (outer quotes off, escapes and doubled quotes resolved)."""
    if value[:2].lower() == "e'":
        value = value[1:]
    if len(value) >= 2 and value[0] in "'\"" and value[-1] == value[0]:
        value = value[1:-1]
    elif value[:1] in ("'", '"'):
        value = value[1:]
    return [value, re.sub(r"\\(.)", r"\1", value).replace("''", "'")]


def redact(text: str, secrets: tuple | list = ()) -> str:
    """Remove credentials from a message: URL userinfo, key=value passwords and known secret values.

    Passwords found in URLs or key=value pairs are also removed wherever else they occur in the text.
    """
    if not text:
        return text
    found = [str(s) for s in secrets if s and len(str(s)) >= 3]
    for m in re.finditer(r"[a-zA-Z][a-zA-Z0-9+.-]*://[^/@\s:]*:([^/@\s]+)@", text):
        found += [m.group(1), urllib.parse.unquote(m.group(1))]
    for m in _KV_PASSWORD.finditer(text):
        found += _unquote(m.group(2))
    for m in SQL_PASSWORD_LITERAL.finditer(text):
        literal = m.group(0)[len(m.group(1)) :]
        found += (
            _unquote(literal) if not m.group(2) else [literal[len(m.group(2)) :].removesuffix(m.group(2))]
        )
    text = _URL_USERINFO.sub(r"\g<scheme>***@", text)
    text = SQL_PASSWORD_LITERAL.sub(lambda m: f"{m.group(1)}'***'", text)
    text = _KV_PASSWORD.sub(lambda m: f"{m.group(1)}=***", text)
    for secret in sorted(set(found), key=len, reverse=True):
        if len(secret) >= 3:
            text = text.replace(secret, "***")
    return text


def service_secrets(services) -> list[str]:
    """Every secret of the given service specs: passwords, secret keys, headers, DSN and URL passwords."""
    found = []
    for svc in services:
        found += [svc.get("password"), svc.get("secret_key"), *(svc.get("headers") or {}).values()]
        for key in ("dsn", "url"):
            found += _dsn_secrets(svc.get(key))
    return [str(secret) for secret in found if secret]


def safe_url(url: str) -> str:
    """A URL fit for messages: no userinfo, no query string (it may carry keys)."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return "<invalid url>"
    netloc = parts.netloc.rsplit("@", 1)[-1]
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def _clean(exc_or_text, secrets=(), limit: int = 300) -> str:
    text = describe_error(exc_or_text) if isinstance(exc_or_text, BaseException) else str(exc_or_text)
    text = " ".join(redact(text, secrets).split())
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return text or "unknown error"


def describe_error(exc: BaseException) -> str:
    """Short, human text for network errors (no tracebacks, no errno noise)."""
    if isinstance(exc, ProbeTimeout):
        return str(exc)
    if isinstance(exc, urllib.error.URLError) and not isinstance(exc, urllib.error.HTTPError):
        reason = exc.reason
        return describe_error(reason) if isinstance(reason, BaseException) else str(reason)
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return "timed out"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, ConnectionResetError):
        return "connection reset by peer"
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve host ({exc.strerror or exc})"
    if isinstance(exc, ssl.SSLCertVerificationError):
        detail = (exc.verify_message or exc.reason or str(exc)).rstrip(".")
        return f"TLS: certificate verify failed ({detail})"
    if isinstance(exc, ssl.SSLError):
        reason = (exc.reason or "").replace("_", " ").lower() or str(exc)
        if exc.reason in ("WRONG_VERSION_NUMBER", "RECORD_LAYER_FAILURE", "PACKET_LENGTH_TOO_LONG"):
            reason += ": is the server speaking TLS on that port?"
        return f"TLS: {reason}"
    if isinstance(exc, CAFileError):
        return str(exc)
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror[0].lower() + exc.strerror[1:]
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _up(name: str, deadline: _Deadline) -> ProbeResult:
    return ProbeResult(name, UP, deadline.elapsed_ms(), None)


def _down(name: str, deadline: _Deadline, error, secrets=()) -> ProbeResult:
    return ProbeResult(name, DOWN, deadline.elapsed_ms(), _clean(error, secrets))


def _timeout_text(exc: BaseException, deadline: _Deadline) -> str | None:
    if isinstance(exc, ProbeTimeout):
        return str(exc)
    if isinstance(exc, (socket.timeout, TimeoutError)) or (
        isinstance(exc, urllib.error.URLError) and isinstance(exc.reason, (socket.timeout, TimeoutError))
    ):
        return f"timed out after {_ms(deadline.timeout)} ms"
    return None


def _where(exc: BaseException, host, port) -> str:
    """A network error with its target: "TLS: ... at host:port" for TLS failures, else "host:port: ..."."""
    text = describe_error(exc)
    if isinstance(exc, ssl.SSLError) or (
        isinstance(exc, urllib.error.URLError) and isinstance(exc.reason, ssl.SSLError)
    ):
        return f"{text} at {host}:{port}"
    return f"{host}:{port}: {text}"


# --------------------------------------------------------------------------- TLS


class CAFileError(ValueError):
    """The CA file given for TLS verification cannot be used (missing, unreadable, not PEM)."""


_CONTEXTS: dict = {}


def tls_context(ca_file: str | None = None) -> ssl.SSLContext:
    """A client TLS context verifying the certificate chain and the host name: against ``ca_file`` (PEM)
    when given, else against the system's trusted CAs. TLS 1.2 at least. Cached per file version."""
    import os

    key = None
    if ca_file:
        try:
            st = os.stat(ca_file)
        except OSError as exc:
            raise CAFileError(f"TLS: cannot read CA file {ca_file}: {describe_error(exc)}") from None
        key = (ca_file, st.st_mtime_ns, st.st_size)
    context = _CONTEXTS.get(key)
    if context is None:
        try:
            context = ssl.create_default_context(cafile=ca_file or None)
        except ssl.SSLError as exc:
            reason = exc.reason or str(exc)
            raise CAFileError(f"TLS: CA file {ca_file} holds no usable PEM certificate ({reason})") from None
        except OSError as exc:  # e.g. permission denied
            raise CAFileError(f"TLS: cannot read CA file {ca_file}: {describe_error(exc)}") from None
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        if len(_CONTEXTS) > 32:
            _CONTEXTS.clear()
        _CONTEXTS[key] = context
    return context


# --------------------------------------------------------------------------- TCP


def probe_tcp(host: str = "127.0.0.1", port: int = 0, timeout: float = DEFAULT_TIMEOUT, name: str = "tcp"):
    """Up when a TCP connection to host:port is accepted."""
    deadline = _Deadline(timeout)
    try:
        with socket.create_connection((host, int(port)), timeout=deadline.remaining()):
            pass
        return _up(name, deadline)
    except Exception as exc:
        return _down(name, deadline, _timeout_text(exc, deadline) or f"{host}:{port}: {describe_error(exc)}")


# --------------------------------------------------------------------------- PostgreSQL


def _pg_wait(conn, deadline: _Deadline, psycopg2_ext) -> None:
    """Drive an async psycopg2 connection/query to completion within the deadline."""
    sel = selectors.DefaultSelector()
    try:
        while True:
            state = conn.poll()
            if state == psycopg2_ext.POLL_OK:
                return
            if state == psycopg2_ext.POLL_READ:
                events = selectors.EVENT_READ
            elif state == psycopg2_ext.POLL_WRITE:
                events = selectors.EVENT_WRITE
            else:  # pragma: no cover - libpq never returns anything else
                raise RuntimeError(f"unexpected poll state {state}")
            sel.register(conn.fileno(), events)
            try:
                if not sel.select(deadline.remaining()):
                    deadline.remaining()  # raises ProbeTimeout when the deadline passed
            finally:
                sel.unregister(conn.fileno())
    finally:
        sel.close()


def _pg_error_text(exc: BaseException) -> str:
    text = getattr(exc, "pgerror", None) or str(exc)
    # libpq adds a hint line ("Is the server running on that host ...") - keep the first useful line.
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return lines[0] if lines else type(exc).__name__


def probe_postgres(
    dsn: str | None = None,
    host: str | None = None,
    port: int | None = None,
    user: str | None = None,
    password: str | None = None,
    dbname: str | None = None,
    sslmode: str | None = "disable",
    sslrootcert: str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    name: str = "database",
    query: str = "SELECT 1",
):
    """Connect and run ``SELECT 1``; works directly and through PgBouncer (no startup options sent).

    ``dsn`` may be a URL (postgresql://user:pass@host:port/db) or key=value
    pairs; explicit keyword values override it. ``sslmode`` defaults to
    "disable" unless the DSN sets one.
    """
    deadline = _Deadline(timeout)
    secrets = [password, *_dsn_secrets(dsn)]
    kwargs = {
        k: v
        for k, v in {"host": host, "port": port, "user": user, "password": password, "dbname": dbname}.items()
        if v not in (None, "")
    }
    if sslmode and "sslmode" not in (dsn or ""):
        kwargs["sslmode"] = sslmode
    if sslrootcert and "sslrootcert" not in (dsn or ""):
        kwargs["sslrootcert"] = sslrootcert
    try:
        import psycopg2
        import psycopg2.extensions as pg_ext
    except ImportError:
        return _probe_postgres_psycopg3(dsn, kwargs, deadline, name, query, secrets)
    conn = None
    connected = False
    try:
        conn = psycopg2.connect(dsn or "", async_=True, connect_timeout=max(2, math.ceil(timeout)), **kwargs)
        _pg_wait(conn, deadline, pg_ext)
        connected = True
        cur = conn.cursor()
        cur.execute(query)
        _pg_wait(conn, deadline, pg_ext)
        row = cur.fetchone()
        if not row:
            return _down(name, deadline, f"{query!r} returned no row")
        return _up(name, deadline)
    except ProbeTimeout as exc:
        return _down(name, deadline, exc)
    except psycopg2.Error as exc:
        text = _pg_error_text(exc)
        target = _pg_target(dsn, kwargs, pg_ext)
        if target and not connected and target not in text:
            text = f"{target}: {text}"
        return _down(name, deadline, text, secrets)
    except Exception as exc:
        return _down(name, deadline, exc, secrets)
    finally:
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()


def _pg_target(dsn, kwargs, pg_ext) -> str | None:
    """host:port the connection goes to, for messages ("127.0.0.1:5432")."""
    try:
        params = pg_ext.parse_dsn(dsn) if dsn else {}
    except Exception:
        params = {}
    params.update({k: v for k, v in kwargs.items() if k in ("host", "port")})
    host = params.get("host") or "localhost"
    return f"{host}:{params.get('port') or 5432}"


def _probe_postgres_psycopg3(dsn, kwargs, deadline, name, query, secrets):
    try:
        import psycopg
    except ImportError:
        return _down(name, deadline, "no PostgreSQL driver: install python3-psycopg2 (or psycopg)")
    try:
        remaining = deadline.remaining()
        with psycopg.connect(
            dsn or "", autocommit=True, connect_timeout=max(2, math.ceil(remaining)), **kwargs
        ) as conn:
            row = conn.execute(query).fetchone()
        if not row:
            return _down(name, deadline, f"{query!r} returned no row")
        if deadline.end < time.monotonic():
            return _down(name, deadline, f"timed out after {_ms(deadline.timeout)} ms")
        return _up(name, deadline)
    except ProbeTimeout as exc:
        return _down(name, deadline, exc)
    except Exception as exc:
        return _down(name, deadline, _pg_error_text(exc), secrets)


def _dsn_secrets(dsn: str | None) -> list[str]:
    if not dsn:
        return []
    out = []
    if "://" in dsn:
        try:
            pw = urllib.parse.urlsplit(dsn).password
            if pw:
                out += [pw, urllib.parse.unquote(pw)]
        except ValueError:
            pass
    m = _KV_PASSWORD.search(dsn)
    if m:
        out += _unquote(m.group(2))
    return out


# --------------------------------------------------------------------------- Redis (RESP2)


class RespError(Exception):
    """An error reply from the server (``-ERR ...``). Returned, not raised, by the parser."""

    def __init__(self, text: str):
        super().__init__(text)
        self.text = text

    def __eq__(self, other):
        return isinstance(other, RespError) and other.text == self.text

    def __hash__(self):
        return hash(self.text)


class RespProtocolError(Exception):
    """The peer does not speak RESP (or sent a malformed reply)."""


class _Incomplete(Exception):
    pass


def encode_command(*args) -> bytes:
    """Encode a command as a RESP array of bulk strings."""
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg if isinstance(arg, bytes) else str(arg).encode("utf-8")
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


def _int(line: bytes) -> int:
    try:
        return int(line)
    except ValueError:
        raise RespProtocolError(f"bad length/integer {line[:20]!r}") from None


def _parse_at(buf: bytes, pos: int, depth: int = 0):
    if depth > 32:
        raise RespProtocolError("reply nested too deeply")
    nl = buf.find(b"\r\n", pos)
    if nl < 0:
        if len(buf) - pos > 64 * 1024:
            raise RespProtocolError("no line terminator in 64 KiB")
        raise _Incomplete
    kind, line, pos = buf[pos : pos + 1], buf[pos + 1 : nl], nl + 2
    if kind == b"+":
        return line.decode("utf-8", "replace"), pos
    if kind == b"-":
        return RespError(line.decode("utf-8", "replace")), pos
    if kind == b":":
        return _int(line), pos
    if kind == b"$":
        n = _int(line)
        if n < 0:
            return None, pos
        if len(buf) < pos + n + 2:
            raise _Incomplete
        if buf[pos + n : pos + n + 2] != b"\r\n":
            raise RespProtocolError("bulk string not terminated by CRLF")
        return buf[pos : pos + n], pos + n + 2
    if kind == b"*":
        n = _int(line)
        if n < 0:
            return None, pos
        items = []
        for _ in range(n):
            item, pos = _parse_at(buf, pos, depth + 1)
            items.append(item)
        return items, pos
    raise RespProtocolError(f"unexpected reply type {kind!r} (not a Redis server?)")


def parse_reply(buf: bytes):
    """Parse one RESP2 reply from the start of ``buf``.

    Returns ``(value, consumed)`` or ``None`` when more bytes are needed.
    Simple strings decode to str, bulk strings stay bytes, errors become
    :class:`RespError` instances, nulls are None.
    """
    try:
        return _parse_at(buf, 0)
    except _Incomplete:
        return None


class RedisClient:
    """Minimal blocking RESP2 client; every socket operation honours the probe deadline.

    With ``tls`` the connection is TLS (``rediss://``; ElastiCache in-transit encryption), the server's
    certificate chain and host name verified against ``ca_file`` when given, else the system CAs.
    """

    def __init__(
        self, host: str, port: int, deadline: _Deadline, tls: bool = False, ca_file: str | None = None
    ):
        self.deadline = deadline
        context = tls_context(ca_file) if tls else None
        sock = socket.create_connection((host, int(port)), timeout=deadline.remaining())
        if context is not None:
            try:
                sock.settimeout(deadline.remaining())
                sock = context.wrap_socket(sock, server_hostname=host)
            except BaseException:
                sock.close()
                raise
        self.sock = sock
        self.buf = b""

    def command(self, *args):
        self.sock.settimeout(self.deadline.remaining())
        self.sock.sendall(encode_command(*args))
        while True:
            parsed = parse_reply(self.buf)
            if parsed is not None:
                value, used = parsed
                self.buf = self.buf[used:]
                return value
            self.sock.settimeout(self.deadline.remaining())
            chunk = self.sock.recv(65536)
            if not chunk:
                raise RespProtocolError("connection closed by server")
            self.buf += chunk

    def close(self):
        with contextlib.suppress(OSError):
            self.sock.close()


def parse_redis_url(url: str) -> dict:
    """redis://[[user]:password@]host[:port][/db] -> dict(host, port, username, password, db, tls)."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("redis", "rediss"):
        raise ValueError(f"unsupported Redis URL scheme {parts.scheme!r} (use redis:// or rediss://)")
    db = parts.path.lstrip("/") or "0"
    return {
        "host": parts.hostname or "127.0.0.1",
        "port": parts.port or 6379,
        "username": urllib.parse.unquote(parts.username) if parts.username else None,
        "password": urllib.parse.unquote(parts.password) if parts.password else None,
        "db": int(db) if db.isdigit() else 0,
        "tls": parts.scheme == "rediss",
    }


def probe_redis(
    url: str | None = None,
    host: str | None = None,
    port: int | None = None,
    password: str | None = None,
    user: str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    name: str = "redis",
    tls: bool | None = None,
    ca_file: str | None = None,
):
    """AUTH (when a password is known) then PING; up only on +PONG.

    ``tls`` None: TLS when the URL is ``rediss://``; True/False overrides it. ``ca_file``: PEM CA to
    verify the server against (default: the system CAs).
    """
    deadline = _Deadline(timeout)
    secrets = [password]
    try:
        cfg = (
            parse_redis_url(url)
            if url
            else {
                "host": "127.0.0.1",
                "port": 6379,
                "username": None,
                "password": None,
                "db": 0,
                "tls": False,
            }
        )
    except ValueError as exc:
        return _down(name, deadline, str(exc), [url])
    secrets += [cfg["password"]]
    host = host or cfg["host"]
    port = port or cfg["port"]
    password = password if password not in (None, "") else cfg["password"]
    user = user or cfg["username"]
    use_tls = cfg["tls"] if tls is None else bool(tls)
    client = None
    try:
        client = RedisClient(host, port, deadline, tls=use_tls, ca_file=ca_file or None)
        if password:
            args = ("AUTH", user, password) if user else ("AUTH", password)
            reply = client.command(*args)
            if isinstance(reply, RespError):
                return _down(name, deadline, f"AUTH failed: {reply.text}", secrets)
        reply = client.command("PING")
        if isinstance(reply, RespError):
            return _down(name, deadline, reply.text, secrets)
        if reply not in ("PONG", b"PONG"):
            return _down(name, deadline, f"unexpected PING reply {reply!r}", secrets)
        return _up(name, deadline)
    except Exception as exc:
        text = _timeout_text(exc, deadline) or _where(exc, host, port)
        closed = isinstance(exc, ConnectionResetError) or (
            isinstance(exc, RespProtocolError) and str(exc) == "connection closed by server"
        )
        if not use_tls and closed:
            text += " (a TLS-only Redis closes plaintext connections: use rediss:// or tls)"
        return _down(name, deadline, text, secrets)
    finally:
        if client is not None:
            client.close()


# --------------------------------------------------------------------------- HTTP


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None  # a 3xx is reported as such, never followed


# No proxies: health checks go straight to the service, whatever HTTP(S)_PROXY says.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirect())


def _opener(url: str, ca_file: str | None):
    if not ca_file or not url.lower().startswith("https:"):
        return _OPENER
    return urllib.request.build_opener(
        urllib.request.ProxyHandler({}),
        _NoRedirect(),
        urllib.request.HTTPSHandler(context=tls_context(ca_file)),
    )


def http_request(
    method: str,
    url: str,
    headers: dict | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    max_body: int = 65536,
    ca_file: str | None = None,
) -> tuple[int, bytes]:
    """Send one request; return (status, first bytes of body). HTTP error statuses are returned, not raised.

    Credentials in the URL (http://user:pass@host/) are sent as HTTP Basic auth. https is verified
    (chain and host name) against ``ca_file`` when given, else the system CAs.
    """
    headers = dict(headers or {})
    parts = urllib.parse.urlsplit(url)
    if parts.username is not None:
        user = urllib.parse.unquote(parts.username)
        password = urllib.parse.unquote(parts.password or "")
        token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
        headers.setdefault("Authorization", f"Basic {token}")
        url = urllib.parse.urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))
    req = urllib.request.Request(url, method=method, headers=headers)
    opener = _opener(url, ca_file)
    try:
        with opener.open(req, timeout=timeout) as resp:
            return resp.status, (resp.read(max_body) if method != "HEAD" else b"")
    except urllib.error.HTTPError as exc:
        try:
            body = exc.read(max_body) if method != "HEAD" else b""
        except Exception:
            body = b""
        finally:
            exc.close()
        return exc.code, body


def probe_http(
    url: str,
    expected_status=(200,),
    method: str = "GET",
    headers: dict | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    name: str = "http",
    ca_file: str | None = None,
):
    """Up when ``method url`` answers with one of ``expected_status`` (https verified against ``ca_file``
    when given, else the system CAs)."""
    deadline = _Deadline(timeout)
    expected = tuple(int(s) for s in (expected_status or (200,)))
    secrets = list((headers or {}).values())
    try:
        status, _ = http_request(
            method.upper(), url, headers=headers, timeout=deadline.remaining(), ca_file=ca_file
        )
    except Exception as exc:
        text = _timeout_text(exc, deadline) or describe_error(exc)
        return _down(name, deadline, f"{method.upper()} {safe_url(url)}: {text}", secrets)
    if status in expected:
        return _up(name, deadline)
    want = ", ".join(str(s) for s in expected)
    return _down(
        name, deadline, f"{method.upper()} {safe_url(url)} answered HTTP {status} (expected {want})", secrets
    )


# --------------------------------------------------------------------------- S3


def probe_s3_health(
    endpoint: str,
    health_path: str = "/healthz",
    timeout: float = DEFAULT_TIMEOUT,
    name: str = "storage",
    ca_file: str | None = None,
):
    """GET the engine's health endpoint (SeaweedFS: /healthz on the S3 port; MinIO: /minio/health/live)."""
    path = health_path if health_path.startswith("/") else "/" + health_path
    return probe_http(endpoint.rstrip("/") + path, (200,), "GET", None, timeout, name, ca_file=ca_file)


def probe_s3_bucket(
    endpoint: str,
    bucket: str,
    access_key: str,
    secret_key: str,
    region: str = s3sig.DEFAULT_REGION,
    timeout: float = DEFAULT_TIMEOUT,
    name: str = "storage",
    ca_file: str | None = None,
    addressing: str = "path",
):
    """Authenticated ``HEAD`` of the bucket signed with SigV4: proves credentials and bucket.

    ``addressing`` "path": ``HEAD <endpoint>/<bucket>``; "virtual": ``HEAD https://<bucket>.<host>/``
    (signed for that host and path). https is verified against ``ca_file`` (else the system CAs).
    """
    deadline = _Deadline(timeout)
    secrets = [secret_key]
    try:
        base, path = s3sig.bucket_base(endpoint, bucket, addressing or "path")
        headers = s3sig.sign("HEAD", base, access_key, secret_key, region=region, path=path)
        url = s3sig.request_url(base, path)
        status, _ = http_request("HEAD", url, headers=headers, timeout=deadline.remaining(), ca_file=ca_file)
    except Exception as exc:
        text = _timeout_text(exc, deadline) or describe_error(exc)
        return _down(name, deadline, f"HEAD bucket {bucket!r} at {safe_url(endpoint)}: {text}", secrets)
    if status == 200:
        return _up(name, deadline)
    reason = {
        404: "does not exist",
        403: "access denied (check the S3 access key and secret key)",
        401: "authentication failed (check the S3 access key and secret key)",
        301: "is in another region",
    }.get(status, f"answered HTTP {status}")
    return _down(name, deadline, f"bucket {bucket!r} {reason}", secrets)


def probe_s3(
    endpoint: str,
    bucket: str | None = None,
    access_key: str | None = None,
    secret_key: str | None = None,
    region: str = s3sig.DEFAULT_REGION,
    health_path: str | None = "/healthz",
    timeout: float = DEFAULT_TIMEOUT,
    name: str = "storage",
    ca_file: str | None = None,
    addressing: str = "path",
):
    """Health endpoint (when ``health_path``), then the signed bucket check (when bucket and keys are set).

    An empty or None ``health_path`` skips the health endpoint (managed S3 has none): only the signed
    bucket HEAD is done. ``ca_file`` and ``addressing`` as in :func:`probe_s3_bucket`.
    """
    deadline = _Deadline(timeout)
    if health_path:
        res = probe_s3_health(endpoint, health_path, timeout, name, ca_file=ca_file)
        if not res.up:
            return _down(name, deadline, f"health endpoint: {res.error}")
    if bucket and access_key and secret_key:
        try:
            remaining = deadline.remaining()
        except ProbeTimeout as exc:
            return _down(name, deadline, exc)
        res = probe_s3_bucket(
            endpoint, bucket, access_key, secret_key, region, remaining, name, ca_file, addressing
        )
        if not res.up:
            return _down(name, deadline, res.error, [secret_key])
    elif not health_path:
        return _down(name, deadline, "nothing to check: give health_path or bucket + access/secret key")
    return _up(name, deadline)


# --------------------------------------------------------------------------- dispatch

PROBES = {
    "postgres": probe_postgres,
    "redis": probe_redis,
    "s3": probe_s3,
    "http": probe_http,
    "tcp": probe_tcp,
}


def make_probe(spec: dict):
    """Turn a spec dict ({name, type, ...type fields}) into ``fn(timeout) -> ProbeResult``.

    Unknown or None-valued keys are dropped, so one flat option set (the
    module's suboptions) serves every type. ``url`` doubles as ``endpoint``
    for s3, ``ca_file`` as ``sslrootcert`` for postgres. TLS keys: ``tls`` and
    ``ca_file`` (redis), ``ca_file`` and ``addressing`` (s3), ``ca_file``
    (http). A spec of type "down" (config error) always reports its ``error``.
    """
    name = spec.get("name") or spec.get("type") or "service"
    kind = spec.get("type")
    if kind == "down":
        message = spec.get("error") or "not configured"

        def _always_down(timeout: float = DEFAULT_TIMEOUT) -> ProbeResult:
            return ProbeResult(name, DOWN, 0.0, message)

        return _always_down
    func = PROBES.get(kind)
    if func is None:
        raise ValueError(f"unknown probe type {kind!r} for {name!r} (one of {', '.join(sorted(PROBES))})")
    accepted = set(inspect.signature(func).parameters)
    fields = dict(spec)
    if kind == "s3" and not fields.get("endpoint") and fields.get("url"):
        fields["endpoint"] = fields["url"]
    if kind == "postgres" and not fields.get("sslrootcert") and fields.get("ca_file"):
        fields["sslrootcert"] = fields["ca_file"]  # one CA option name for every type
    kwargs = {
        k: v for k, v in fields.items() if k in accepted and v is not None and k not in ("timeout", "name")
    }
    if kind == "s3" and "health_path" in fields:
        # Given as None or "": no health endpoint (managed S3), not the default path.
        kwargs["health_path"] = fields["health_path"] or None

    def _run(timeout: float = DEFAULT_TIMEOUT) -> ProbeResult:
        try:
            return func(timeout=timeout, name=name, **kwargs)
        except Exception as exc:  # a probe must never raise; belt and braces
            secrets = [kwargs.get(k) for k in ("password", "secret_key", "dsn", "url")]
            return ProbeResult(name, DOWN, 0.0, _clean(exc, secrets))

    return _run


def run_probe(spec: dict, timeout: float = DEFAULT_TIMEOUT) -> ProbeResult:
    return make_probe(spec)(timeout)


# --------------------------------------------------------------------------- shared by the modules

# AnsibleModule suboptions of one service entry (cmx_wait_healthy, cmx_health).
MODULE_SERVICE_OPTIONS = dict(
    name=dict(type="str", required=True),
    type=dict(type="str", required=True, choices=["postgres", "redis", "s3", "http", "tcp"]),
    dsn=dict(type="str", no_log=True),
    url=dict(type="str"),
    host=dict(type="str"),
    port=dict(type="int"),
    user=dict(type="str"),
    password=dict(type="str", no_log=True),
    dbname=dict(type="str"),
    sslmode=dict(type="str", default="disable"),
    sslrootcert=dict(type="path"),
    tls=dict(type="bool"),
    ca_file=dict(type="path"),
    addressing=dict(type="str", default="path", choices=["path", "virtual"]),
    endpoint=dict(type="str"),
    health_path=dict(type="str", default="/healthz"),
    bucket=dict(type="str"),
    access_key=dict(type="str", no_log=False),
    secret_key=dict(type="str", no_log=True),
    region=dict(type="str", default="us-east-1"),
    expected_status=dict(type="list", elements="int", default=[200]),
    method=dict(type="str", default="GET", choices=["GET", "HEAD"]),
    headers=dict(type="dict", no_log=True),
    container=dict(type="str"),
)

_REQUIRED_FIELDS = {
    "postgres": (("dsn", "host"), "dsn or host"),
    "redis": (("url", "host"), "url or host"),
    "s3": (("endpoint", "url"), "endpoint"),
    "http": (("url",), "url"),
    "tcp": (("host",), "host and port"),
}


def validate_services(services: list) -> str | None:
    """An error message for the first bad entry (duplicate name, missing type fields), else None."""
    seen = set()
    for svc in services:
        name, kind = svc["name"], svc["type"]
        if name in seen:
            return f"service name {name!r} is listed twice"
        seen.add(name)
        keys, what = _REQUIRED_FIELDS[kind]
        if not any(svc.get(k) for k in keys) or (kind == "tcp" and not svc.get("port")):
            return f"service {name!r} (type {kind}) needs {what}"
    return None


def module_probe(svc: dict):
    """``make_probe`` for a module service entry (s3 ``url`` alias, empty health_path = skip)."""
    spec = dict(svc)
    if spec["type"] == "s3":
        spec["endpoint"] = spec.get("endpoint") or spec.get("url")
        if not spec.get("health_path"):
            spec["health_path"] = None
    return make_probe(spec)
