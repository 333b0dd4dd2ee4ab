"""Redis with the stack's redis.conf (rendered from roles/stack/templates/redis.conf.j2): a truncated AOF tail
and a full data volume."""

from __future__ import annotations

import re
import subprocess
import time
import uuid

import pytest
import redis
from conftest import docker, host_port, logs, project_image, render_redis_conf, running, wait_until

CONF = "/usr/local/etc/redis/redis.conf"


@pytest.fixture
def redis_image():
    return project_image("cmx/redis")


def start_redis(lab, image: str, volume: str) -> tuple[str, str]:
    """The stack's Redis (its config, user, hardening) on `volume`; returns (container, password)."""
    password = uuid.uuid4().hex
    conf = lab.tmp / "redis.conf"
    conf.write_text(render_redis_conf(password))
    conf.chmod(0o644)
    name = lab.run(
        "redis", image, "redis-server", CONF, user="redis", service="redis",
        mounts=(f"{volume}:/data", f"{conf}:{CONF}:ro"), ports=(6379,),
    )  # fmt: skip
    return name, password


def client(container: str, password: str) -> redis.Redis:
    return redis.Redis(host="127.0.0.1", port=host_port(container, 6379), password=password, socket_timeout=5)


def answering(container: str, password: str) -> redis.Redis:
    """A client once Redis has loaded its data and answers PING."""
    return wait_until(lambda: client(container, password).ping() and client(container, password), 30, "Redis")


def test_the_stack_config_keeps_the_aof_and_loads_a_truncated_tail():
    conf = render_redis_conf("x")
    assert re.search(r"^appendonly yes$", conf, re.M)
    assert re.search(r"^appendfsync everysec$", conf, re.M)
    # Redis's default is yes; a `no` here would make Redis refuse to start after a torn last write.
    assert not re.search(r"^aof-load-truncated\s+no", conf, re.M)


def test_a_truncated_aof_tail_loads_without_the_torn_record(lab, redis_image):
    volume = lab.volume("redis-data")
    holder = lab.holder(redis_image, volume, service="redis", user="redis")
    name, password = start_redis(lab, redis_image, volume)
    db = answering(name, password)
    kept = {f"aof:{i}": f"value-{i}" for i in range(500)}
    for key, value in kept.items():
        assert db.set(key, value)
    torn_key, torn_value = "aof:torn", "x" * 1000
    assert db.set(torn_key, torn_value)
    docker("stop", name)  # a clean stop: everything acknowledged is in the AOF

    incr = docker("exec", holder, "sh", "-c", "ls /v/appendonlydir/*.incr.aof").stdout.split()
    assert len(incr) == 1, incr
    size = int(docker("exec", holder, "stat", "-c", "%s", incr[0]).stdout)
    # The last record of the AOF is the SET of the torn key, as RESP: cut it in the middle of its value.
    record = f"*3\r\n$3\r\nSET\r\n${len(torn_key)}\r\n{torn_key}\r\n${len(torn_value)}\r\n{torn_value}\r\n"
    tail = subprocess.run(
        ["docker", "exec", holder, "tail", "-c", str(len(record)), incr[0]], capture_output=True
    )
    assert tail.stdout == record.encode(), tail
    docker("exec", holder, "truncate", "-s", str(size - 500), incr[0])

    started = time.time()
    docker("start", name)
    db = answering(name, password)
    text = logs(name, since=started)
    file = incr[0].rsplit("/", 1)[1]
    record_start = size - len(record)
    # Redis says what it dropped: the torn record, from its first byte.
    assert f"!!! Warning: short read while loading the AOF file {file}!!!" in text, text
    assert f"!!! Truncating the AOF {file} at offset {record_start} !!!" in text, text
    assert f"AOF {file} loaded anyway because aof-load-truncated is enabled" in text, text
    print(*[line for line in text.splitlines() if "AOF" in line], sep="\n")
    assert db.get(torn_key) is None
    assert {key: db.get(key).decode() for key in kept} == kept
    # The file was cut at the record boundary: new writes land after it and the next start is clean.
    assert int(docker("exec", holder, "stat", "-c", "%s", incr[0]).stdout) >= record_start
    assert db.set("aof:after", "1")
    docker("stop", name)
    started = time.time()
    docker("start", name)
    db = answering(name, password)
    assert "Truncating" not in logs(name, since=started)
    assert db.get("aof:after") == b"1" and db.dbsize() == len(kept) + 1


