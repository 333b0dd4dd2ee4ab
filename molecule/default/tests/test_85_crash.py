"""Crashes lose nothing that was acknowledged: PostgreSQL and Redis are killed (SIGKILL, no shutdown) during a
stream of writes, started again, and every write the client saw acknowledged is there. A clean stop, by
contrast, needs no crash recovery at the next start."""

from __future__ import annotations

import threading
import time
import uuid

from conftest import all_healthy, container, docker, pg_connect, redis_client, wait_until

ACKNOWLEDGED_BEFORE_THE_KILL = 200


def crash_during_writes(service: str, write) -> tuple[list[int], float]:
    """Run `write(i)` for i = 0, 1, ... in a thread; SIGKILL the service once enough writes were acknowledged;
    start it again and wait until the stack is healthy. Returns the acknowledged i and when it was killed."""
    acknowledged: list[int] = []
    killed = threading.Event()

    def stream():
        i = 0
        while not killed.is_set():
            try:
                write(i)
            except Exception:  # the server went away: every write before this one was acknowledged
                return
            acknowledged.append(i)
            i += 1

    writer = threading.Thread(target=stream, daemon=True)
    writer.start()
    wait_until(lambda: len(acknowledged) >= ACKNOWLEDGED_BEFORE_THE_KILL, 60, f"writes to {service}")
    kill_time = time.time()
    docker("kill", "--signal", "KILL", container(service))
    killed.set()  # a client that retries may reach a restarted server: its writes count as acknowledged too
    writer.join(timeout=60)
    assert not writer.is_alive(), f"the writer to {service} is stuck"
    docker("start", container(service))
    wait_until(all_healthy, 180, f"every service healthy after the {service} crash")
    return list(acknowledged), kill_time


def test_postgres_killed_during_writes_keeps_every_acknowledged_commit(inv):
    table = f"crash_{uuid.uuid4().hex[:8]}"
    with pg_connect(inv) as setup, setup.cursor() as cur:
        cur.execute(f"CREATE TABLE {table} (id int PRIMARY KEY)")
    writer = pg_connect(inv)  # autocommit: each INSERT is acknowledged once committed
    cursor = writer.cursor()
    acknowledged, kill_time = crash_during_writes(
        "postgres", lambda i: cursor.execute(f"INSERT INTO {table} VALUES (%s)", (i,))
    )
    logs = docker("logs", "--since", f"{kill_time:.3f}", container("postgres"))
    assert "automatic recovery in progress" in logs.stdout + logs.stderr, "the kill was not a crash"
    conn = wait_until(lambda: pg_connect(inv), 60, "PostgreSQL accepting connections")
    try:
        with conn.cursor() as cur:
            cur.execute(f"SELECT id FROM {table}")
            stored = {row[0] for row in cur.fetchall()}
            cur.execute(f"DROP TABLE {table}")
    finally:
        conn.close()
    assert len(acknowledged) >= ACKNOWLEDGED_BEFORE_THE_KILL
    assert set(acknowledged) <= stored, f"{len(set(acknowledged) - stored)} acknowledged rows lost"


def test_redis_killed_during_writes_keeps_every_acknowledged_write(inv):
    prefix = f"crash:{uuid.uuid4().hex[:8]}"
    client = redis_client(inv)
    acknowledged, _ = crash_during_writes("redis", lambda i: client.rpush(prefix, i))
    after = wait_until(lambda: redis_client(inv).lrange(prefix, 0, -1), 60, "Redis answering with the list")
    stored = [int(value) for value in after]
    redis_client(inv).delete(prefix)
    assert len(acknowledged) >= ACKNOWLEDGED_BEFORE_THE_KILL
    assert stored[: len(acknowledged)] == acknowledged, "acknowledged pushes lost or reordered"


def test_a_clean_stop_needs_no_crash_recovery(inv):
    docker("stop", container("postgres"), timeout=180)
    started = time.time()
    docker("start", container("postgres"))
    wait_until(all_healthy, 180, "every service healthy after a clean PostgreSQL restart")
    logs = docker("logs", "--since", f"{started:.3f}", container("postgres"))
    text = logs.stdout + logs.stderr
    assert "database system is ready to accept connections" in text
    assert "not properly shut down" not in text and "automatic recovery" not in text, text[-2000:]
