#!/usr/bin/env python3
"""Benchmark: playbooks/backup.yml + restore.yml against raw pg_dump -Fc / pg_restore of the same data.

Generates a ~1 GB database in the stack's application database (pgbench -i -s 70 inside
<project>-postgres, or with --data random 5M rows of random text and numbers from generate_series, which
compress like real data), then times, on the same machine and the same data:

  raw   docker exec <project>-postgres pg_dump -Fc > file     (stdout straight into a host file)
        CREATE DATABASE; docker exec -i <project>-postgres pg_restore --single-transaction --exit-on-error
        < file
  ours  ansible-playbook playbooks/backup.yml                  (dump + globals + Redis + bucket + manifest)
        ansible-playbook playbooks/restore.yml                 (checksums; a backup of the current data
                                                                beside pg_restore into a side database;
                                                                row counts, swap, init SQL, Redis,
                                                                objects, report)

and prints ours / raw (issue 15's aim: no slower than the raw pair, ratio <= 1.00; docs/benchmarks.md).
Wall-clock times include ansible-playbook's own start-up. The generated tables are dropped at the end
(--keep-data keeps them), and the backups and dump files it wrote are deleted.

Usage: CMX_PROJECT_DIR=... .venv/bin/python bench/backup_restore.py [--inventory inventories/ci]
       [--data pgbench|random] [--scale 70] [--rows 5000000] [--rounds 1] [-e @/tmp/mine.yml]
It drives the stack of the given inventory: run it where that database may be restored over. ``-e`` (an
extra-vars file, ``@path``, or ``key=value``) is passed to both playbooks and read here too: a private stack
(cmx_project_name, cmx_backup_dir ...) is benchmarked through its own container, <cmx_project_name>-postgres.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
TARGET = 1.00  # backup + restore no slower than the raw single-job pg_dump + pg_restore (issue 15)
DEFAULT_PROJECT = "cmx"  # the stack role's default cmx_project_name
PGBENCH_TABLES = "pgbench_accounts, pgbench_branches, pgbench_history, pgbench_tellers"
RANDOM_TABLE = "bench_random"
# --data random: about 1 GB of rows that compress like real data (random hex text, numbers, timestamps),
# unlike pgbench's blank-padded rows (1 GB of pgbench_accounts dumps to about 20 MB).
RANDOM_SQL = f"""
DROP TABLE IF EXISTS {RANDOM_TABLE};
CREATE TABLE {RANDOM_TABLE} (
  id bigint PRIMARY KEY, ref text NOT NULL, amount numeric(12, 2), note text, created_at timestamptz
);
INSERT INTO {RANDOM_TABLE}
SELECT g, md5(g::text), (random() * 10000)::numeric(12, 2),
       md5(random()::text) || md5(random()::text) || md5(random()::text),
       now() - random() * interval '1000 days'
