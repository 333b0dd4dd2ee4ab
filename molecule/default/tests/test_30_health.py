"""GET /health: the seed's contract, 503 with only Redis down within the probe budget, recovery by itself."""

from __future__ import annotations

import datetime
import json
import time
import urllib.error
import urllib.request

import pytest
from conftest import container, docker, inspect, wait_until

# The service's budget: per-probe timeout 1500 ms + 500 ms (roles/stack defaults); one second of slack.
BUDGET_S = 2.0


def get_health(inv) -> tuple[int, dict, float]:
    start = time.monotonic()
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{inv['cmx_health_port']}/health", timeout=10) as resp:
            status, body = resp.status, resp.read()
    except urllib.error.HTTPError as error:
        status, body = error.code, error.read()
    return status, json.loads(body), time.monotonic() - start


def assert_contract(report: dict) -> None:
    assert set(report) == {"status", "timestamp", "services", "version"}
    assert report["status"] in ("healthy", "unhealthy")
    datetime.datetime.fromisoformat(report["timestamp"].replace("Z", "+00:00"))
    assert {"database", "redis", "storage"} <= set(report["services"])
    for entry in report["services"].values():
        assert set(entry) == {"status", "latency"}
        assert entry["status"] in ("up", "down")
        assert isinstance(entry["latency"], (int, float))
    assert isinstance(report["version"], str) and report["version"]


def test_health_answers_200_with_the_seed_contract(inv):
    status, report, _ = get_health(inv)
    assert_contract(report)
    assert status == 200
    assert report["status"] == "healthy"
    assert all(entry["status"] == "up" for entry in report["services"].values())


@pytest.fixture
def redis_stopped():
    docker("stop", container("redis"))
    try:
        yield
    finally:
        docker("start", container("redis"))


def test_redis_down_gives_503_within_budget_then_recovers(inv, redis_stopped):
    def redis_reported_down():
        status, report, elapsed = get_health(inv)
        return (status, report, elapsed) if report["services"]["redis"]["status"] == "down" else None

    status, report, elapsed = wait_until(redis_reported_down, 15, "/health to report redis down")
    assert_contract(report)
    assert status == 503 and report["status"] == "unhealthy"
    others = {name: entry["status"] for name, entry in report["services"].items() if name != "redis"}
    assert set(others.values()) == {"up"}, others
    assert elapsed < BUDGET_S + 1.0, f"/health took {elapsed:.2f} s with redis down"
    assert inspect(container("health"))["RestartCount"] == 0
    assert inspect(container("health"))["State"]["Running"]


def test_health_recovers_by_itself_after_redis_returns(inv):
    wait_until(lambda: get_health(inv)[0] == 200, 60, "/health to answer 200 again")
    assert inspect(container("health"))["RestartCount"] == 0
