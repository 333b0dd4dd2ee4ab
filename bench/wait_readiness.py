#!/usr/bin/env python3
"""Benchmark: how soon cmx_wait_healthy's logic notices that a service became ready.

Stops cmx-redis, starts the same wait loop the module runs (health_report.wait_until_up with the
module's default 0.5 s interval), starts the container again, and compares the moment the waiter
returned with the moment an independent 10 ms poller first got PONG. Prints the lag per round and
the median; the issue's target is "within about a second".

Usage: .venv/bin/python bench/wait_readiness.py [--inventory inventories/ci] [--rounds 5]
Talks to 127.0.0.1 only; it restarts cmx-redis, so run it where that is acceptable.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / ".collections"))

from ansible_collections.cleanmatex.infra.plugins.module_utils import health_report, probes


def inventory(path: str) -> dict:
    return yaml.safe_load((ROOT / path / "group_vars" / "all" / "stack.yml").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inventory", default="inventories/ci")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--interval", type=float, default=0.5)
    args = parser.parse_args()
    inv = inventory(args.inventory)
    spec = {
        "name": "redis",
        "type": "redis",
        "host": "127.0.0.1",
        "port": inv["cmx_redis_port"],
        "password": inv.get("cmx_redis_password") or None,
    }
    probe = probes.make_probe(spec)

    lags = []
    for _ in range(args.rounds):
        subprocess.run(["docker", "stop", "cmx-redis"], check=True, capture_output=True)
        first_up: list[float] = []
        waiter_done: list[float] = []

        def poll_fast(out: list[float]) -> None:
            while not probe(0.2).up:
                time.sleep(0.01)
            out.append(time.monotonic())

        def wait(out: list[float]) -> None:
            health_report.wait_until_up({"redis": probe}, timeout=60, interval=args.interval, probe_timeout=2)
            out.append(time.monotonic())

        threads = [
            threading.Thread(target=poll_fast, args=(first_up,)),
            threading.Thread(target=wait, args=(waiter_done,)),
        ]
        for thread in threads:
            thread.start()
        subprocess.run(["docker", "start", "cmx-redis"], check=True, capture_output=True)
        for thread in threads:
            thread.join(90)
        lag = waiter_done[0] - first_up[0]
        lags.append(lag)
        print(f"round {len(lags)}: ready noticed {lag * 1000:7.1f} ms after the service first answered")
    print(
        f"median lag: {statistics.median(lags) * 1000:.1f} ms  max: {max(lags) * 1000:.1f} ms  "
        f"(interval {args.interval} s; target: within about 1 s)"
    )


if __name__ == "__main__":
    main()
