"""The /health report: JSON contract, parallel probes under a budget, env configuration, the HTTP server.

Real dependencies: PostgreSQL 15 and redis-server started on 127.0.0.1, an S3
endpoint served in-process (GET /healthz + SigV4 HEAD verified by botocore).
"""

from __future__ import annotations

import datetime
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import pytest
from ansible_collections.cleanmatex.infra.plugins.module_utils import health_report as hr
from ansible_collections.cleanmatex.infra.plugins.module_utils.probes import ProbeResult
from test_probes_support import (
    HttpServer,
    RedisServer,
    SilentServer,
    free_port,
    make_s3_handler,
    port_open,
    wait_for,
)

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), os.pardir, os.pardir))
CMX_HEALTH = os.path.join(REPO, "bin", "cmx-health")
TS_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
S3_ACCESS, S3_SECRET, S3_BUCKET = "cmx-access", "cmx-s3-secret-789", "cleanmatex-dev"

_NO_PROXY_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def get(url: str, method: str = "GET", timeout: float = 10.0):
    req = urllib.request.Request(url, method=method)
    try:
        with _NO_PROXY_OPENER.open(req, timeout=timeout) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, dict(exc.headers), exc.read()


def assert_contract(report: dict, extra: tuple = ()):
    assert set(report) == {"status", "timestamp", "services", "version"}
    assert report["status"] in ("healthy", "unhealthy")
    assert TS_RE.match(report["timestamp"]), report["timestamp"]
    datetime.datetime.fromisoformat(report["timestamp"].replace("Z", "+00:00"))
    assert isinstance(report["version"], str)
    assert list(report["services"])[:3] == ["database", "redis", "storage"]
    assert set(report["services"]) == {"database", "redis", "storage", *extra}
    for svc in report["services"].values():
        assert set(svc) == {"status", "latency"}
        assert svc["status"] in ("up", "down")
        assert isinstance(svc["latency"], float) and svc["latency"] >= 0
    healthy = all(s["status"] == "up" for s in report["services"].values())
    assert report["status"] == ("healthy" if healthy else "unhealthy")


# --------------------------------------------------------------------------- contract (pure)


def test_build_report_contract_healthy():
    results = {n: ProbeResult(n, "up", 1.234, None) for n in ("database", "redis", "storage")}
    report = hr.build_report(results, "1.2.3")
    assert_contract(report)
    assert report["status"] == "healthy" and report["version"] == "1.2.3"
    assert report["services"]["database"] == {"status": "up", "latency": 1.2}
    assert hr.http_status(report) == 200


def test_build_report_keeps_required_services_and_adds_extras():
    results = {"redis": ProbeResult("redis", "up", 0.5), "pgbouncer": ProbeResult("pgbouncer", "up", 2.0)}
    report = hr.build_report(results, "v")
    assert_contract(report, extra=("pgbouncer",))
    assert report["services"]["database"]["status"] == "down"
    assert report["status"] == "unhealthy" and hr.http_status(report) == 503


def test_build_report_is_json_and_has_no_errors():
    results = {"database": ProbeResult("database", "down", 3.0, "FATAL: secret detail")}
    text = json.dumps(hr.build_report(results, "v"))
    assert "FATAL" not in text and "error" not in text


def test_timestamp_is_utc_iso8601():
    ts = hr.utc_timestamp(datetime.datetime(2025, 10, 9, 12, 0, 0, 123456, tzinfo=datetime.UTC))
    assert ts == "2025-10-09T12:00:00.123Z"


# --------------------------------------------------------------------------- parallel + budget


def test_run_parallel_budget_bounds_a_probe_that_ignores_its_timeout():
    release = threading.Event()

    def hung(timeout):
        release.wait(30)  # a dependency that ignores the probe timeout
        return ProbeResult("x", "up", 0.0)

    def quick(timeout):
        return ProbeResult("quick", "up", 0.1)

    try:
        start = time.monotonic()
        out = hr.run_parallel({"redis": hung, "database": quick}, timeout=0.2, budget=0.4)
        took = time.monotonic() - start
    finally:
        release.set()
    assert 0.35 <= took < 1.0
    assert out["database"].up
    assert out["redis"].status == "down"
    assert out["redis"].error == "timed out after 400 ms"
    assert list(out) == ["redis", "database"]


