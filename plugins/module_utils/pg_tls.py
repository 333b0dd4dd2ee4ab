# Copyright: CleanMateX
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""TLS for PostgreSQL and PgBouncer (cmx_tls_enabled): one place for what every client and file needs.

* :func:`client_params` - the libpq settings a client of the stack passes (``sslmode=verify-full`` with
  the CA file when TLS is on, ``sslmode=disable`` when it is off, as before).
* :func:`url_query` - the same as a URL query (the apps' ``DATABASE_URL``, /health's URLs).
* :func:`pg_hba` - PostgreSQL's pg_hba.conf in TLS mode: the local socket as before, TCP only over TLS.
* :func:`server_sans` - the subjectAltName entries of the server certificate the stack role creates.
* :func:`wrap_socket` - the SSLRequest handshake for the raw-protocol login check (pg_scram).

Plain Python, no third-party import.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
import struct
import urllib.parse

# Startup packet code that asks the server for TLS (PostgreSQL protocol, "SSLRequest").
SSL_REQUEST_CODE = 80877103
VERIFY_FULL = "verify-full"
# sslmode values that need a server serving TLS (libpq); prefer/allow fall back to plaintext.
TLS_MODES = ("require", "verify-ca", VERIFY_FULL)
# Compose service names the containers use to reach PostgreSQL and PgBouncer.
SERVICE_NAMES = ("postgres", "pgbouncer")


def client_params(ca_file: str | None, sslmode: str | None = None) -> dict:
    """libpq keyword settings for a client of the stack: verify-full against `ca_file`, or no TLS.
    An explicit `sslmode` (an external server's cmx_postgres_sslmode) wins, with `ca_file` as its root."""
    if sslmode:
        return {"sslmode": sslmode} | ({"sslrootcert": ca_file} if ca_file else {})
    if ca_file:
        return {"sslmode": VERIFY_FULL, "sslrootcert": ca_file}
    return {"sslmode": "disable"}


def url_query(ca_file: str | None, plaintext: str = "") -> str:
    """The URL query for :func:`client_params` ("?sslmode=verify-full&sslrootcert=<quoted path>"), or
    `plaintext` when TLS is off (e.g. "?sslmode=disable", or "" to leave the URL as it was)."""
    if not ca_file:
        return plaintext
    return "?" + urllib.parse.urlencode(client_params(ca_file), quote_via=urllib.parse.quote, safe="/")


def pg_hba(tls: bool) -> str:
    """pg_hba.conf for the stack's PostgreSQL in TLS mode (`tls` false: "", the image's own file stays).

    The local socket (the container's own tools, the entrypoint's init, docker exec psql) trusts as
    initdb --auth-local=trust does today; TCP only over TLS with SCRAM; plaintext TCP is rejected."""
    if not tls:
        return ""
    return (
        "# TYPE     DATABASE  USER  ADDRESS  METHOD\n"
        "# The container's own socket (init scripts, docker exec psql): as initdb --auth-local=trust.\n"
        "local      all       all            trust\n"
        "# TCP (the host's published port, PgBouncer, /health): TLS and SCRAM only.\n"
        "hostssl    all       all   all      scram-sha-256\n"
        "hostnossl  all       all   all      reject\n"
    )


def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def server_sans(names) -> list[str]:
    """subjectAltName entries ("DNS:x" / "IP:x") for the names and addresses given, in order, without
    duplicates or empty values; "localhost" and "127.0.0.1" always and the compose service names come
    first. 0.0.0.0 and :: (listen everywhere) are not an address a client connects to: left out."""
    wanted = ["localhost", "127.0.0.1", *SERVICE_NAMES, *[str(n).strip() for n in names or [] if n]]
    out: list[str] = []
    for name in wanted:
        if not name or name in ("0.0.0.0", "::"):
            continue
        entry = ("IP:" + str(ipaddress.ip_address(name))) if _is_ip(name) else "DNS:" + name.lower()
        if entry not in out:
            out.append(entry)
    return out


def url_sslmode(url: str) -> tuple[str | None, str | None]:
    """(sslmode, sslrootcert) of a postgresql:// URL's query (None where absent)."""
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)
    return (query.get("sslmode") or [None])[-1], (query.get("sslrootcert") or [None])[-1]


def wrap_socket(sock: socket.socket, host: str, ca_file: str) -> ssl.SSLSocket:
    """Ask the server for TLS on a connected socket (SSLRequest) and verify it against `ca_file` with
    the host name, as libpq's verify-full does. Raises ssl.SSLError / ValueError when it refuses."""
    sock.sendall(struct.pack("!II", 8, SSL_REQUEST_CODE))
    answer = sock.recv(1)
    if answer != b"S":
        raise ValueError(f"the server does not serve TLS (answered {answer!r} to SSLRequest)")
    context = ssl.create_default_context(cafile=ca_file)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context.wrap_socket(sock, server_hostname=host)
