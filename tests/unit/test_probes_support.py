"""Real local servers for the probe/health/wait tests, all on 127.0.0.1 with free ports.

Helpers (imported by the other test modules) plus a few self-tests. Each
server helper raises ``pytest.skip`` when its binary is missing:
(PostgreSQL is the shared session cluster of tests/pg_cluster.py, the ``pg`` fixture),
pgbouncer (Debian pgbouncer), redis-server (Debian redis-server), docker with
a busybox-static image built locally (no registry needed).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest

LOCALHOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((LOCALHOST, 0))
        return s.getsockname()[1]


def wait_for(condition, timeout: float = 15.0, step: float = 0.02, what: str = "condition"):
    """Poll ``condition()`` until truthy (returns its value) or fail after ``timeout`` seconds."""
    end = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(step)


def port_open(port: int, host: str = LOCALHOST) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


# --------------------------------------------------------------------------- silent TCP server


class SilentServer:
    """Accepts TCP connections and never sends a byte: a hung dependency."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((LOCALHOST, 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.accepted = threading.Event()
        self.conns: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self):
        self.sock.settimeout(0.1)
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.conns.append(conn)
            self.accepted.set()

    def close(self):
        self._stop.set()
        self._thread.join(2)
        for c in self.conns:
            c.close()
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class DelayedListener:
    """A TCP listener that only starts listening when ``release`` is set."""

    def __init__(self, port: int | None = None):
        self.port = port or free_port()
        self.release = threading.Event()
        self.listening = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        if not self.release.wait(60):
            return
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((LOCALHOST, self.port))
        sock.listen(16)
        sock.settimeout(0.1)
        self.listening.set()
        while not self._stop.is_set():
            try:
                conn, _ = sock.accept()
                conn.close()
            except OSError:
                continue
        sock.close()

    def close(self):
        self.release.set()
        self._stop.set()
        self._thread.join(2)


# --------------------------------------------------------------------------- HTTP / fake S3


class HttpServer:
    """ThreadingHTTPServer on 127.0.0.1:<free> with a handler class; runs in a thread."""

    def __init__(self, handler_cls):
        self.httpd = ThreadingHTTPServer((LOCALHOST, 0), handler_cls)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.url = f"http://{LOCALHOST}:{self.port}"
        self._thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def botocore_signature_ok(
    method: str, url: str, headers: dict, access_key: str, secret_key: str, region: str = "us-east-1"
) -> bool:
    """Re-sign the received request with botocore (an independent SigV4) and compare signatures.

    Only the headers our client signs are given to botocore; the timestamp is
    the received X-Amz-Date (botocore's canonical_request/string_to_sign/
    signature steps take it from request.context["timestamp"]).
    """
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    received = headers.get("Authorization", "")
    amz_date = headers.get("X-Amz-Date", "")
    if "Signature=" not in received or not amz_date:
        return False
    req = AWSRequest(method=method, url=url, data=b"")
    for k in ("Host", "X-Amz-Date", "X-Amz-Content-Sha256"):
        if k in headers:
            req.headers[k] = headers[k]
    req.context["timestamp"] = amz_date
    auth = SigV4Auth(Credentials(access_key, secret_key), "s3", region)
    canonical = auth.canonical_request(req)
    signature = auth.signature(auth.string_to_sign(req, canonical), req)
    signed = received.split("SignedHeaders=", 1)[1].split(",", 1)[0]
    return signed == auth.signed_headers(auth.headers_to_sign(req)) and received.endswith(
        f"Signature={signature}"
    )


