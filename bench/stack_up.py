#!/usr/bin/env python3
"""Benchmark: how much time Ansible adds on top of raw `docker compose up -d --wait`.

Measures, with images already present:
  raw_cold   docker compose up -d --wait on the rendered files, after `down -v` (empty volumes: initdb runs)
  play_cold  ansible-playbook dev.yml after `down -v` (also applies migrations + seed, bucket, env files)
  raw_restart / play_restart  the same after a plain `down` (volumes kept)
  play_noop  ansible-playbook dev.yml with nothing to change (the fast re-run: stops early)
  play_full  the same with -e cmx_fast_rerun=false (every task checks its state)
and prints the ratios the issue sets: play_cold / raw_cold <= 2, play_noop <= 4 s.

Usage: .venv/bin/python bench/stack_up.py [--inventory inventories/dev] [--rounds 3]
It drives the stack of the given inventory (run it where that stack may be restarted).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def run(cmd: list[str], **kw) -> float:
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", "ANSIBLE_NOCOLOR": "1"}
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, **kw)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"bench: {' '.join(cmd)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inventory", default="inventories/dev")
    parser.add_argument("--project-dir", default=str(ROOT / ".cmx"))
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    play = [str(BIN / "ansible-playbook"), "-i", args.inventory, "dev.yml"]
    compose = ["docker", "compose", "--project-directory", args.project_dir, "--profile", "tools"]
    run(play)  # render everything and build/pull images once, outside the timings

    raw, cold, raw_restart, restart, noop, full = [], [], [], [], [], []
    for _ in range(args.rounds):
        run([*compose, "down", "-v"])
        raw.append(run([*compose, "up", "-d", "--wait"]))
        run([*compose, "down", "-v"])
        cold.append(run(play))
        run([*compose, "down"])
        raw_restart.append(run([*compose, "up", "-d", "--wait"]))
        run([*compose, "down"])
        restart.append(run(play))
        noop.append(run(play))
        full.append(run([*play, "-e", "cmx_fast_rerun=false"]))

    med = statistics.median

    def line(label: str, values: list[float]) -> None:
        print(f"{label:<34}{med(values):6.2f} s  (runs: {', '.join(f'{x:.2f}' for x in values)})")

    line("raw compose up --wait, cold:", raw)
    line("dev.yml, cold:", cold)
    line("raw compose up --wait, restart:", raw_restart)
    line("dev.yml, restart:", restart)
    line("dev.yml no-op re-run:", noop)
    line("dev.yml full no-op converge:", full)
    print(f"ratio cold dev.yml / raw compose: {med(cold) / med(raw):.2f}  (target <= 2.00)")
    print(f"ratio restart dev.yml / raw compose: {med(restart) / med(raw_restart):.2f}")
    print(f"no-op re-run: {med(noop):.2f} s  (target <= 4.00 s)")


if __name__ == "__main__":
    main()