def test_run_parallel_runs_probes_concurrently():
    from ansible_collections.cleanmatex.infra.plugins.module_utils import probes

    servers = [SilentServer() for _ in range(4)]
    try:
        fns = {
            f"s{i}": (lambda t, p=s.port: probes.probe_redis(host="127.0.0.1", port=p, timeout=t))
            for i, s in enumerate(servers)
        }
        start = time.monotonic()
        out = hr.run_parallel(fns, timeout=0.3)
        took = time.monotonic() - start
    finally:
        for s in servers:
            s.close()
    assert all(r.error == "timed out after 300 ms" for r in out.values()), out
    assert took < 0.9  # sequential would be >= 1.2 s


def test_run_parallel_probe_exception_is_down():
    def boom(timeout):
        raise RuntimeError("kaput")

    out = hr.run_parallel({"storage": boom}, timeout=0.5)
    assert out["storage"].status == "down" and "kaput" in out["storage"].error


# --------------------------------------------------------------------------- configuration


def test_config_unset_services_are_down_not_configured():
    cfg = hr.config_from_env({})
    assert list(cfg.specs) == ["database", "redis", "storage"]
    assert all(s["type"] == "down" for s in cfg.specs.values())
    assert cfg.port == 8080 and cfg.probe_timeout == 2.0 and cfg.budget == 2.5 and cfg.cache_ttl == 1.0
    assert cfg.version == "unknown"


def test_config_file_variants_win_and_unreadable_file_is_down(tmp_path):
    (tmp_path / "redis_pw").write_text("from-file-pw\n")
    (tmp_path / "s3_secret").write_text("s3-from-file\n")
    env = {
        "HEALTH_DATABASE_URL_FILE": str(tmp_path / "missing"),
        "HEALTH_REDIS_URL": "redis://127.0.0.1:6379/0",
        "HEALTH_REDIS_PASSWORD": "from-env",
        "HEALTH_REDIS_PASSWORD_FILE": str(tmp_path / "redis_pw"),
        "HEALTH_S3_ENDPOINT": "http://127.0.0.1:9000",
        "HEALTH_S3_BUCKET": "b",
        "HEALTH_S3_ACCESS_KEY": "ak",
        "HEALTH_S3_SECRET_KEY_FILE": str(tmp_path / "s3_secret"),
        "HEALTH_PGBOUNCER_URL": "postgresql://u@127.0.0.1:6432/db",
        "HEALTH_DATABASE_PASSWORD": "db-pw",
        "HEALTH_PROBE_TIMEOUT_MS": "750",
        "HEALTH_CACHE_MS": "5000",
        "HEALTH_PORT": "18080",
        "HEALTH_VERSION": "2.0.1",
    }
    cfg = hr.config_from_env(env)
    assert cfg.specs["database"]["type"] == "down"
    assert "HEALTH_DATABASE_URL_FILE" in cfg.specs["database"]["error"]
    assert cfg.specs["redis"]["password"] == "from-file-pw"
    assert cfg.specs["storage"]["secret_key"] == "s3-from-file"
    assert cfg.specs["pgbouncer"]["password"] == "db-pw"
    assert cfg.probe_timeout == 0.75 and cfg.budget == 1.25
    assert cfg.cache_ttl == 1.0  # capped at 1 s
    assert (cfg.port, cfg.version) == (18080, "2.0.1")


def test_config_bad_numbers_warn_and_bad_port_raises():
    cfg = hr.config_from_env({"HEALTH_PROBE_TIMEOUT_MS": "abc"})
    assert cfg.probe_timeout == 2.0 and cfg.warnings
    with pytest.raises(hr.ConfigError):
        hr.config_from_env({"HEALTH_PORT": "http"})


def test_config_supabase_expected_statuses():
    cfg = hr.config_from_env({"HEALTH_SUPABASE_URL": "http://127.0.0.1:54321/rest/v1/"})
    assert cfg.specs["supabase"]["expected_status"] == [200, 401]
    cfg = hr.config_from_env({"HEALTH_SUPABASE_URL": "http://x/", "HEALTH_SUPABASE_ANON_KEY": "k"})
    assert cfg.specs["supabase"]["expected_status"] == [200]
    assert cfg.specs["supabase"]["headers"]["apikey"] == "k"


