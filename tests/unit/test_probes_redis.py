"""RESP parsing (pure) and the Redis probe against a real redis-server on 127.0.0.1."""

from __future__ import annotations

import time

import pytest
from ansible_collections.cleanmatex.infra.plugins.module_utils import probes
from ansible_collections.cleanmatex.infra.plugins.module_utils.probes import (
    RespError,
    RespProtocolError,
    encode_command,
    parse_redis_url,
    parse_reply,
)
from test_probes_support import SilentServer, free_port

# --------------------------------------------------------------------------- RESP


def test_encode_command_is_array_of_bulk_strings():
    assert encode_command("AUTH", "p@ss wörd") == b"*2\r\n$4\r\nAUTH\r\n$10\r\np@ss w\xc3\xb6rd\r\n"
    assert encode_command("PING") == b"*1\r\n$4\r\nPING\r\n"


@pytest.mark.parametrize(
    ("data", "value"),
    [
        (b"+PONG\r\n", "PONG"),
        (b":42\r\n", 42),
        (b":-3\r\n", -3),
        (b"$5\r\nhello\r\n", b"hello"),
        (b"$0\r\n\r\n", b""),
        (b"$-1\r\n", None),
        (b"*-1\r\n", None),
        (b"*0\r\n", []),
        (b"*3\r\n:1\r\n$3\r\nfoo\r\n*1\r\n+OK\r\n", [1, b"foo", ["OK"]]),
        (b"$4\r\na\r\nb\r\n", b"a\r\nb"),  # binary-safe bulk string
    ],
)
def test_parse_reply_values(data, value):
    assert parse_reply(data) == (value, len(data))


def test_parse_reply_error_is_returned_not_raised():
    value, used = parse_reply(b"-NOAUTH Authentication required.\r\n")
    assert isinstance(value, RespError)
    assert value.text == "NOAUTH Authentication required."
    assert used == 34


def test_parse_reply_error_inside_array():
    value, _ = parse_reply(b"*2\r\n+OK\r\n-ERR boom\r\n")
    assert value == ["OK", RespError("ERR boom")]


def test_parse_reply_leaves_following_bytes():
    assert parse_reply(b"+OK\r\n+PONG\r\n") == ("OK", 5)


@pytest.mark.parametrize(
    "data", [b"*3\r\n:1\r\n$3\r\nfoo\r\n*1\r\n+OK\r\n", b"$5\r\nhello\r\n", b"+PONG\r\n"]
)
def test_parse_reply_incomplete_at_every_split(data):
    for cut in range(len(data)):
        assert parse_reply(data[:cut]) is None, cut
    assert parse_reply(data) is not None


@pytest.mark.parametrize(
    "data",
    [b"HTTP/1.1 400 Bad Request\r\n", b"$abc\r\n", b":x\r\n", b"$3\r\nabcd\r\n"],
)
def test_parse_reply_protocol_errors(data):
    with pytest.raises(RespProtocolError):
        parse_reply(data)


def test_parse_redis_url():
    assert parse_redis_url("redis://:s3cr%40t@cache:6380/2") == {
        "host": "cache",
        "port": 6380,
        "username": None,
        "password": "s3cr@t",
        "db": 2,
        "tls": False,
    }
    assert parse_redis_url("rediss://app:pw@h")["tls"] is True
    assert parse_redis_url("redis://localhost")["port"] == 6379
    with pytest.raises(ValueError):
        parse_redis_url("http://x")


# --------------------------------------------------------------------------- real redis


@pytest.fixture(scope="module")
def redis_open():
    from test_probes_support import RedisServer

    with RedisServer() as srv:
        yield srv


@pytest.fixture(scope="module")
def redis_auth():
    from test_probes_support import RedisServer

    with RedisServer(password="cmx-test-redis-secret") as srv:
        yield srv


def test_redis_up_without_password(redis_open):
    res = probes.probe_redis(url=redis_open.url, timeout=2)
    assert res.status == "up", res
    assert res.error is None
    assert isinstance(res.latency_ms, float) and res.latency_ms >= 0
    assert res.latency_ms == round(res.latency_ms, 1)


def test_redis_up_with_host_port(redis_open):
    assert probes.probe_redis(host="127.0.0.1", port=redis_open.port, timeout=2).up


def test_redis_auth_required_is_down_with_noauth(redis_auth):
    res = probes.probe_redis(host="127.0.0.1", port=redis_auth.port, timeout=2)
    assert res.status == "down"
    assert res.error.startswith("NOAUTH")


def test_redis_wrong_password_is_down_with_wrongpass_and_no_secret(redis_auth):
    res = probes.probe_redis(host="127.0.0.1", port=redis_auth.port, password="not-the-password", timeout=2)
    assert res.status == "down"
    assert "WRONGPASS" in res.error
    assert "not-the-password" not in res.error


def test_redis_password_in_url_and_as_option(redis_auth):
    assert probes.probe_redis(url=redis_auth.url, timeout=2).up
    assert probes.probe_redis(
        url=f"redis://127.0.0.1:{redis_auth.port}", password=redis_auth.password, timeout=2
    ).up


def test_redis_refused_is_down_fast():
    port = free_port()
    start = time.monotonic()
    res = probes.probe_redis(url=f"redis://:pw-secret@127.0.0.1:{port}/0", timeout=2)
    assert res.status == "down"
    assert "connection refused" in res.error
    assert "pw-secret" not in res.error
    assert time.monotonic() - start < 1.5


def test_redis_hung_server_times_out_within_timeout():
    with SilentServer() as srv:
        start = time.monotonic()
        res = probes.probe_redis(host="127.0.0.1", port=srv.port, timeout=0.3)
        took = time.monotonic() - start
    assert res.status == "down"
    assert res.error == "timed out after 300 ms"
    assert 0.25 <= took < 1.5


def test_redis_probe_against_non_redis_server():
    from http.server import BaseHTTPRequestHandler

    from test_probes_support import HttpServer

    class H(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

    with HttpServer(H) as srv:
        res = probes.probe_redis(host="127.0.0.1", port=srv.port, timeout=2)
    assert res.status == "down"
    assert "not a Redis server" in res.error or "closed" in res.error
