#!/usr/bin/env python3
"""Benchmark: how much time Ansible adds on top of raw `docker compose up -d --wait`.

Measures, with images already present:
  raw_cold   docker compose up -d --wait on the rendered files, after `down -v` (empty volumes: initdb runs)
  play_cold  ansible-playbook dev.yml after `down -v` (also applies migrations + seed, bucket, env files);
             the last converge's record is there: the unchanged stack starts before the checks (early start)
  cold_unrecorded  the same without that record (a first converge with the images present)
  raw_restart / play_restart  the same after a plain `down` (volumes kept)
  play_noop  ansible-playbook dev.yml with nothing to change (the fast re-run: stops early)
  play_full  the same with -e cmx_fast_rerun=false (every task checks its state)
  cmx_noop   a plain `bin/cmx up` with nothing to change (answers without Ansible; default inventory only)
For the cold and restart runs it also reads Docker's health events while the command runs: "healthy at"
is when the last container turned healthy, counted from the start of the command, the same way for the
raw compose and for dev.yml. It prints the ratios the issue sets (cold dev.yml healthy within 1.6x the raw
compose; no-op re-run <= 1.2 s) and the whole dev.yml run against the raw compose.

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


def run_watching_health(cmd: list[str], containers: set[str]) -> tuple[float, float]:
    """(wall seconds, seconds until the last of `containers` reported healthy) for one command."""
    events = subprocess.Popen(
        ["docker", "events", "--filter", "type=container", "--filter", "event=health_status",
         "--format", "{{.TimeNano}} {{.Action}} {{.Actor.Attributes.name}}"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    time.sleep(0.3)  # let the subscription start before the command does
    start_ns = time.time_ns()
    wall = run(cmd)
    time.sleep(0.3)  # events already emitted are still in the pipe
    events.terminate()
    first_healthy: dict[str, int] = {}
    for line in events.communicate()[0].splitlines():
        stamp, rest = line.split(" ", 1)
        action, name = rest.rsplit(" ", 1)
        if action == "health_status: healthy" and int(stamp) >= start_ns:
            first_healthy.setdefault(name, int(stamp))
    missing = containers - first_healthy.keys()
    if missing:
        sys.exit(f"bench: {' '.join(cmd)}: no healthy event from {', '.join(sorted(missing))}")
    return wall, (max(first_healthy[name] for name in containers) - start_ns) / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inventory", default="inventories/dev")
    parser.add_argument("--project-dir", default=str(ROOT / ".cmx"))
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    play = [str(BIN / "ansible-playbook"), "-i", args.inventory, "dev.yml"]
    compose = ["docker", "compose", "--project-directory", args.project_dir, "--profile", "tools"]
    run(play)  # render everything and build/pull images once, outside the timings
    ps = subprocess.run([*compose, "ps", "--format", "{{.Name}}"], capture_output=True, text=True, check=True)
    containers = set(ps.stdout.split())

    runs: dict[str, list[tuple[float, float]]] = {
        key: [] for key in ("raw", "cold", "raw_re", "re", "cold_unrecorded")
    }
    noop, full, cmx_noop = [], [], []
    plain = args.inventory == "inventories/dev" and Path(args.project_dir) == ROOT / ".cmx"
    for _ in range(args.rounds):
        run([*compose, "down", "-v"])
        runs["raw"].append(run_watching_health([*compose, "up", "-d", "--wait"], containers))
        run([*compose, "down", "-v"])
        runs["cold"].append(run_watching_health(play, containers))
        # The same without the record of the last converge (a first converge, images present): no early start.
        run([*compose, "down", "-v"])
        (Path(args.project_dir) / ".converged").unlink(missing_ok=True)
        runs["cold_unrecorded"].append(run_watching_health(play, containers))
        run([*compose, "down"])
        runs["raw_re"].append(run_watching_health([*compose, "up", "-d", "--wait"], containers))
        run([*compose, "down"])
        runs["re"].append(run_watching_health(play, containers))
        noop.append(run(play))
        full.append(run([*play, "-e", "cmx_fast_rerun=false"]))
        if plain:
            run([str(ROOT / "bin" / "cmx"), "up"])  # records what it read (after the full converge above)
            cmx_noop += [run([str(ROOT / "bin" / "cmx"), "up"]) for _ in range(3)]

    med = statistics.median

    def line(label: str, values: list[float]) -> float:
        print(f"{label:<40}{med(values):6.2f} s  (runs: {', '.join(f'{x:.2f}' for x in values)})")
        return med(values)

    walls = {key: line(f"{key} wall:", [w for w, _ in values]) for key, values in runs.items()}
    healthy = {key: line(f"{key} healthy at:", [h for _, h in values]) for key, values in runs.items()}
    line("dev.yml no-op re-run:", noop)
    line("dev.yml full no-op converge:", full)
    if cmx_noop:
        line("bin/cmx up no-op:", cmx_noop)
    cold_ratio = healthy["cold"] / healthy["raw"]
    print(f"cold: dev.yml healthy at / raw compose healthy at: {cold_ratio:.2f}  (target <= 1.60)")
    print(f"cold: dev.yml healthy at / raw compose up --wait wall: {healthy['cold'] / walls['raw']:.2f}")
    print(f"cold: whole dev.yml / raw compose up --wait wall: {walls['cold'] / walls['raw']:.2f}")
    unrecorded = healthy["cold_unrecorded"] / healthy["raw"]
    print(f"cold, no record of a converge: dev.yml healthy at / raw compose healthy at: {unrecorded:.2f}")
    print(f"restart: dev.yml healthy at / raw compose healthy at: {healthy['re'] / healthy['raw_re']:.2f}")
    print(f"restart: whole dev.yml / raw compose up --wait wall: {walls['re'] / walls['raw_re']:.2f}")
    plain_noop = f", bin/cmx up {med(cmx_noop):.2f} s" if cmx_noop else ""
    print(f"no-op re-run: dev.yml {med(noop):.2f} s{plain_noop}  (target <= 1.20 s)")


if __name__ == "__main__":
    main()
