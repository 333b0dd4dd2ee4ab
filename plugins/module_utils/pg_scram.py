"""PostgreSQL SCRAM-SHA-256 on the client: password verifiers, and the SQLSTATE of a refused login.

* ``scram_verifier(password)``: the ``SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`` string
  PostgreSQL stores in pg_authid (RFC 5802/7677, password prepared with SASLprep the way PostgreSQL does).
  ``ALTER ROLE ... PASSWORD '<verifier>'`` stores it as is: the plain password never reaches the server,
  its statement log or pg_stat_statements.
* ``login_sqlstate(...)``: logs in over the wire protocol and returns the SQLSTATE of the server's
  ErrorResponse (``28P01`` invalid_password, ``28000``, ``3D000`` ...) or None when the login succeeds.
  libpq keeps the ErrorResponse of a failed connection to itself: psycopg2's ``pgcode`` and psycopg 3's
  ``sqlstate`` are None there, and the message text is in the server's language (lc_messages).

Standard library only.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import socket
import stringprep
import struct
import unicodedata

try:
    from ansible_collections.cleanmatex.infra.plugins.module_utils import pg_tls
except ImportError:  # flat copy beside the other module_utils files
    import pg_tls  # type: ignore[no-redef]

DEFAULT_ITERATIONS = 4096  # PostgreSQL's scram_iterations default
SALT_LENGTH = 16  # PostgreSQL's SCRAM_DEFAULT_SALT_LEN
PROTOCOL_3_0 = 196608

_PROHIBITED = (
    stringprep.in_table_c12,
    stringprep.in_table_c21_c22,
    stringprep.in_table_c3,
    stringprep.in_table_c4,
    stringprep.in_table_c5,
    stringprep.in_table_c6,
    stringprep.in_table_c7,
    stringprep.in_table_c8,
    stringprep.in_table_c9,
    stringprep.in_table_a1,  # unassigned in Unicode 3.2
)


def saslprep(password: str) -> str:
    """The password as PostgreSQL's pg_saslprep prepares it (RFC 4013); unchanged when it is ASCII or
    when SASLprep prohibits it (PostgreSQL then uses the raw bytes, so must we)."""
    if password.isascii():
        return password
    mapped = "".join(
        " " if stringprep.in_table_c12(char) else char
        for char in password
        if not stringprep.in_table_b1(char)
    )
    if not mapped:
        return password
    prepared = unicodedata.normalize("NFKC", mapped)
    if any(check(char) for char in prepared for check in _PROHIBITED):
        return password
    if any(stringprep.in_table_d1(char) for char in prepared) and (
        any(stringprep.in_table_d2(char) for char in prepared)
        or not stringprep.in_table_d1(prepared[0])
        or not stringprep.in_table_d1(prepared[-1])
    ):
        return password
    return prepared


def _hmac(key: bytes, message: bytes) -> bytes:
    return hmac.new(key, message, hashlib.sha256).digest()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def salted_password(password: str, salt: bytes, iterations: int) -> bytes:
    return hashlib.pbkdf2_hmac("sha256", saslprep(password).encode("utf-8"), salt, iterations)


def scram_verifier(password: str, salt: bytes | None = None, iterations: int = DEFAULT_ITERATIONS) -> str:
    """pg_authid.rolpassword for `password`: SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>."""
    salt = os.urandom(SALT_LENGTH) if salt is None else salt
    salted = salted_password(password, salt, iterations)
    stored_key = hashlib.sha256(_hmac(salted, b"Client Key")).digest()
    server_key = _hmac(salted, b"Server Key")
    return f"SCRAM-SHA-256${iterations}:{_b64(salt)}${_b64(stored_key)}:{_b64(server_key)}"


def parse_verifier(verifier: str) -> tuple[int, bytes]:
    """(iterations, salt) of a SCRAM-SHA-256 verifier; ValueError when it is not one."""
    try:
        scheme, rest = verifier.split("$", 1)
        head, _keys = rest.split("$", 1)
        iterations, salt = head.split(":", 1)
        if scheme != "SCRAM-SHA-256":
            raise ValueError(scheme)
        return int(iterations), base64.b64decode(salt, validate=True)
    except ValueError as error:
        raise ValueError("not a SCRAM-SHA-256 verifier") from error


# --- the wire protocol, as far as a login goes ---------------------------------------------------------


class ProtocolError(RuntimeError):
    """The server said something a login does not expect (or asked for an unsupported method)."""


def _message(kind: bytes, body: bytes) -> bytes:
    return kind + struct.pack("!I", len(body) + 4) + body


def _read_exact(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ProtocolError("the server closed the connection during the login")
        data += chunk
    return data


def _read_message(sock: socket.socket) -> tuple[bytes, bytes]:
    kind, length = struct.unpack("!cI", _read_exact(sock, 5))
    return kind, _read_exact(sock, length - 4)


def error_fields(body: bytes) -> dict[str, str]:
    """Fields of an ErrorResponse body: {'S': severity, 'C': SQLSTATE, 'M': message, ...}."""
    fields = {}
    for part in body.split(b"\0"):
        if part:
            fields[chr(part[0])] = part[1:].decode("utf-8", "replace")
    return fields


class _ScramClient:
    def __init__(self, password: str):
        self.password = password
        self.nonce = _b64(os.urandom(18))
        self.first_bare = f"n=,r={self.nonce}"  # the user name is in the startup packet
        self.server_signature = b""

    def first(self) -> bytes:
        return ("n,," + self.first_bare).encode()

    def final(self, server_first: bytes) -> bytes:
        attributes = dict(part.split("=", 1) for part in server_first.decode().split(","))
        nonce, salt, iterations = attributes["r"], base64.b64decode(attributes["s"]), int(attributes["i"])
        if not nonce.startswith(self.nonce):
            raise ProtocolError("SCRAM: the server's nonce does not extend ours")
        salted = salted_password(self.password, salt, iterations)
        client_key = _hmac(salted, b"Client Key")
        without_proof = f"c=biws,r={nonce}"
        auth_message = f"{self.first_bare},{server_first.decode()},{without_proof}".encode()
        signature = _hmac(hashlib.sha256(client_key).digest(), auth_message)
        proof = bytes(a ^ b for a, b in zip(client_key, signature, strict=True))
        self.server_signature = _hmac(_hmac(salted, b"Server Key"), auth_message)
        return f"{without_proof},p={_b64(proof)}".encode()

    def check(self, server_final: bytes) -> None:
        text = server_final.decode()
        if not text.startswith("v=") or not hmac.compare_digest(
            base64.b64decode(text[2:]), self.server_signature
        ):
            raise ProtocolError("SCRAM: the server's signature does not match")


def login_sqlstate(
    host: str,
    port: int,
    user: str,
    password: str,
    dbname: str,
    timeout: float = 10.0,
    ca_file: str | None = None,
) -> str | None:
    """Log in and return the SQLSTATE of the server's refusal, or None when the server lets `user` in.

    No TLS (like sslmode=disable) unless `ca_file` is given: then TLS verified against it with the host
    name (like sslmode=verify-full, pg_tls.wrap_socket). Raises OSError (ssl.SSLError included) when the
    server cannot be reached or fails the verification, ValueError when it serves no TLS, and
    ProtocolError for an authentication method other than SCRAM-SHA-256, MD5 or cleartext."""
    startup = struct.pack("!I", PROTOCOL_3_0) + b"".join(
        key + b"\0" + value.encode() + b"\0" for key, value in ((b"user", user), (b"database", dbname))
    )
    scram = None
    with socket.create_connection((host, port), timeout=timeout) as raw:
        sock = pg_tls.wrap_socket(raw, host, ca_file) if ca_file else raw
        sock.sendall(struct.pack("!I", len(startup) + 5) + startup + b"\0")
        while True:
            kind, body = _read_message(sock)
            if kind == b"E":
                return error_fields(body).get("C")
            if kind == b"Z":  # ready for query: in
                sock.sendall(_message(b"X", b""))
                return None
            if kind != b"R":
                continue  # ParameterStatus, BackendKeyData, NoticeResponse
            (code,) = struct.unpack("!I", body[:4])
            if code == 0:
                continue
            if code == 3:
                sock.sendall(_message(b"p", password.encode() + b"\0"))
            elif code == 5:
                inner = hashlib.md5((password + user).encode()).hexdigest().encode()
                outer = hashlib.md5(inner + body[4:8]).hexdigest()
                sock.sendall(_message(b"p", b"md5" + outer.encode() + b"\0"))
            elif code == 10:
                if b"SCRAM-SHA-256\0" not in body[4:]:
                    raise ProtocolError("the server offers no SCRAM-SHA-256 (channel binding only?)")
                scram = _ScramClient(password)
                first = scram.first()
                sock.sendall(_message(b"p", b"SCRAM-SHA-256\0" + struct.pack("!I", len(first)) + first))
            elif code == 11 and scram:
                sock.sendall(_message(b"p", scram.final(body[4:])))
            elif code == 12 and scram:
                scram.check(body[4:])
            else:
                raise ProtocolError(f"unsupported authentication request {code}")
