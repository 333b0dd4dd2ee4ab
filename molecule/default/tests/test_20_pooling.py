"""PgBouncer under load: more clients than PostgreSQL allows, and prepared statements in transaction mode."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor

import psycopg
import testinfra
from conftest import container, pg_connect

BENCH_DB = "cmx_bench"


def _admin_sql(inv, sql: str) -> None:
    conn = pg_connect(inv)  # autocommit: CREATE/DROP DATABASE cannot run in a transaction
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
    finally:
        conn.close()


def test_pgbench_through_pgbouncer_with_more_clients_than_max_connections(inv):
    clients = inv["cmx_postgres_max_connections"] + 20
    assert clients <= inv["cmx_pgbouncer_max_client_conn"]
    _admin_sql(inv, f"DROP DATABASE IF EXISTS {BENCH_DB}")
    _admin_sql(inv, f"CREATE DATABASE {BENCH_DB}")
    # pgbench runs inside the postgres container and reaches PgBouncer over the project network.
    host = testinfra.get_host(f"docker://{container('postgres')}")
    env = f"PGPASSWORD='{inv['cmx_postgres_password']}'"
    user = inv["cmx_postgres_user"]
    init = host.run(f"{env} pgbench -i -q -s 1 -h postgres -p 5432 -U {user} {BENCH_DB}")
    assert init.rc == 0, init.stderr
    run = host.run(f"{env} pgbench -n -c {clients} -j 4 -t 20 -h pgbouncer -p 6432 -U {user} {BENCH_DB}")
    try:
        assert run.rc == 0, run.stderr[-2000:]
        processed = re.search(r"number of transactions actually processed: (\d+)/(\d+)", run.stdout)
        assert processed and processed.group(1) == processed.group(2) == str(clients * 20), run.stdout
        failed = re.search(r"number of failed transactions: (\d+)", run.stdout)
        assert failed is None or failed.group(1) == "0", run.stdout
    finally:
        _admin_sql(inv, f"DROP DATABASE IF EXISTS {BENCH_DB} WITH (FORCE)")


def test_prepared_statements_through_pgbouncer_transaction_mode(inv):
    clients = 4 * inv["cmx_pgbouncer_default_pool_size"]
    dsn = (
        f"host=127.0.0.1 port={inv['cmx_pgbouncer_port']} user={inv['cmx_postgres_user']} "
        f"password={inv['cmx_postgres_password']} dbname={inv['cmx_postgres_db']} sslmode=disable"
    )

    def worker(n: int) -> int:
        total = 0
        with psycopg.connect(dsn, prepare_threshold=0, autocommit=True) as conn:
            for i in range(10):
                # prepare=True sends Parse/Bind/Execute with a named statement that PgBouncer must track.
                row = conn.execute("SELECT %s::int + %s::int", (n, i), prepare=True).fetchone()
                total += row[0]
        return total

    with ThreadPoolExecutor(max_workers=clients) as pool:
        results = list(pool.map(worker, range(clients)))
    assert results == [10 * n + 45 for n in range(clients)]