def make_s3_handler(access_key: str, secret_key: str, buckets=("cmx-bucket",), healthy=True):
    """A minimal S3 endpoint: GET /healthz and SigV4-verified HEAD /<bucket> (verified by botocore)."""

    class Handler(BaseHTTPRequestHandler):
        state: ClassVar[dict] = {"healthy": healthy, "requests": []}

        def log_message(self, *args):
            pass

        def _send(self, code, body=b""):
            self.send_response(code)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def do_GET(self):
            self.state["requests"].append(("GET", self.path))
            if self.path == "/healthz":
                self._send(200 if self.state["healthy"] else 503, b"ok")
            else:
                self._send(404)

        def do_HEAD(self):
            self.state["requests"].append(("HEAD", self.path))
            url = f"http://{self.headers['Host']}{self.path}"
            headers = {k: v for k, v in self.headers.items()}
            if not headers.get("Authorization", "").startswith(f"AWS4-HMAC-SHA256 Credential={access_key}/"):
                return self._send(403)
            if headers.get("X-Amz-Content-Sha256") != hashlib.sha256(b"").hexdigest():
                return self._send(400)
            if not botocore_signature_ok("HEAD", url, headers, access_key, secret_key):
                return self._send(403)
            bucket = self.path.strip("/")
            self._send(200 if bucket in buckets else 404)

    return Handler


# --------------------------------------------------------------------------- processes


def _demote_argv(argv: list[str], user: str) -> list[str]:
    """Run as ``user`` when we are root (initdb, postgres and pgbouncer refuse root)."""
    if os.geteuid() != 0:
        return argv
    setpriv = shutil.which("setpriv")
    if not setpriv:
        pytest.skip("setpriv missing: cannot run postgres as non-root")
    pw = pwd.getpwnam(user)
    return [setpriv, f"--reuid={pw.pw_uid}", f"--regid={pw.pw_gid}", "--clear-groups", *argv]


def _service_user() -> str:
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    pytest.skip("no unprivileged user to run postgres as")
    return ""


def _stop(proc: subprocess.Popen | None):
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


@contextlib.contextmanager
def pgbouncer_server(pg: dict):
    """PgBouncer (transaction pooling, scram) in front of ``pg``."""
    binary = shutil.which("pgbouncer") or (
        "/usr/sbin/pgbouncer" if os.path.exists("/usr/sbin/pgbouncer") else None
    )
    if not binary:
        pytest.skip("pgbouncer not installed (apt-get install pgbouncer)")
    user = _service_user()
    tmp = tempfile.mkdtemp(prefix="cmx-pgb-")
    proc = None
    try:
        port = free_port()
        with open(os.path.join(tmp, "userlist.txt"), "w") as fh:
            fh.write(f'"{pg["user"]}" "{pg["password"]}"\n')
        ini = os.path.join(tmp, "pgbouncer.ini")
        with open(ini, "w") as fh:
            fh.write(
                "[databases]\n"
                f"{pg['dbname']} = host={pg['host']} port={pg['port']} dbname={pg['dbname']}\n"
                "[pgbouncer]\n"
                f"listen_addr = {LOCALHOST}\nlisten_port = {port}\nunix_socket_dir =\n"
                f"auth_type = scram-sha-256\nauth_file = {tmp}/userlist.txt\n"
                "pool_mode = transaction\nmax_client_conn = 50\ndefault_pool_size = 5\n"
                f"logfile = {tmp}/pgbouncer.log\npidfile = {tmp}/pgbouncer.pid\n"
            )
        if os.geteuid() == 0:
            pw = pwd.getpwnam(user)
            for name in (tmp, ini, os.path.join(tmp, "userlist.txt")):
                os.chown(name, pw.pw_uid, pw.pw_gid)
        proc = subprocess.Popen(
            _demote_argv([binary, ini], user), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )

        def ready():
            if proc.poll() is not None:
                raise AssertionError(f"pgbouncer exited: {proc.stderr.read().decode()[-2000:]}")
            return port_open(port)

        wait_for(ready, 30, 0.05, "pgbouncer to listen")
        yield {
            **pg,
            "port": port,
            "proc": proc,
            "url": f"postgresql://{pg['user']}:{pg['password']}@{LOCALHOST}:{port}/{pg['dbname']}",
        }
    finally:
        _stop(proc)
        shutil.rmtree(tmp, ignore_errors=True)