FROM generate_series(1, %(rows)d) g;
VACUUM ANALYZE {RANDOM_TABLE};
"""


class _Loader(yaml.SafeLoader):
    """Inventory YAML; vaulted values are not needed here."""


_Loader.add_constructor("!vault", lambda loader, node: None)


def inventory_vars(inventory: Path) -> dict:
    values: dict = {}
    for path in sorted((inventory / "group_vars" / "all").glob("*.yml")):
        text = path.read_text()
        if text.startswith("$ANSIBLE_VAULT"):
            continue
        for key, value in (yaml.load(text, Loader=_Loader) or {}).items():
            if not (isinstance(value, str) and "{{" in value):
                values[key] = value
    return values


def extra_vars(values: list[str]) -> dict:
    """What ``-e`` gives the playbooks: ``@file`` (YAML) or ``key=value``, later ones win."""
    found: dict = {}
    for value in values:
        if value.startswith("@"):
            found.update(yaml.load(Path(value[1:]).read_text(), Loader=_Loader) or {})
        elif "=" in value:
            key, _, item = value.partition("=")
            found[key.strip()] = item
        else:
            sys.exit(f"bench: -e takes @file or key=value, not {value!r}")
    return found


def environment() -> dict[str, str]:
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", "ANSIBLE_NOCOLOR": "1"}
    return env


def run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    kw.setdefault("stdout", subprocess.PIPE)
    done = subprocess.run(cmd, cwd=ROOT, env=environment(), stderr=subprocess.PIPE, **kw)
    if done.returncode != 0:
        out = done.stdout if isinstance(done.stdout, str) else (done.stdout or b"").decode(errors="replace")
        err = done.stderr if isinstance(done.stderr, str) else (done.stderr or b"").decode(errors="replace")
        sys.exit(f"bench: {' '.join(cmd)} failed:\n{out[-3000:]}\n{err[-3000:]}")
    return done


def timed(cmd: list[str], **kw) -> float:
    start = time.perf_counter()
    run(cmd, **kw)
    return time.perf_counter() - start


class Postgres:
    def __init__(self, inv: dict):
        self.user, self.db = inv["cmx_postgres_user"], inv["cmx_postgres_db"]
        os.environ["PGPASSWORD"] = str(inv["cmx_postgres_password"])  # for `docker exec -e PGPASSWORD`
        # The stack's compose file names its containers <project>-<service>.
        self.container = f"{inv.get('cmx_project_name') or DEFAULT_PROJECT}-postgres"

    def exec(self, *argv: str, interactive: bool = False) -> list[str]:
        return ["docker", "exec", *(["-i"] if interactive else []), "-e", "PGPASSWORD", self.container, *argv]

    def sql(self, statement: str, db: str = "postgres") -> str:
        cmd = self.exec(
            "psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-U", self.user, "-d", db, "-c", statement
        )
        return run(cmd, text=True).stdout.strip()


def raw_round(pg: Postgres, workdir: Path) -> tuple[float, float]:
    dump = workdir / "raw.dump"
    start = time.perf_counter()
    with open(dump, "wb") as target:
        run(pg.exec("pg_dump", "-Fc", "-U", pg.user, "-d", pg.db), stdout=target)
    dumped = time.perf_counter() - start

    scratch = "cmx_bench_raw_restore"
    pg.sql(f"DROP DATABASE IF EXISTS {scratch}")
    start = time.perf_counter()
    pg.sql(f"CREATE DATABASE {scratch} TEMPLATE template0")
    with open(dump, "rb") as source:
        argv = pg.exec(
            "pg_restore",
            "--single-transaction",
            "--exit-on-error",
            "-U",
            pg.user,
            "-d",
            scratch,
            interactive=True,
        )
        run(argv, stdin=source)
    restored = time.perf_counter() - start
    pg.sql(f"DROP DATABASE {scratch}")
    dump.unlink()
    return dumped, restored


def ours_round(inventory: str, backup_dir: Path, extra: list[str]) -> tuple[float, float]:
    play = [str(BIN / "ansible-playbook"), "-i", inventory]
    play += [item for value in extra for item in ("-e", value)] + ["-e", f"cmx_backup_dir={backup_dir}"]
    dumped = timed([*play, "playbooks/backup.yml"])
    restored = timed([*play, "playbooks/restore.yml"])
    return dumped, restored


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inventory", default="inventories/ci")
    parser.add_argument("--data", choices=["pgbench", "random"], default="pgbench", help="what to generate")
    parser.add_argument("--scale", type=int, default=70, help="pgbench scale (70 = about 1 GB)")
    parser.add_argument("--rows", type=int, default=5_000_000, help="--data random: rows (5M = about 1 GB)")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--keep-data", action="store_true", help="leave the pgbench tables in place")
    parser.add_argument(
        "-e",
        "--extra-vars",
        action="append",
        default=[],
        metavar="@FILE|KEY=VALUE",
        help="passed to the playbooks (a private stack's project name, ports, folders) and read here",
    )
    args = parser.parse_args()
    extras = extra_vars(args.extra_vars)
    if "CMX_PROJECT_DIR" not in os.environ and "cmx_project_dir" not in extras:
        sys.exit(
            "bench: set CMX_PROJECT_DIR to the stack's project folder (as the ci inventory reads it), "
            "or give cmx_project_dir with -e"
        )

    inventory = Path(args.inventory)
    inventory = inventory if inventory.is_absolute() else ROOT / inventory
    vault_pass = inventory / ".vault-pass-ci"
    if vault_pass.is_file():
        os.environ.setdefault("ANSIBLE_VAULT_PASSWORD_FILE", str(vault_pass))
    pg = Postgres({**inventory_vars(inventory), **extras})
    print(f"stack: container {pg.container}, database {pg.db}", flush=True)

    if args.data == "pgbench":
        print(f"generating: pgbench -i -s {args.scale} in {pg.db} ...", flush=True)
        generated = timed(pg.exec("pgbench", "-i", "-q", "-s", str(args.scale), "-U", pg.user, pg.db))
        table, drop = "pgbench_accounts", PGBENCH_TABLES
    else:
        print(f"generating: {args.rows} random rows in {pg.db}.{RANDOM_TABLE} ...", flush=True)
        script = RANDOM_SQL % {"rows": args.rows}
        generated = timed(
            pg.exec(
                "psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-U", pg.user, "-d", pg.db, interactive=True
            ),
            input=script.encode(),
        )
        table, drop = RANDOM_TABLE, RANDOM_TABLE
    size = pg.sql(f"SELECT pg_size_pretty(pg_database_size('{pg.db}'))", pg.db)
    rows = pg.sql(f"SELECT count(*) FROM {table}", pg.db)
    print(f"generated in {generated:.1f} s: database {size}, {table} {rows} rows", flush=True)

    workdir = Path(tempfile.mkdtemp(prefix="cmx-bench-"))
    raw, ours = [], []
    try:
        for n in range(args.rounds):
            raw.append(raw_round(pg, workdir))
            print(f"round {n + 1} raw : dump {raw[-1][0]:6.1f} s  restore {raw[-1][1]:6.1f} s", flush=True)
            ours.append(ours_round(str(inventory), workdir / "backups", args.extra_vars))
            print(f"round {n + 1} ours: dump {ours[-1][0]:6.1f} s  restore {ours[-1][1]:6.1f} s", flush=True)
        dumps = sorted((workdir / "backups").glob("*/postgres/*.dump"))
        dump_size = dumps[-1].stat().st_size if dumps else 0
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        if not args.keep_data:
            pg.sql(f"DROP TABLE IF EXISTS {drop}", pg.db)
            print(f"dropped the generated tables ({drop})")

    med = statistics.median
    raw_dump, raw_restore = med(r[0] for r in raw), med(r[1] for r in raw)
    our_dump, our_restore = med(o[0] for o in ours), med(o[1] for o in ours)
    print()
    print(
        f"{args.data} data: database {size}, custom-format dump {dump_size / 1e6:.0f} MB, "
        f"median of {args.rounds} round(s)"
    )
    print(f"{'':18}{'raw':>10}{'ours':>10}{'ratio':>8}")
    print(f"{'backup (dump)':18}{raw_dump:9.1f}s{our_dump:9.1f}s{our_dump / raw_dump:8.2f}")
    print(f"{'restore':18}{raw_restore:9.1f}s{our_restore:9.1f}s{our_restore / raw_restore:8.2f}")
    total_raw, total_ours = raw_dump + raw_restore, our_dump + our_restore
    ratio = total_ours / total_raw
    print(f"{'backup + restore':18}{total_raw:9.1f}s{total_ours:9.1f}s{ratio:8.2f}")
    print(f"target ratio <= {TARGET:.2f}: {'met' if ratio <= TARGET else 'NOT met'}")


if __name__ == "__main__":
    main()