# --------------------------------------------------------------------------- the stack for server tests


@pytest.fixture(scope="module")
def s3():
    pytest.importorskip("botocore")
    with HttpServer(make_s3_handler(S3_ACCESS, S3_SECRET, buckets=(S3_BUCKET,))) as srv:
        yield srv


@pytest.fixture
def redis():
    srv = RedisServer(password="cmx-health-redis-pw")
    srv.start()
    yield srv
    srv.close()


def stack_env(pg, redis, s3, **extra) -> dict:
    env = {
        "HEALTH_DATABASE_URL": f"postgresql://{pg['user']}@{pg['host']}:{pg['port']}/{pg['dbname']}",
        "HEALTH_DATABASE_PASSWORD": pg["password"],
        "HEALTH_REDIS_URL": f"redis://127.0.0.1:{redis.port}/0",
        "HEALTH_REDIS_PASSWORD": redis.password,
        "HEALTH_S3_ENDPOINT": s3.url,
        "HEALTH_S3_BUCKET": S3_BUCKET,
        "HEALTH_S3_ACCESS_KEY": S3_ACCESS,
        "HEALTH_S3_SECRET_KEY": S3_SECRET,
        "HEALTH_VERSION": "test-1",
        "HEALTH_BIND": "127.0.0.1",
        "HEALTH_PORT": "0",
        "HEALTH_QUIET": "1",
        "HEALTH_PROBE_TIMEOUT_MS": "1000",
        "HEALTH_CACHE_MS": "0",
    }
    env.update({k: str(v) for k, v in extra.items()})
    return env


class RunningServer:
    def __init__(self, env: dict):
        self.config = hr.config_from_env(env)
        self.server = hr.make_server(self.config)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def test_server_healthy_200_contract_head_and_404(pg, redis, s3):
    with RunningServer(stack_env(pg, redis, s3)) as srv:
        status, headers, body = get(f"{srv.url}/health")
        assert status == 200, body
        assert headers["Content-Type"] == "application/json"
        report = json.loads(body)
        assert_contract(report)
        assert report["status"] == "healthy" and report["version"] == "test-1"
        assert redis.password.encode() not in body and pg["password"].encode() not in body

        status, headers, body = get(f"{srv.url}/health", method="HEAD")
        assert status == 200 and body == b"" and int(headers["Content-Length"]) > 0

        assert get(f"{srv.url}/health?verbose=1")[0] == 200
        assert get(f"{srv.url}/nope")[0] == 404
        assert get(f"{srv.url}/")[0] == 404
        assert get(f"{srv.url}/health", method="POST")[0] == 501


def test_server_redis_stopped_503_within_budget_then_recovers(pg, redis, s3):
    with RunningServer(stack_env(pg, redis, s3)) as srv:
        assert get(f"{srv.url}/health")[0] == 200
        redis.stop()
        start = time.monotonic()
        status, _, body = get(f"{srv.url}/health")
        took = time.monotonic() - start
        report = json.loads(body)
        assert status == 503
        assert_contract(report)
        assert report["services"]["redis"]["status"] == "down"
        assert report["services"]["database"]["status"] == "up"
        assert report["services"]["storage"]["status"] == "up"
        assert took < srv.config.budget + 0.5
        redis.start()  # same port: the server recovers by itself
        wait_for(lambda: get(f"{srv.url}/health")[0] == 200, 15, 0.05, "/health to answer 200 again")


def test_server_hung_dependency_answers_within_budget(pg, s3):
    with SilentServer() as hung:
        env = stack_env(
            pg,
            type("R", (), {"port": hung.port, "password": "x"})(),
            s3,
            HEALTH_PROBE_TIMEOUT_MS=300,
            HEALTH_BUDGET_MS=600,
        )
        with RunningServer(env) as srv:
            start = time.monotonic()
            status, _, body = get(f"{srv.url}/health")
            took = time.monotonic() - start
    report = json.loads(body)
    assert status == 503
    assert report["services"]["redis"]["status"] == "down"
    assert report["services"]["database"]["status"] == "up"
    assert took < 0.6 + 0.5


