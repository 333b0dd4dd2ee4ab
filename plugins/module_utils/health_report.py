# Copyright: CleanMateX
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The GET /health report: parallel probes under a budget, the seed's JSON contract, a stdlib HTTP server.

Contract (PRD section 6), byte-for-byte the keys below and nothing else::

    {"status": "healthy" | "unhealthy",
     "timestamp": "2025-10-09T12:00:00.123Z",
     "services": {"database": {"status": "up" | "down", "latency": <ms>},
                  "redis":    {...},
                  "storage":  {...}},
     "version": "<str>"}

"database", "redis" and "storage" are always present (down with a log line
when not configured); "pgbouncer" and "supabase" are added only when their
variables are set. Errors are never put in the JSON (they could describe
internals); the server logs them to stderr when a service changes state.

Supabase local is part of the report only when the inventory enables it
(cmx_supabase_enabled: the stack renders HEALTH_SUPABASE_URL, the compose
.env CMX_SUPABASE_ENABLED=true); otherwise "supabase" is absent, as the
seed's smoke test skips it. When present it counts like every other service:
down makes the report "unhealthy" and GET /health 503. The seed's contract has
only "healthy" | "unhealthy" and its smoke test fails on a Supabase that does
not answer, so there is no third "degraded" state a client would not expect.

Configuration (environment; every secret also as ``<NAME>_FILE``, which wins):

==========================  ==================================================
HEALTH_DATABASE_URL         postgresql://user[:pass]@host:port/db (secret);
                            TLS in its query: ?sslmode=verify-full&sslrootcert=<CA file>
HEALTH_DATABASE_PASSWORD    password, if not in the URL (secret)
HEALTH_PGBOUNCER_URL        optional: adds "pgbouncer" (secret)
HEALTH_PGBOUNCER_PASSWORD   defaults to HEALTH_DATABASE_PASSWORD (secret)
HEALTH_REDIS_URL            redis://[:pass@]host:port[/db] (secret);
                            rediss://... speaks TLS (managed Redis)