class RedisServer:
    """redis-server on 127.0.0.1; ``start()``/``stop()`` may be called repeatedly (same port)."""

    def __init__(self, password: str | None = None, port: int | None = None):
        self.binary = shutil.which("redis-server")
        if not self.binary:
            pytest.skip("redis-server not installed (apt-get install redis-server)")
        self.password = password
        self.port = port or free_port()
        self.dir = tempfile.mkdtemp(prefix="cmx-redis-")
        self.proc = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}{LOCALHOST}:{self.port}/0"

    def start(self):
        argv = [
            self.binary,
            "--port",
            str(self.port),
            "--bind",
            LOCALHOST,
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            self.dir,
            "--daemonize",
            "no",
            "--protected-mode",
            "no",
            "--loglevel",
            "warning",
        ]
        if self.password:
            argv += ["--requirepass", self.password]
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

        def ready():
            if self.proc.poll() is not None:
                raise AssertionError(f"redis exited: {self.proc.stderr.read().decode()[-2000:]}")
            return port_open(self.port)

        wait_for(ready, 30, 0.02, "redis to listen")
        return self

    def stop(self):
        _stop(self.proc)
        self.proc = None

    def close(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.close()


# --------------------------------------------------------------------------- docker

BUSYBOX_IMAGE = "cmx-test-busybox:latest"


def require_docker() -> str:
    """The docker CLI, once the daemon answers; skips (a failure under CI=true) otherwise."""
    docker = shutil.which("docker")
    if not docker:
        pytest.skip("docker CLI missing")
    if subprocess.run([docker, "info"], capture_output=True, timeout=30).returncode != 0:
        pytest.skip("docker daemon not reachable")
    return docker


def docker_busybox_image() -> str:
    """A local image holding only busybox-static (docker import; no registry). Skips when impossible."""
    docker = require_docker()
    busybox = shutil.which("busybox")
    if not busybox:
        pytest.skip("busybox (busybox-static) missing")
    if subprocess.run([docker, "image", "inspect", BUSYBOX_IMAGE], capture_output=True).returncode == 0:
        return BUSYBOX_IMAGE
    out = (
        subprocess.run(["file", "-L", busybox], capture_output=True, text=True).stdout
        if shutil.which("file")
        else "statically linked"
    )
    if "statically linked" not in out and "static-pie" not in out:
        pytest.skip("busybox is not the static build (apt-get install busybox-static)")
    with tempfile.TemporaryDirectory() as tmp:
        os.makedirs(os.path.join(tmp, "bin"))
        shutil.copy2(busybox, os.path.join(tmp, "bin", "busybox"))
        tar = os.path.join(tmp, "img.tar")
        subprocess.run(["tar", "-C", tmp, "-cf", tar, "bin"], check=True)
        subprocess.run([docker, "import", tar, BUSYBOX_IMAGE], check=True, capture_output=True, timeout=120)
    return BUSYBOX_IMAGE


@contextlib.contextmanager
def docker_container(name: str, args: list[str], command: list[str], project: str | None = None):
    image = docker_busybox_image()
    argv = ["docker", "run", "-d", "--name", name]
    if project:
        argv += ["--label", f"com.docker.compose.project={project}"]
    subprocess.run(["docker", "rm", "-f", name], capture_output=True)
    subprocess.run(argv + args + [image] + command, check=True, capture_output=True, timeout=120)
    try:
        yield name
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True, timeout=60)


# --------------------------------------------------------------------------- self-tests


def test_silent_server_accepts_and_never_answers():
    with SilentServer() as srv, socket.create_connection((LOCALHOST, srv.port), timeout=1) as c:
        assert srv.accepted.wait(5)
        c.settimeout(0.2)
        with pytest.raises(socket.timeout):
            c.recv(1)


def test_delayed_listener_opens_only_when_released():
    lst = DelayedListener()
    try:
        assert not port_open(lst.port)
        lst.release.set()
        assert lst.listening.wait(5)
        assert port_open(lst.port)
    finally:
        lst.close()