def test_a_full_volume_refuses_writes_keeps_reads_and_recovers(lab, redis_image):
    volume = lab.volume("redis-data", size="16m")
    holder = lab.holder(redis_image, volume, service="redis", user="redis")
    name, password = start_redis(lab, redis_image, volume)
    db = answering(name, password)
    before = {f"full:before:{i}": f"value-{i}" for i in range(200)}
    for key, value in before.items():
        assert db.set(key, value)
    # Leave 2 MiB free; the ballast file is what frees the space later.
    free = int(docker("exec", holder, "df", "-B1", "--output=avail", "/v").stdout.split()[-1])
    docker("exec", holder, "fallocate", "-l", str(free - 2 * 1024 * 1024), "/v/ballast")

    acknowledged: dict[str, bytes] = {}
    refusal = None
    block = b"y" * 16384
    for i in range(2000):  # 32 MiB at most: far more than the 2 MiB left
        key = f"full:during:{i}"
        try:
            db.set(key, block)
        except redis.exceptions.ResponseError as error:
            refusal = str(error)
            break
        acknowledged[key] = block
    assert refusal is not None, "Redis accepted 32 MiB on a volume with 2 MiB free"
    assert refusal.startswith("MISCONF Errors writing to the AOF file: No space left on device"), refusal
    # Reads keep working.
    assert {key: db.get(key).decode() for key in before} == before
    assert db.get(next(iter(acknowledged))) == block
    # A write that fit partly ("Short write ... (nwritten=<n>, expected=<m>)", the partial bytes are cut off
    # again) or not at all ("Error writing to the AOF file: No space left on device").
    assert re.search(
        r"Short write while writing to the AOF file|Error writing to the AOF file: No space", logs(name)
    )
    print(refusal)

    docker("exec", holder, "rm", "/v/ballast")
    wait_until(lambda: db.set("full:after", "1"), 30, "Redis accepting writes after space was freed")
    assert "AOF write error looks solved, Redis can write again." in logs(name)
    # Nothing acknowledged was lost, in memory and on disk (a restart loads the AOF).
    docker("stop", name)
    started = time.time()
    docker("start", name)
    db = answering(name, password)
    text = logs(name, since=started)
    assert "Truncating" not in text and "Bad file format" not in text, text
    assert {key: db.get(key).decode() for key in before} == before
    assert all(db.get(key) == value for key, value in acknowledged.items())
    assert db.get("full:after") == b"1"


def test_a_damaged_aof_stops_redis_until_redis_check_aof_fixes_it(lab, redis_image):
    """The repair step of docs/troubleshooting.md, for damage that is not at the tail of the AOF."""
    volume = lab.volume("redis-data")
    holder = lab.holder(redis_image, volume, service="redis", user="redis")
    name, password = start_redis(lab, redis_image, volume)
    db = answering(name, password)
    first = {f"aof:{i}": f"value-{i}" for i in range(100)}
    for key, value in first.items():
        assert db.set(key, value)
    incr = docker("exec", holder, "sh", "-c", "ls /v/appendonlydir/*.incr.aof").stdout.strip()
    damage_at = int(docker("exec", holder, "stat", "-c", "%s", incr).stdout)
    for i in range(100, 200):
        assert db.set(f"aof:{i}", f"value-{i}")
    docker("stop", name)
    # Four bytes of garbage where the 101st SET begins: the file goes on after them.
    docker("exec", holder, "sh", "-c", f"printf XXXX | dd of={incr} bs=1 seek={damage_at} conv=notrunc")
    started = time.time()
    docker("start", name)
    wait_until(lambda: not running(name), 30, "Redis refusing the damaged AOF")
    file = incr.rsplit("/", 1)[1]
    assert (
        f"Bad file format reading the append only file {file}: make a backup of your AOF file, "
        "then use ./redis-check-aof --fix <filename.manifest>"
    ) in logs(name, since=started)

    fixed = subprocess.run(
        ["docker", "run", "--rm", "-i", "--user", "redis", "--cap-drop", "ALL",
         "--security-opt", "no-new-privileges:true", "--read-only", "--network", "none",
         "-v", f"{volume}:/data", redis_image,
         "redis-check-aof", "--fix", "/data/appendonlydir/appendonly.aof.manifest"],
        input="y\n", capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    assert f"ok_up_to={damage_at}," in fixed.stdout, fixed.stdout
    assert f"Successfully truncated AOF {file}" in fixed.stdout, fixed.stdout
    print(*[line for line in fixed.stdout.splitlines() if file in line or "shrink" in line], sep="\n")
    docker("start", name)
    db = answering(name, password)
    # Everything before the damage is back; everything from it on is gone (restore a backup for that).
    assert {key: db.get(key).decode() for key in first} == first
    assert db.dbsize() == len(first)
