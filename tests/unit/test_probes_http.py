"""HTTP, S3 (health endpoint + SigV4 HEAD bucket) and TCP probes against servers started in the test."""

from __future__ import annotations

import time
from http.server import BaseHTTPRequestHandler
from typing import ClassVar

import pytest
from ansible_collections.cleanmatex.infra.plugins.module_utils import probes
from test_probes_support import DelayedListener, HttpServer, SilentServer, free_port, make_s3_handler

ACCESS, SECRET = "cmx-access", "cmx-secret-key-123"


class StatusHandler(BaseHTTPRequestHandler):
    """/status/<code> answers <code>; /redirect answers 302; records request headers."""

    seen: ClassVar[list] = []

    def log_message(self, *args):
        pass

    def do_GET(self):
        StatusHandler.seen.append({k.lower(): v for k, v in self.headers.items()})
        if self.path.startswith("/status/"):
            code = int(self.path.rsplit("/", 1)[1].split("?")[0])
        elif self.path == "/redirect":
            self.send_response(302)
            self.send_header("Location", "/status/200")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        else:
            code = 404
        self.send_response(code)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    do_HEAD = do_GET


@pytest.fixture(scope="module")
def http():
    with HttpServer(StatusHandler) as srv:
        yield srv


@pytest.fixture
def s3():
    pytest.importorskip("botocore")
    with HttpServer(make_s3_handler(ACCESS, SECRET, buckets=("cleanmatex-dev",))) as srv:
        yield srv


def test_http_expected_status(http):
    assert probes.probe_http(f"{http.url}/status/200", timeout=2).up
    assert probes.probe_http(f"{http.url}/status/401", expected_status=[200, 401], timeout=2).up


def test_http_unexpected_status_is_down_with_reason(http):
    res = probes.probe_http(f"{http.url}/status/503?apikey=secret-in-query", timeout=2, name="supabase")
    assert res.status == "down"
    assert res.name == "supabase"
    assert "HTTP 503" in res.error and "expected 200" in res.error
    assert "secret-in-query" not in res.error


def test_http_redirect_is_not_followed(http):
    res = probes.probe_http(f"{http.url}/redirect", timeout=2)
    assert res.status == "down" and "HTTP 302" in res.error
    assert probes.probe_http(f"{http.url}/redirect", expected_status=[302], timeout=2).up


def test_http_head_and_headers_sent_but_not_leaked(http):
    res = probes.probe_http(
        f"{http.url}/status/500", method="HEAD", headers={"apikey": "anon-key-xyz"}, timeout=2
    )
    assert res.status == "down"
    assert StatusHandler.seen[-1].get("apikey") == "anon-key-xyz"
    assert "anon-key-xyz" not in res.error


def test_http_url_credentials_not_in_error():
    res = probes.probe_http(f"http://user:pa55word@127.0.0.1:{free_port()}/x", timeout=1)
    assert res.status == "down"
    assert "pa55word" not in res.error and "connection refused" in res.error


def test_http_hung_server_times_out():
    with SilentServer() as srv:
        start = time.monotonic()
        res = probes.probe_http(f"http://127.0.0.1:{srv.port}/health", timeout=0.3)
        took = time.monotonic() - start
    assert res.status == "down"
    assert "timed out after 300 ms" in res.error
    assert took < 1.5


def test_http_ignores_proxy_environment(http, monkeypatch):
    # a proxy variable pointing at a dead port must not affect probes of local services
    monkeypatch.setenv("http_proxy", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{free_port()}")
    assert probes.probe_http(f"{http.url}/status/200", timeout=2).up


# --------------------------------------------------------------------------- S3


def test_s3_health_and_signed_bucket_up(s3):
    res = probes.probe_s3(s3.url, bucket="cleanmatex-dev", access_key=ACCESS, secret_key=SECRET, timeout=2)
    assert res.status == "up", res
    handler = s3.httpd.RequestHandlerClass
    assert ("GET", "/healthz") in handler.state["requests"]
    assert ("HEAD", "/cleanmatex-dev") in handler.state["requests"]


def test_s3_wrong_secret_is_down_without_leaking(s3):
    res = probes.probe_s3(
        s3.url, bucket="cleanmatex-dev", access_key=ACCESS, secret_key="wrong-secret-456", timeout=2
    )
    assert res.status == "down"
    assert "access denied" in res.error
    assert "wrong-secret-456" not in res.error


def test_s3_missing_bucket_is_down(s3):
    res = probes.probe_s3(s3.url, bucket="nope", access_key=ACCESS, secret_key=SECRET, timeout=2)
    assert res.status == "down"
    assert res.error == "bucket 'nope' does not exist"


def test_s3_unhealthy_engine_is_down(s3):
    s3.httpd.RequestHandlerClass.state["healthy"] = False
    res = probes.probe_s3(s3.url, bucket="cleanmatex-dev", access_key=ACCESS, secret_key=SECRET, timeout=2)
    assert res.status == "down"
    assert res.error.startswith("health endpoint:") and "HTTP 503" in res.error


def test_s3_health_path_is_a_parameter(s3):
    res = probes.probe_s3(s3.url, health_path="/minio/health/live", timeout=2)
    assert res.status == "down" and "/minio/health/live" in res.error
    assert probes.probe_s3(s3.url, health_path="/healthz", timeout=2).up
    # no health path: the signed bucket check alone
    assert probes.probe_s3(
        s3.url, health_path=None, bucket="cleanmatex-dev", access_key=ACCESS, secret_key=SECRET, timeout=2
    ).up


def test_s3_refused():
    res = probes.probe_s3(f"http://127.0.0.1:{free_port()}", timeout=1)
    assert res.status == "down" and "connection refused" in res.error


# --------------------------------------------------------------------------- TCP + dispatch


def test_tcp_probe_follows_listener():
    lst = DelayedListener()
    try:
        before = probes.probe_tcp("127.0.0.1", lst.port, timeout=1, name="api")
        assert before.status == "down" and f"127.0.0.1:{lst.port}: connection refused" == before.error
        lst.release.set()
        assert lst.listening.wait(5)
        after = probes.probe_tcp("127.0.0.1", lst.port, timeout=1, name="api")
        assert after.up and after.name == "api"
    finally:
        lst.close()


def test_make_probe_dispatch_and_unknown_keys(http):
    fn = probes.make_probe(
        {
            "name": "web",
            "type": "http",
            "url": f"{http.url}/status/200",
            "container": "x",
            "host": None,
            "expected_status": [200],
        }
    )
    res = fn(2)
    assert res.up and res.name == "web"
    down = probes.make_probe({"name": "db", "type": "down", "error": "not configured"})(1)
    assert (down.status, down.error) == ("down", "not configured")
    with pytest.raises(ValueError):
        probes.make_probe({"name": "x", "type": "ftp"})


def test_result_shape():
    res = probes.probe_tcp("127.0.0.1", free_port(), timeout=0.5)
    assert set(res.as_dict()) == {"name", "status", "latency_ms", "error"}
    assert res.status in ("up", "down")


def test_redact():
    text = "postgresql://u:hunter22@h/db password=abc123 secret_key=zzz plus hunter22 and token-xyz"
    out = probes.redact(text, ["token-xyz"])
    for secret in ("hunter22", "abc123", "zzz", "token-xyz"):
        assert secret not in out
