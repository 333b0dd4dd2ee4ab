"""cmx_wait_healthy: the wait loop (health_report.wait_until_up) and the module run as a real process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

import pytest
from ansible_collections.cleanmatex.infra.plugins.module_utils import probes
from ansible_collections.cleanmatex.infra.plugins.module_utils.health_report import wait_until_up
from test_probes_support import DelayedListener, RedisServer, docker_container, free_port

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), os.pardir, os.pardir))
MODULE = "ansible_collections.cleanmatex.infra.plugins.modules.cmx_wait_healthy"


def tcp(port):
    return lambda t: probes.probe_tcp("127.0.0.1", port, timeout=t, name="svc")


# --------------------------------------------------------------------------- wait loop


def test_wait_notices_a_listener_that_appears_later():
    lst = DelayedListener()
    first_down = threading.Event()
    outcome = {}

    def on_round(states):
        if states["api"]["status"] == "down":
            first_down.set()

    def run():
        outcome["value"] = wait_until_up(
            {"api": tcp(lst.port)}, timeout=30, interval=0.1, probe_timeout=1, on_round=on_round
        )
        outcome["done_at"] = time.monotonic()

    waiter = threading.Thread(target=run, daemon=True)
    waiter.start()
    try:
        assert first_down.wait(10), "the first round should see the port closed"
        lst.release.set()
        assert lst.listening.wait(10)
        listening_at = time.monotonic()
        waiter.join(20)
        assert not waiter.is_alive()
    finally:
        lst.close()
    ok, states, elapsed = outcome["value"]
    assert ok
    st = states["api"]
    assert st["status"] == "up" and st["error"] is None
    assert st["attempts"] >= 2
    assert st["ready_after_s"] is not None and st["ready_after_s"] <= elapsed
    # polled every 0.1 s: readiness is noticed well within a second (bound kept loose for slow CI)
    assert outcome["done_at"] - listening_at < 2.0


def test_wait_times_out_with_last_error():
    port = free_port()
    ok, states, elapsed = wait_until_up({"api": tcp(port)}, timeout=0.5, interval=0.1, probe_timeout=0.2)
    assert not ok
    assert states["api"]["status"] == "down"
    assert states["api"]["attempts"] >= 2
    assert states["api"]["error"] == f"127.0.0.1:{port}: connection refused"
    assert 0.5 <= elapsed < 2.0


def test_wait_does_not_reprobe_services_already_up():
    calls = {"up": 0}
    gate = threading.Event()

    def always_up(t):
        calls["up"] += 1
        return probes.ProbeResult("up", "up", 0.1)

    def until_gate(t):
        if calls["up"] and not gate.is_set():
            gate.set()
            return probes.ProbeResult("late", "down", 0.1, "not yet")
        return probes.ProbeResult("late", "up", 0.1)

    ok, states, _ = wait_until_up({"up": always_up, "late": until_gate}, timeout=10, interval=0.01)
    assert ok
    assert calls["up"] == 1
    assert states["late"]["attempts"] == 2


def test_wait_once_makes_a_single_round():
    ok, states, _ = wait_until_up({"api": tcp(free_port())}, timeout=30, interval=0.1, once=True)
    assert not ok and states["api"]["attempts"] == 1


# --------------------------------------------------------------------------- the module as a process


def run_module(args: dict, check_mode: bool = False) -> tuple[int, dict, str]:
    payload = {"ANSIBLE_MODULE_ARGS": dict(args, _ansible_check_mode=check_mode)}
    env = dict(os.environ, PYTHONPATH=os.path.join(REPO, ".collections"))
    proc = subprocess.run(
        [sys.executable, "-m", MODULE, json.dumps(payload)],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=120,
    )
    try:
        result = json.loads(proc.stdout)
    except json.JSONDecodeError:
        raise AssertionError(f"module printed no JSON: {proc.stdout}\n{proc.stderr}") from None
    return proc.returncode, result, proc.stdout


@pytest.fixture(scope="module")
def redis():
    with RedisServer(password="wait-redis-secret") as srv:
        yield srv


def test_module_all_up(redis):
    rc, res, _ = run_module(
        {
            "services": [
                {
                    "name": "redis",
                    "type": "redis",
                    "host": "127.0.0.1",
                    "port": redis.port,
                    "password": redis.password,
                },
                {
                    "name": "redis-url",
                    "type": "redis",
                    "url": f"redis://127.0.0.1:{redis.port}",
                    "password": redis.password,
                },
            ],
            "timeout": 10,
        }
    )
    assert rc == 0, res
    assert res["changed"] is False and res["all_up"] is True and res["down"] == []
    st = res["services"]["redis"]
    assert st["status"] == "up" and st["attempts"] == 1 and st["type"] == "redis"
    assert isinstance(st["latency_ms"], float)


def test_module_timeout_names_service_error_and_hides_password(redis):
    rc, res, raw = run_module(
        {
            "services": [
                {
                    "name": "redis",
                    "type": "redis",
                    "host": "127.0.0.1",
                    "port": redis.port,
                    "password": "definitely-wrong-pw",
                },
            ],
            "timeout": 0.6,
            "interval": 0.1,
        }
    )
    assert rc == 1 and res["failed"] is True
    assert "Timed out after 0.6 s waiting for 1 service(s): redis" in res["msg"]
    assert "AUTH failed: WRONGPASS" in res["msg"]
    assert res["services"]["redis"]["attempts"] >= 2
    assert "definitely-wrong-pw" not in raw


def test_module_timeout_shows_last_20_container_log_lines():
    port = free_port()
    # docker stamps stdout and stderr as it reads each pipe, so a burst has no reliable cross-stream order:
    # the container pauses around its stderr line (a log pattern, not a test timing assumption)
    script = (
        "i=1; while [ $i -le 25 ]; do echo out-line-$i; i=$((i+1)); done; sleep 0.2; echo err-line >&2;"
        " sleep 0.2; while [ $i -le 30 ]; do echo out-line-$i; i=$((i+1)); done; echo done-marker; sleep 600"
    )
    with docker_container(
        f"cmx-test-waitlog-{os.getpid()}", [], ["/bin/busybox", "sh", "-c", script]
    ) as name:
        # the container has written its lines when `docker logs` shows the last one
        from test_probes_support import wait_for

        wait_for(
            lambda: (
                "done-marker"
                in subprocess.run(["docker", "logs", name], capture_output=True, text=True).stdout
                and "err-line"
                in subprocess.run(["docker", "logs", name], capture_output=True, text=True).stderr
            ),
            30,
            0.1,
            "container output",
        )
        rc, res, _ = run_module(
            {
                "services": [
                    {"name": "api", "type": "tcp", "host": "127.0.0.1", "port": port, "container": name},
                ],
                "timeout": 0.3,
                "interval": 0.1,
            }
        )
    assert rc == 1
    msg = res["msg"]
    assert "- api (tcp): down after" in msg and "connection refused" in msg
    assert f"last 20 log lines of container {name}:" in msg
    tail = res["services"]["api"]["log_tail"]
    assert len(tail) == 20
    assert "err-line" in tail and "done-marker" in tail  # stdout and stderr merged
    assert tail[-1] == "done-marker"
    assert tail.index("err-line") == tail.index("out-line-26") - 1  # time order across the streams
    assert "out-line-5" not in tail  # only the last 20


def test_module_timeout_with_unknown_container():
    rc, res, _ = run_module(
        {
            "services": [
                {
                    "name": "api",
                    "type": "tcp",
                    "host": "127.0.0.1",
                    "port": free_port(),
                    "container": "cmx-no-such-ctr",
                },
            ],
            "timeout": 0.2,
            "interval": 0.1,
        }
    )
    assert rc == 1
    tail = res["services"]["api"]["log_tail"]
    assert len(tail) == 1 and (
        "docker logs cmx-no-such-ctr failed" in tail[0] or "docker CLI not found" in tail[0]
    )


def test_module_check_mode_probes_once_and_does_not_fail():
    rc, res, _ = run_module(
        {
            "services": [
                {"name": "api", "type": "tcp", "host": "127.0.0.1", "port": free_port()},
            ],
            "timeout": 30,
        },
        check_mode=True,
    )
    assert rc == 0, res
    assert res.get("failed") is not True
    assert res["would_wait"] == ["api"] and res["all_up"] is False
    assert res["services"]["api"]["attempts"] == 1
    assert res["elapsed"] < 5


def test_module_waits_until_a_service_turns_ready():
    """The module keeps polling: 503 until the test flips the service to ready, then it returns."""
    from http.server import BaseHTTPRequestHandler

    from test_probes_support import HttpServer

    polled = threading.Event()
    ready = threading.Event()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def do_GET(self):
            code = 200 if ready.is_set() else 503
            if code == 503:
                polled.set()
            self.send_response(code)
            self.send_header("Content-Length", "0")
            self.end_headers()

    done = {}
    with HttpServer(Handler) as srv:

        def run():
            done["out"] = run_module(
                {
                    "services": [{"name": "api", "type": "http", "url": f"{srv.url}/health"}],
                    "timeout": 60,
                    "interval": 0.1,
                }
            )

        t = threading.Thread(target=run, daemon=True)
        t.start()
        assert polled.wait(30), "the module never probed"
        flipped_at = time.monotonic()
        ready.set()
        t.join(60)
        finished_at = time.monotonic()
    rc, res, _ = done["out"]
    assert rc == 0, res
    st = res["services"]["api"]
    assert st["status"] == "up" and st["attempts"] >= 2
    assert finished_at - flipped_at < 3.0  # noticed at the next 0.1 s round (+ process exit)


def test_module_validates_type_fields():
    rc, res, _ = run_module({"services": [{"name": "x", "type": "tcp", "host": "127.0.0.1"}]})
    assert rc == 1 and "needs host and port" in res["msg"]
    rc, res, _ = run_module({"services": [{"name": "x", "type": "ftp"}]})
    assert rc == 1 and "type" in res["msg"]