def test_server_concurrent_requests_share_a_round(pg, redis, s3):
    with RunningServer(stack_env(pg, redis, s3, HEALTH_CACHE_MS=1000)) as srv:
        results = []

        def hit():
            results.append(json.loads(get(f"{srv.url}/health")[2]))

        threads = [threading.Thread(target=hit) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(15)
    assert len(results) == 8
    assert len({r["timestamp"] for r in results}) == 1  # one probe round served everybody


# --------------------------------------------------------------------------- the CLI


def run_cli(args, env, cwd=None, script=CMX_HEALTH, timeout=30):
    base = {k: v for k, v in os.environ.items() if not k.startswith("HEALTH_") and k != "PYTHONPATH"}
    base.update(env)
    return subprocess.run(
        [sys.executable, script, *args], env=base, cwd=cwd, capture_output=True, text=True, timeout=timeout
    )


def test_cli_check_unhealthy_when_partly_configured():
    proc = run_cli(
        ["check", "-v"], {"HEALTH_PROBE_TIMEOUT_MS": "300", "HEALTH_S3_ENDPOINT": "http://127.0.0.1:1"}
    )
    assert proc.returncode == 2
    report = json.loads(proc.stdout)
    assert_contract(report)
    assert "database: down - not configured: set HEALTH_DATABASE_URL" in proc.stderr


def test_cli_check_without_variables_or_stack_says_what_to_do(tmp_path):
    proc = run_cli(["check"], {"CMX_PROJECT_DIR": str(tmp_path / "none")})
    assert proc.returncode == 2
    assert "no converged stack in" in proc.stderr and "bin/cmx up" in proc.stderr


def test_cli_check_reads_the_rendered_stack_and_names_what_is_down(tmp_path):
    """No HEALTH_* variables: settings from the stack folder; a service down = exit 2, naming it and why."""
    (tmp_path / "secrets").mkdir()
    for name in ("postgres_password", "redis_password", "s3_access_key", "s3_secret_key"):
        (tmp_path / "secrets" / name).write_text("x")
    dead = free_port()
    (tmp_path / ".env").write_text(
        f"CMX_BIND_ADDRESS=127.0.0.1\nPOSTGRES_USER=u\nPOSTGRES_DB=d\nPOSTGRES_PORT={dead}\n"
        f"PGBOUNCER_PORT={dead}\nREDIS_PORT={dead}\nS3_PORT={dead}\nS3_BUCKET=b\n"
    )
    proc = run_cli(["check"], {"CMX_PROJECT_DIR": str(tmp_path), "HEALTH_PROBE_TIMEOUT_MS": "500"})
    assert proc.returncode == 2, proc.stderr
    report = json.loads(proc.stdout)
    assert set(report["services"]) == {"database", "pgbouncer", "redis", "storage"}
    for service in ("database", "pgbouncer", "redis", "storage"):
        assert f"{service}: down - " in proc.stderr
    assert f"127.0.0.1:{dead}" in proc.stderr or "refused" in proc.stderr


def test_env_from_stack_maps_the_rendered_folder(tmp_path):
    (tmp_path / ".env").write_text(
        "CMX_BIND_ADDRESS=0.0.0.0\nPOSTGRES_USER=app user\nPOSTGRES_DB=db\nPOSTGRES_PORT=15432\n"
        "PGBOUNCER_PORT=16432\nREDIS_PORT=16379\nS3_PORT=19000\nS3_BUCKET=bkt\n"
    )
    env = hr.env_from_stack(str(tmp_path))
    assert env["HEALTH_DATABASE_URL"] == "postgresql://app%20user@127.0.0.1:15432/db?sslmode=disable"
    assert env["HEALTH_PGBOUNCER_URL"].startswith("postgresql://app%20user@127.0.0.1:16432/")
    assert env["HEALTH_REDIS_URL"] == "redis://127.0.0.1:16379/0"
    assert env["HEALTH_S3_ENDPOINT"] == "http://127.0.0.1:19000" and env["HEALTH_S3_BUCKET"] == "bkt"
    assert env["HEALTH_REDIS_PASSWORD_FILE"] == str(tmp_path / "secrets" / "redis_password")
    assert hr.env_from_stack(str(tmp_path / "missing")) is None


def test_env_from_stack_probes_external_services_at_their_endpoints(tmp_path):
    (tmp_path / ".env").write_text(
        "CMX_BIND_ADDRESS=10.0.0.10\nPOSTGRES_USER=master\nPOSTGRES_DB=db\nPOSTGRES_PORT=5432\n"
        "PGBOUNCER_PORT=6432\nREDIS_PORT=6380\nS3_PORT=9000\nS3_BUCKET=bkt\n"
        "CMX_EXTERNAL_POSTGRES=db.internal:5433\nCMX_EXTERNAL_POSTGRES_SSLMODE=verify-full\n"
        "CMX_EXTERNAL_REDIS=cache.internal:6380\nCMX_EXTERNAL_REDIS_TLS=1\n"
        "CMX_EXTERNAL_S3=https://s3.internal:8443\nCMX_EXTERNAL_S3_ADDRESSING=virtual\n"
    )
    (tmp_path / "secrets" / "ca").mkdir(parents=True)
    for name in ("postgres", "redis"):
        (tmp_path / "secrets" / "ca" / f"{name}.crt").write_text("PEM")
    env = hr.env_from_stack(str(tmp_path))
    ca = tmp_path / "secrets" / "ca"
    assert env["HEALTH_DATABASE_URL"] == (
        f"postgresql://master@db.internal:5433/db?sslmode=verify-full&sslrootcert={ca}/postgres.crt"
    )
    # PgBouncer stays the stack's, on the host's published port.
    assert env["HEALTH_PGBOUNCER_URL"].startswith("postgresql://master@10.0.0.10:6432/db")
    assert env["HEALTH_REDIS_URL"] == "rediss://cache.internal:6380/0"
    assert env["HEALTH_REDIS_CA_FILE"] == str(ca / "redis.crt")
    assert env["HEALTH_S3_ENDPOINT"] == "https://s3.internal:8443"
    assert (env["HEALTH_S3_HEALTH_PATH"], env["HEALTH_S3_ADDRESSING"]) == ("", "virtual")
    assert "HEALTH_S3_CA_FILE" not in env  # no CA file given: the host's trusted CAs


def test_cli_check_healthy(pg, redis, s3):
    proc = run_cli(["check"], stack_env(pg, redis, s3))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert json.loads(proc.stdout)["status"] == "healthy"


@pytest.mark.parametrize("layout", ["flat", "collection-tree"])
def test_cli_runs_from_a_copy_outside_the_repo(tmp_path, layout, pg, redis, s3):
    """Container layouts: module_utils copied flat next to the script, or a collection tree on PYTHONPATH."""
    src = os.path.join(REPO, "plugins", "module_utils")
    names = ("health_report.py", "probes.py", "s3sig.py")
    env = stack_env(pg, redis, s3)
    if layout == "flat":
        for n in names:
            shutil.copy(os.path.join(src, n), tmp_path / n)
        script = tmp_path / "cmx-health"
    else:
        lib = tmp_path / "lib" / "ansible_collections" / "cleanmatex" / "infra" / "plugins" / "module_utils"
        lib.mkdir(parents=True)
        for n in names:
            shutil.copy(os.path.join(src, n), lib / n)
        (tmp_path / "bin").mkdir()
        script = tmp_path / "bin" / "cmx-health"
        env["PYTHONPATH"] = str(tmp_path / "lib")
    shutil.copy(CMX_HEALTH, script)
    proc = run_cli(["check"], env, cwd=str(tmp_path), script=str(script))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert json.loads(proc.stdout)["status"] == "healthy"


DEBIAN_PYTHON = "/usr/bin/python3"


def _debian_python_with_psycopg2() -> bool:
    if not os.path.exists(DEBIAN_PYTHON):
        return False
    return subprocess.run([DEBIAN_PYTHON, "-I", "-c", "import psycopg2"], capture_output=True).returncode == 0


@pytest.mark.skipif(not _debian_python_with_psycopg2(), reason="needs /usr/bin/python3 with python3-psycopg2")
def test_cli_flat_copy_runs_on_plain_debian_python(tmp_path, pg, redis, s3):
    """What the health image has: Debian python3 + python3-psycopg2, isolated (-I), files copied flat."""
    from test_probes_support import pgbouncer_server

    src = os.path.join(REPO, "plugins", "module_utils")
    for n in ("health_report.py", "probes.py", "s3sig.py"):
        shutil.copy(os.path.join(src, n), tmp_path / n)
    shutil.copy(CMX_HEALTH, tmp_path / "cmx-health")
    with pgbouncer_server(pg) as pgb:
        env = stack_env(
            pg,
            redis,
            s3,
            HEALTH_PGBOUNCER_URL=f"postgresql://{pg['user']}@127.0.0.1:{pgb['port']}/{pg['dbname']}",
        )
        env["PATH"] = "/usr/bin:/bin"
        proc = subprocess.run(
            [DEBIAN_PYTHON, "-I", str(tmp_path / "cmx-health"), "check", "-v"],
            env=env,
            cwd=str(tmp_path),
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads(proc.stdout)
    assert_contract(report, extra=("pgbouncer",))
    assert report["status"] == "healthy"


def test_cli_serve_ping_and_sigterm():
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEALTH_") and k != "PYTHONPATH"}
    env.update(
        {
            "HEALTH_BIND": "127.0.0.1",
            "HEALTH_PORT": str(port),
            "HEALTH_PROBE_TIMEOUT_MS": "300",
            "HEALTH_REDIS_URL": f"redis://127.0.0.1:{free_port()}",
        }
    )
    proc = subprocess.Popen(
        [sys.executable, CMX_HEALTH, "serve"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(lambda: port_open(port) or proc.poll() is not None, 15, 0.05, "cmx-health to listen")
        assert proc.poll() is None, proc.stderr.read()
        status, _, body = get(f"http://127.0.0.1:{port}/health")
        assert status == 503
        assert_contract(json.loads(body))
        ping = run_cli(["ping"], {"HEALTH_PORT": str(port)})
        assert ping.returncode == 0, ping.stderr
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
        err = proc.stderr.read()
        assert "serving GET /health" in err and "redis: down" in err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)


def test_cli_ping_fails_without_server():
    assert run_cli(["ping", f"http://127.0.0.1:{free_port()}/health"], {}).returncode == 1


# --------------------------------------------------------------------------- the cmx_health module


def run_health_module(args: dict) -> tuple[int, dict, str]:
    payload = {"ANSIBLE_MODULE_ARGS": args}
    env = dict(os.environ, PYTHONPATH=os.path.join(REPO, ".collections"))
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "ansible_collections.cleanmatex.infra.plugins.modules.cmx_health",
            json.dumps(payload),
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=120,
    )
    return proc.returncode, json.loads(proc.stdout), proc.stdout


def module_services(pg, redis, s3) -> list:
    return [
        {
            "name": "database",
            "type": "postgres",
            "dsn": f"postgresql://{pg['user']}@127.0.0.1:{pg['port']}/{pg['dbname']}",
            "password": pg["password"],
        },
        {
            "name": "redis",
            "type": "redis",
            "host": "127.0.0.1",
            "port": redis.port,
            "password": redis.password,
        },
        {
            "name": "storage",
            "type": "s3",
            "endpoint": s3.url,
            "bucket": S3_BUCKET,
            "access_key": S3_ACCESS,
            "secret_key": S3_SECRET,
        },
    ]


def test_health_module_healthy_report(pg, redis, s3):
    rc, res, raw = run_health_module({"services": module_services(pg, redis, s3), "version": "9.9.9"})
    assert rc == 0, res
    assert_contract(res["report"])
    assert res["report"]["status"] == "healthy" and res["report"]["version"] == "9.9.9"
    assert res["http_status"] == 200 and res["healthy"] is True and res["errors"] == {}
    assert res["changed"] is False
    assert pg["password"] not in raw and S3_SECRET not in raw


def test_health_module_missing_and_down_services(pg, redis, s3):
    services = module_services(pg, redis, s3)[::2]  # database + storage, no redis
    services[1]["secret_key"] = "wrong-secret-000"
    rc, res, raw = run_health_module({"services": services})
    assert rc == 0
    assert_contract(res["report"])
    assert res["report"]["services"]["redis"]["status"] == "down"
    assert res["report"]["services"]["storage"]["status"] == "down"
    assert res["http_status"] == 503
    assert res["errors"]["redis"].startswith("not configured")
    assert "access denied" in res["errors"]["storage"]
    assert "wrong-secret-000" not in raw

    rc, res, _ = run_health_module({"services": services, "fail_when_unhealthy": True})
    assert rc == 1 and res["failed"] is True and res["msg"].startswith("unhealthy: ")