HEALTH_REDIS_PASSWORD       AUTH password, if not in the URL (secret)
HEALTH_REDIS_CA_FILE        PEM CA the rediss:// server is verified against
                            (default: the system's trusted CAs)
HEALTH_S3_ENDPOINT          http://host:port or https://... of the S3 API
HEALTH_S3_HEALTH_PATH       engine health path, default /healthz (SeaweedFS);
                            empty string skips it: only the signed bucket
                            HEAD is done (managed S3 has no health endpoint)
HEALTH_S3_ADDRESSING        path (default: endpoint/bucket) or virtual
                            (https://bucket.endpoint-host/)
HEALTH_S3_CA_FILE           PEM CA an https endpoint is verified against
                            (default: the system's trusted CAs)
HEALTH_S3_BUCKET            bucket for the signed HEAD check (optional)
HEALTH_S3_ACCESS_KEY        access key (secret)
HEALTH_S3_SECRET_KEY        secret key (secret)
HEALTH_S3_REGION            default us-east-1
HEALTH_SUPABASE_URL         optional: adds "supabase" (GET this URL; the stack
                            sets <Kong>/rest/v1/ when cmx_supabase_enabled)
HEALTH_SUPABASE_ANON_KEY    sent as apikey header (secret)
HEALTH_SUPABASE_EXPECTED    accepted statuses, default "200" with a key,
                            "200,401" without
HEALTH_BIND                 listen address, default 0.0.0.0
HEALTH_PORT                 listen port, default 8080
HEALTH_PROBE_TIMEOUT_MS     per-probe timeout, default 2000
HEALTH_BUDGET_MS            whole-report budget, default probe timeout + 500
HEALTH_CACHE_MS             reuse a report this long, default 1000 (max 1000)
HEALTH_VERSION              "version" field, default "unknown"
HEALTH_QUIET                1: no access log lines
==========================  ==================================================
"""

from __future__ import annotations

import datetime
import json
import os
import signal
import socket
import sys
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

try:
    from ansible_collections.cleanmatex.infra.plugins.module_utils import probes
except ImportError:  # flat copy (health image): the module_utils files side by side on sys.path
    import probes  # type: ignore[no-redef]

REQUIRED_SERVICES = ("database", "redis", "storage")
HEALTHY = "healthy"
UNHEALTHY = "unhealthy"
DEFAULT_PORT = 8080
DEFAULT_PROBE_TIMEOUT_MS = 2000
BUDGET_GRACE_MS = 500
MAX_CACHE_MS = 1000


# --------------------------------------------------------------------------- parallel probing


def run_parallel(probe_fns: dict, timeout: float, budget: float | None = None) -> dict:
    """Run ``{name: fn(timeout) -> ProbeResult}`` in daemon threads; return ``{name: ProbeResult}``.

    Each probe gets ``timeout`` seconds; whatever has not returned after
    ``budget`` seconds (default: timeout + 0.5 s) is reported down with
    "timed out after <budget> ms" and its thread abandoned (daemon threads,
    so a hung probe never blocks the caller or interpreter exit).
    """
    budget = timeout + BUDGET_GRACE_MS / 1000.0 if budget is None else budget
    results: dict = {}
    lock = threading.Lock()
    done = threading.Event()
    closed = [False]
    if not probe_fns:
        return {}

    def worker(name, fn):
        try:
            res = fn(timeout)
        except BaseException as exc:  # never let a probe escape
            res = probes.ProbeResult(name, probes.DOWN, 0.0, probes._clean(exc))
        if not isinstance(res, probes.ProbeResult):
            res = probes.ProbeResult(name, probes.DOWN, 0.0, f"probe returned {type(res).__name__}")
        res.name = name
        with lock:
            if closed[0]:
                return
            results[name] = res
            if len(results) == len(probe_fns):
                done.set()

    start = time.monotonic()
    for name, fn in probe_fns.items():
        threading.Thread(target=worker, args=(name, fn), name=f"probe-{name}", daemon=True).start()
    done.wait(max(0.0, budget))
    with lock:
        closed[0] = True
        out = dict(results)
    waited = round((time.monotonic() - start) * 1000.0, 1)
    for name in probe_fns:
        if name not in out:
            out[name] = probes.ProbeResult(
                name, probes.DOWN, waited, f"timed out after {round(budget * 1000)} ms"
            )
    return {name: out[name] for name in probe_fns}


def wait_until_up(
    probe_fns: dict,
    timeout: float,
    interval: float = 0.5,
    probe_timeout: float = 2.0,
    once: bool = False,
    on_round=None,
) -> tuple[bool, dict, float]:
    """Poll ``{name: fn(timeout)}`` until every service has been up once, or ``timeout`` seconds pass.

    A service that came up is not probed again. Rounds start every
    ``interval`` seconds (a round slower than that starts the next at once);
    per-probe timeouts are capped by the time left. Returns (all_up, states,
    elapsed_s) where states[name] = {status, latency_ms, attempts, error,
    ready_after_s}. ``once`` does a single round (check mode).
    """
    start = time.monotonic()
    deadline = start + max(0.0, timeout)
    states = {
        name: {
            "status": probes.DOWN,
            "latency_ms": None,
            "attempts": 0,
            "error": "not probed yet",
            "ready_after_s": None,
        }
        for name in probe_fns
    }
    pending = list(probe_fns)
    while pending:
        round_start = time.monotonic()
        left = deadline - round_start
        this_timeout = max(0.05, min(probe_timeout, left)) if not once else probe_timeout
        results = run_parallel({n: probe_fns[n] for n in pending}, this_timeout)
        for name, res in results.items():
            st = states[name]
            st["attempts"] += 1
            st["status"] = res.status
            st["latency_ms"] = res.latency_ms
            st["error"] = res.error
            if res.up:
                st["ready_after_s"] = round(time.monotonic() - start, 3)
        pending = [n for n in pending if states[n]["status"] != probes.UP]
        if on_round is not None:
            on_round(states)
        now = time.monotonic()
        if not pending or once or now >= deadline:
            break
        pause = min(interval - (now - round_start), deadline - now)
        if pause > 0:
            time.sleep(pause)
    return not pending, states, round(time.monotonic() - start, 3)


# --------------------------------------------------------------------------- configuration


@dataclass
class HealthConfig:
    specs: dict = field(default_factory=dict)  # name -> probe spec (probes.make_probe)
    probe_timeout: float = DEFAULT_PROBE_TIMEOUT_MS / 1000.0
    budget: float = (DEFAULT_PROBE_TIMEOUT_MS + BUDGET_GRACE_MS) / 1000.0
    cache_ttl: float = MAX_CACHE_MS / 1000.0
    version: str = "unknown"
    bind: str = "0.0.0.0"
    port: int = DEFAULT_PORT
    quiet: bool = False
    warnings: list = field(default_factory=list)


class ConfigError(Exception):
    pass


def _secret(env: dict, key: str, problems: list) -> str | None:
    """VAR_FILE (Docker/compose secret) wins over VAR; an unreadable file is a problem, not a crash."""
    path = env.get(key + "_FILE")
    if path:
        try:
            with open(path, encoding="utf-8") as fh:
                return fh.read().strip() or None
        except OSError as exc:
            problems.append(f"cannot read {key}_FILE ({path}): {exc.strerror or exc}")
            return None
    return env.get(key) or None


def _number(env: dict, key: str, default: float, warnings: list, minimum: float = 0.0) -> float:
    raw = env.get(key)
    if raw in (None, ""):
        return default
    try:
        value = float(raw)
    except ValueError:
        warnings.append(f"{key}={raw!r} is not a number; using {default}")
        return default
    if value < minimum:
        warnings.append(f"{key}={raw!r} is below {minimum}; using {default}")
        return default
    return value


def config_from_env(env: dict | None = None) -> HealthConfig:
    """Build the probe set from HEALTH_* variables (see the module docstring)."""
    env = dict(os.environ if env is None else env)
    warnings: list = []
    specs: dict = {}

    def down(name: str, message: str) -> dict:
        return {"name": name, "type": "down", "error": message}

    # database (+ optional pgbouncer)
    problems: list = []
    db_url = _secret(env, "HEALTH_DATABASE_URL", problems)
    db_password = _secret(env, "HEALTH_DATABASE_PASSWORD", problems)
    if problems:
        specs["database"] = down("database", "; ".join(problems))
    elif not db_url:
        specs["database"] = down("database", "not configured: set HEALTH_DATABASE_URL")
    else:
        specs["database"] = {"name": "database", "type": "postgres", "dsn": db_url, "password": db_password}

    # redis
    problems = []
    redis_url = _secret(env, "HEALTH_REDIS_URL", problems)
    redis_password = _secret(env, "HEALTH_REDIS_PASSWORD", problems)
    if problems:
        specs["redis"] = down("redis", "; ".join(problems))
    elif not redis_url:
        specs["redis"] = down("redis", "not configured: set HEALTH_REDIS_URL")
    else:
        specs["redis"] = {
            "name": "redis",
            "type": "redis",
            "url": redis_url,
            "password": redis_password,
            "ca_file": env.get("HEALTH_REDIS_CA_FILE") or None,
        }

    # storage
    problems = []
    endpoint = env.get("HEALTH_S3_ENDPOINT")
    access_key = _secret(env, "HEALTH_S3_ACCESS_KEY", problems)
    secret_key = _secret(env, "HEALTH_S3_SECRET_KEY", problems)
    health_path = env.get("HEALTH_S3_HEALTH_PATH", "/healthz")
    addressing = (env.get("HEALTH_S3_ADDRESSING") or "path").strip().lower()
    if addressing not in ("path", "virtual"):
        problems.append(f"HEALTH_S3_ADDRESSING={env.get('HEALTH_S3_ADDRESSING')!r} is not path or virtual")
    if problems:
        specs["storage"] = down("storage", "; ".join(problems))
    elif not endpoint:
        specs["storage"] = down("storage", "not configured: set HEALTH_S3_ENDPOINT")
    else:
        specs["storage"] = {
            "name": "storage",
            "type": "s3",
            "endpoint": endpoint,
            "health_path": health_path or None,
            "bucket": env.get("HEALTH_S3_BUCKET") or None,
            "access_key": access_key,
            "secret_key": secret_key,
            "region": env.get("HEALTH_S3_REGION") or "us-east-1",
            "ca_file": env.get("HEALTH_S3_CA_FILE") or None,
            "addressing": addressing,
        }
        if not health_path and not (specs["storage"]["bucket"] and access_key and secret_key):
            specs["storage"] = down("storage", "HEALTH_S3_HEALTH_PATH is empty and no bucket + keys are set")

    # optional extras
    problems = []
    pgb_url = _secret(env, "HEALTH_PGBOUNCER_URL", problems)
    pgb_password = _secret(env, "HEALTH_PGBOUNCER_PASSWORD", problems) or db_password
    if problems:
        specs["pgbouncer"] = down("pgbouncer", "; ".join(problems))
    elif pgb_url:
        specs["pgbouncer"] = {
            "name": "pgbouncer",
            "type": "postgres",
            "dsn": pgb_url,
            "password": pgb_password,
        }

    problems = []
    supa_url = env.get("HEALTH_SUPABASE_URL")
    supa_key = _secret(env, "HEALTH_SUPABASE_ANON_KEY", problems)
    if problems:
        specs["supabase"] = down("supabase", "; ".join(problems))
    elif supa_url:
        default_expected = "200" if supa_key else "200,401"
        raw = env.get("HEALTH_SUPABASE_EXPECTED") or default_expected
        try:
            expected = [int(x) for x in raw.replace(" ", "").split(",") if x]
        except ValueError:
            warnings.append(f"HEALTH_SUPABASE_EXPECTED={raw!r} is not a list of status codes")
            expected = [int(x) for x in default_expected.split(",")]
        headers = {"apikey": supa_key, "Authorization": f"Bearer {supa_key}"} if supa_key else None
        specs["supabase"] = {
            "name": "supabase",
            "type": "http",
            "url": supa_url,
            "expected_status": expected,
            "headers": headers,
        }

    timeout_ms = _number(env, "HEALTH_PROBE_TIMEOUT_MS", DEFAULT_PROBE_TIMEOUT_MS, warnings, minimum=1)
    budget_ms = _number(env, "HEALTH_BUDGET_MS", timeout_ms + BUDGET_GRACE_MS, warnings, minimum=1)
    cache_ms = min(_number(env, "HEALTH_CACHE_MS", MAX_CACHE_MS, warnings), MAX_CACHE_MS)
    raw_port = env.get("HEALTH_PORT") or str(DEFAULT_PORT)
    try:
        port = int(raw_port)
        if not 0 <= port <= 65535:
            raise ValueError
    except ValueError:
        raise ConfigError(f"HEALTH_PORT={raw_port!r} is not a TCP port") from None
    return HealthConfig(
        specs=specs,
        probe_timeout=timeout_ms / 1000.0,
        budget=budget_ms / 1000.0,
        cache_ttl=cache_ms / 1000.0,
        version=env.get("HEALTH_VERSION") or "unknown",
        bind=env.get("HEALTH_BIND") or "0.0.0.0",
        port=port,
        quiet=(env.get("HEALTH_QUIET") or "").lower() in ("1", "true", "yes"),
        warnings=warnings,
    )


def read_env_file(path: str) -> dict:
    """KEY=VALUE lines of a rendered .env ('#' comments skipped, one level of quotes removed)."""
    values = {}
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            line = line.strip()
            if not line or line.startswith("#") or "=" not in line:
                continue
            key, _, value = line.partition("=")
            value = value.strip()
            if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
                value = value[1:-1]
            values[key.strip()] = value
    return values


def env_from_stack(project_dir: str) -> dict | None:
    """HEALTH_* settings for probing a converged stack from its host, read from its rendered folder.

    Uses the compose .env (ports, names, bind address) and the secret files in secrets/ (as *_FILE):
    the same services the /health container probes, through the ports published on the host.
    None when the folder holds no rendered stack.
    """
    env_path = os.path.join(project_dir, ".env")
    if not os.path.isfile(env_path):
        return None
    stack = read_env_file(env_path)
    bind = stack.get("CMX_BIND_ADDRESS") or "127.0.0.1"
    host = "127.0.0.1" if bind in ("0.0.0.0", "127.0.0.1") else bind
    if ":" in host:
        host = f"[{host}]"
    secrets = os.path.join(project_dir, "secrets")
    user = urllib.parse.quote(stack.get("POSTGRES_USER", ""), safe="")
    dbname = urllib.parse.quote(stack.get("POSTGRES_DB", ""), safe="")
    engine_paths = {"minio": "/minio/health/live"}
    # TLS mode (cmx_tls_enabled, CMX_POSTGRES_TLS in the compose .env): verify-full against the stack's CA.
    tls = "?sslmode=disable"
    if stack.get("CMX_POSTGRES_TLS") == "1":
        ca_file = urllib.parse.quote(os.path.join(secrets, "tls", "ca.crt"), safe="/")
        tls = f"?sslmode=verify-full&sslrootcert={ca_file}"
    env = {
        "HEALTH_DATABASE_URL": f"postgresql://{user}@{host}:{stack.get('POSTGRES_PORT')}/{dbname}{tls}",
        "HEALTH_DATABASE_PASSWORD_FILE": os.path.join(secrets, "postgres_password"),
        "HEALTH_PGBOUNCER_URL": f"postgresql://{user}@{host}:{stack.get('PGBOUNCER_PORT')}/{dbname}{tls}",
        "HEALTH_REDIS_URL": f"redis://{host}:{stack.get('REDIS_PORT')}/0",
        "HEALTH_REDIS_PASSWORD_FILE": os.path.join(secrets, "redis_password"),
        "HEALTH_S3_ENDPOINT": f"http://{host}:{stack.get('S3_PORT')}",
        "HEALTH_S3_HEALTH_PATH": engine_paths.get(stack.get("CMX_STORAGE_ENGINE", ""), "/healthz"),
        "HEALTH_S3_BUCKET": stack.get("S3_BUCKET", ""),
        "HEALTH_S3_ACCESS_KEY_FILE": os.path.join(secrets, "s3_access_key"),
        "HEALTH_S3_SECRET_KEY_FILE": os.path.join(secrets, "s3_secret_key"),
    }
    env.update(_external_env(stack, secrets, user, dbname))
    env.update(_supabase_env(stack, project_dir))
    return env


SUPABASE_DEFAULT_API_PORT = 54321


def _supabase_env(stack: dict, project_dir: str) -> dict:
    """HEALTH_SUPABASE_* when the stack says Supabase local is part of it (CMX_SUPABASE_ENABLED=true in the
    compose .env): its API gateway (Kong) on the port the CLI publishes on every host interface
    (CMX_SUPABASE_API_PORT, cmx_supabase_api_port), probed at 127.0.0.1. The anon key the supabase role
    wrote into the app .env is sent when there is one (then only 200 counts as up)."""
    if (stack.get("CMX_SUPABASE_ENABLED") or "").strip().lower() not in ("1", "true", "yes", "on"):
        return {}
    port = stack.get("CMX_SUPABASE_API_PORT") or str(SUPABASE_DEFAULT_API_PORT)
    if port == "0":  # [api] disabled (cmx_supabase_api_enabled: false): no gateway to probe
        return {}
    env = {"HEALTH_SUPABASE_URL": f"http://127.0.0.1:{port}/rest/v1/"}
    app_env = os.path.join(project_dir, "app", ".env")
    try:
        key = (
            read_env_file(app_env).get("NEXT_PUBLIC_SUPABASE_ANON_KEY", "") if os.path.isfile(app_env) else ""
        )
    except (OSError, UnicodeDecodeError):
        key = ""
    if key and not key.startswith("<"):  # "<get-from-supabase-start>": the .env.example placeholder
        env["HEALTH_SUPABASE_ANON_KEY"] = key
    return env


def _external_env(stack: dict, secrets: str, user: str, dbname: str) -> dict:
    """HEALTH_* settings of the external services (CMX_EXTERNAL_* in the compose .env, their CA files in
    secrets/ca/; docs/external-services.md): their endpoints instead of the host's published ports."""
    env = {}

    def ca(name: str) -> str:
        path = os.path.join(secrets, "ca", f"{name}.crt")
        return path if os.path.isfile(path) else ""

    def pg_query() -> str:
        params = {"sslmode": stack.get("CMX_EXTERNAL_POSTGRES_SSLMODE") or "verify-full"}
        if ca("postgres"):
            params["sslrootcert"] = ca("postgres")
        return "?" + urllib.parse.urlencode(params, quote_via=urllib.parse.quote, safe="/")

    if stack.get("CMX_EXTERNAL_POSTGRES"):
        env["HEALTH_DATABASE_URL"] = (
            f"postgresql://{user}@{stack['CMX_EXTERNAL_POSTGRES']}/{dbname}{pg_query()}"
        )
    if stack.get("CMX_EXTERNAL_PGBOUNCER"):
        env["HEALTH_PGBOUNCER_URL"] = (
            f"postgresql://{user}@{stack['CMX_EXTERNAL_PGBOUNCER']}/{dbname}{pg_query()}"
        )
    if stack.get("CMX_EXTERNAL_REDIS"):
        scheme = "rediss" if stack.get("CMX_EXTERNAL_REDIS_TLS", "1") == "1" else "redis"
        env["HEALTH_REDIS_URL"] = f"{scheme}://{stack['CMX_EXTERNAL_REDIS']}/0"
        if ca("redis"):
            env["HEALTH_REDIS_CA_FILE"] = ca("redis")
    if stack.get("CMX_EXTERNAL_S3"):
        env["HEALTH_S3_ENDPOINT"] = stack["CMX_EXTERNAL_S3"]
        env["HEALTH_S3_HEALTH_PATH"] = ""
        env["HEALTH_S3_ADDRESSING"] = stack.get("CMX_EXTERNAL_S3_ADDRESSING") or "path"
        if ca("s3"):
            env["HEALTH_S3_CA_FILE"] = ca("s3")
    return env


# --------------------------------------------------------------------------- the report


def utc_timestamp(now: datetime.datetime | None = None) -> str:
    now = now or datetime.datetime.now(datetime.UTC)
    return now.astimezone(datetime.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def build_report(results: dict, version: str, now: datetime.datetime | None = None) -> dict:
    """The seed's JSON from ``{name: ProbeResult}``; the three required services are always present."""
    services = {}
    for name in list(REQUIRED_SERVICES) + [n for n in results if n not in REQUIRED_SERVICES]:
        res = results.get(name)
        if res is None:
            services[name] = {"status": probes.DOWN, "latency": 0.0}
        else:
            services[name] = {"status": res.status, "latency": float(round(res.latency_ms, 1))}
    healthy = all(s["status"] == probes.UP for s in services.values())
    return {
        "status": HEALTHY if healthy else UNHEALTHY,
        "timestamp": utc_timestamp(now),
        "services": services,
        "version": str(version),
    }


def collect(config: HealthConfig) -> dict:
    fns = {name: probes.make_probe(spec) for name, spec in config.specs.items()}
    return run_parallel(fns, config.probe_timeout, config.budget)


def http_status(report: dict) -> int:
    return 200 if report.get("status") == HEALTHY else 503


class HealthService:
    """Thread-safe report source: caches a report for ``cache_ttl`` and shares one in-flight round."""

    def __init__(self, config: HealthConfig, log=None):
        self.config = config
        self._log = log or (lambda msg: None)
        # Every configured secret is masked in every log line, whichever probe's message carries it.
        self.secrets = probes.service_secrets(config.specs.values())
        self._cond = threading.Condition()
        self._report: dict | None = None
        self._at = 0.0
        self._gen = 0
        self._inflight = False
        self._last_status: dict = {}

    def log(self, msg: str) -> None:
        self._log(probes.redact(msg, self.secrets))

    def report(self) -> dict:
        with self._cond:
            if self._report is not None and time.monotonic() - self._at <= self.config.cache_ttl:
                return self._report
            if self._inflight:
                gen = self._gen
                limit = time.monotonic() + self.config.budget + 1.0
                while self._gen == gen and time.monotonic() < limit:
                    self._cond.wait(max(0.01, limit - time.monotonic()))
                if self._gen != gen and self._report is not None:
                    return self._report
            self._inflight = True
        report = None
        try:
            results = collect(self.config)
            report = build_report(results, self.config.version)
            self._log_changes(results)
        except BaseException as exc:  # never take the server down
            self.log(f"health round failed: {probes._clean(exc)}")
            report = build_report({}, self.config.version)
        finally:
            with self._cond:
                if report is not None:
                    self._report, self._at = report, time.monotonic()
                self._gen += 1
                self._inflight = False
                self._cond.notify_all()
        return report

    def _log_changes(self, results: dict) -> None:
        for name, res in results.items():
            before = self._last_status.get(name)
            if before != res.status:
                if res.up:
                    self.log(f"{name}: up ({res.latency_ms} ms)")
                else:
                    self.log(f"{name}: down - {res.error}")
            self._last_status[name] = res.status


# --------------------------------------------------------------------------- HTTP server


class HealthHandler(BaseHTTPRequestHandler):
    server_version = "cmx-health"
    sys_version = ""
    protocol_version = "HTTP/1.1"
    timeout = 30  # idle keep-alive connections are dropped

    def do_GET(self):
        self._respond(with_body=True)

    def do_HEAD(self):
        self._respond(with_body=False)

    def _respond(self, with_body: bool) -> None:
        path = urllib.parse.urlsplit(self.path).path
        if path.rstrip("/") == "/health":
            report = self.server.health.report()
            code, body = http_status(report), json.dumps(report).encode("utf-8")
        else:
            code, body = 404, json.dumps({"error": "not found", "path": path[:200]}).encode("utf-8")
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Cache-Control", "no-store")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if with_body:
            self.wfile.write(body)

    def log_message(self, format, *args):
        if not self.server.quiet:
            sys.stderr.write(f"{self.address_string()} - {format % args}\n")


class HealthServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address, health: HealthService, quiet: bool = False):
        self.health = health
        self.quiet = quiet
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, HealthHandler)

    def handle_error(self, request, client_address):  # a broken client never kills the server
        if not self.quiet:
            exc = sys.exc_info()[1]
            error = probes._clean(exc, self.health.secrets)
            sys.stderr.write(f"cmx-health: request from {client_address[0]} failed: {error}\n")


def _log(msg: str) -> None:
    sys.stderr.write(f"{utc_timestamp()} cmx-health: {msg}\n")
    sys.stderr.flush()


def make_server(config: HealthConfig) -> HealthServer:
    return HealthServer((config.bind, config.port), HealthService(config, log=_log), quiet=config.quiet)


def serve(config: HealthConfig) -> int:
    server = make_server(config)

    def stop(signum, frame):
        # shutdown() blocks until serve_forever returns: call it from another thread
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for warning in config.warnings:
        _log(f"warning: {warning}")
    host, port = server.server_address[:2]
    _log(
        f"serving GET /health on {host}:{port} (services: {', '.join(config.specs)}; "
        f"probe timeout {int(config.probe_timeout * 1000)} ms, budget {int(config.budget * 1000)} ms)"
    )
    try:
        server.serve_forever(poll_interval=0.5)
    finally:
        server.server_close()
    _log("stopped")
    return 0


def check(config: HealthConfig, out=None, verbose: bool = False) -> int:
    """Probe once and print the JSON; exit 0 healthy, 2 not, each service that is down named with why."""
    out = out or sys.stdout
    results = collect(config)
    report = build_report(results, config.version)
    out.write(json.dumps(report, indent=2) + "\n")
    for res in results.values():
        if not res.up:
            sys.stderr.write(f"{res.name}: down - {res.error}\n")
        elif verbose:
            sys.stderr.write(f"{res.name}: up ({res.latency_ms} ms)\n")
    if verbose and "supabase" not in config.specs:
        sys.stderr.write("supabase: skipped (not enabled: cmx_supabase_enabled is false for this stack)\n")
    return 0 if report["status"] == HEALTHY else 2


def ping(url: str, timeout: float = 3.0) -> int:
    """Container HEALTHCHECK: the server answers /health with the contract (200 or 503) -> 0."""
    try:
        status, body = probes.http_request("GET", url, timeout=timeout)
        report = json.loads(body.decode("utf-8"))
        ok = status in (200, 503) and set(report) == {"status", "timestamp", "services", "version"}
    except Exception as exc:
        sys.stderr.write(f"cmx-health ping {url}: {probes._clean(exc)}\n")
        return 1
    if not ok:
        sys.stderr.write(f"cmx-health ping {url}: unexpected answer (HTTP {status})\n")
    return 0 if ok else 1


USAGE = """usage: cmx-health {serve|check|ping} [options]

  serve           serve GET /health on HEALTH_BIND:HEALTH_PORT (200 healthy, 503 not)
  check [-v]      probe once, print the JSON; exit 0 healthy, 2 unhealthy (why on stderr; -v: every service)
  ping [URL]      exit 0 when a cmx-health server answers (default http://127.0.0.1:$HEALTH_PORT/health)

Configuration comes from HEALTH_* environment variables; see health_report.py. `check` with none set
reads the converged stack's folder instead: $CMX_PROJECT_DIR, by default .cmx/ of the checkout.
"""


def main(argv: list | None = None, default_project_dir: str | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        sys.stdout.write(USAGE)
        return 0 if argv else 2
    cmd, rest = argv[0], argv[1:]
    try:
        if cmd == "ping":
            port = os.environ.get("HEALTH_PORT") or str(DEFAULT_PORT)
            return ping(rest[0] if rest else f"http://127.0.0.1:{port}/health")
        env = dict(os.environ)
        if cmd == "check" and not any(
            key.startswith("HEALTH_") and key.endswith(("_URL", "_ENDPOINT")) for key in env
        ):
            project_dir = env.get("CMX_PROJECT_DIR") or default_project_dir
            from_stack = env_from_stack(project_dir) if project_dir else None
            if from_stack is None:
                raise ConfigError(
                    f"no HEALTH_* variables and no converged stack in {project_dir or '(no folder)'}:"
                    " run `bin/cmx up` first, set CMX_PROJECT_DIR to the stack's folder,"
                    " or set HEALTH_DATABASE_URL, HEALTH_REDIS_URL and HEALTH_S3_ENDPOINT"
                )
            env.update(from_stack)
        config = config_from_env(env)
    except ConfigError as exc:
        sys.stderr.write(f"cmx-health: {exc}\n")
        return 2
    if cmd == "serve":
        return serve(config)
    if cmd == "check":
        return check(config, verbose="-v" in rest or "--verbose" in rest)
    sys.stderr.write(USAGE)
    return 2
