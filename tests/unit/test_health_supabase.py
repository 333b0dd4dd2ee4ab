"""GET /health and `bin/cmx health` include Supabase local only when it is enabled (issue 11, item 4).

Supabase's images cannot be pulled here, so its API gateway is a stand-in: a Python HTTP server on
127.0.0.1 answering GET /rest/v1/ as Kong in front of PostgREST does (200 with the anon key, 502 when its
upstream is gone). The failure path is real: nothing listens on the port. The other services are the real
ones of test_health_report (PostgreSQL, redis-server, the in-process S3). The stack's templates are rendered
by Ansible as the stack role renders them and read back by `docker compose config`.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml
from ansible_collections.cleanmatex.infra.plugins.module_utils import health_report as hr
from test_env_support import REPO, ansible_env
from test_health_report import (
    S3_ACCESS,
    S3_BUCKET,
    S3_SECRET,
    RunningServer,
    assert_contract,
    get,
    run_cli,
    stack_env,
)
from test_probes_support import HttpServer, RedisServer, free_port, make_s3_handler

ANON_KEY = "eyJhbGciOiJIUzI1NiJ9.stand-in-anon-key.sig"


class KongStandIn:
    """GET /rest/v1/ as Supabase's Kong answers it: 200 + PostgREST's OpenAPI JSON; with ``require_key`` 401
    unless the apikey header is the anon key; with ``upstream_down`` Kong's 502 (PostgREST gone).
    Listens on 127.0.0.1:``port`` (a free one by default)."""

    def __init__(self, require_key: str | None = None, upstream_down: bool = False, port: int = 0):
        self.requests: list = []
        self.require_key = require_key
        self.upstream_down = upstream_down
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                outer.requests.append((self.path, {k.lower(): v for k, v in self.headers.items()}))
                if self.path != "/rest/v1/":
                    code, body = 404, {"message": "no Route matched with those values"}
                elif outer.upstream_down:
                    code, body = 502, {"message": "An invalid response was received from the upstream server"}
                elif outer.require_key and self.headers.get("apikey") != outer.require_key:
                    code, body = 401, {"message": "Invalid authentication credentials"}
                else:
                    code, body = 200, {"swagger": "2.0", "info": {"title": "standard public schema"}}
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Server", "kong/2.8.1")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self._thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# --------------------------------------------------------------------------- the running /health server


@pytest.fixture(scope="module")
def s3():
    pytest.importorskip("botocore")
    with HttpServer(make_s3_handler(S3_ACCESS, S3_SECRET, buckets=(S3_BUCKET,))) as srv:
        yield srv


@pytest.fixture(scope="module")
def redis():
    srv = RedisServer(password="cmx-health-supabase-redis-pw")
    srv.start()
    yield srv
    srv.close()


def test_health_includes_supabase_up_with_its_key(pg, redis, s3):
    with KongStandIn(require_key=ANON_KEY) as kong:
        env = stack_env(
            pg,
            redis,
            s3,
            HEALTH_SUPABASE_URL=f"http://127.0.0.1:{kong.port}/rest/v1/",
            HEALTH_SUPABASE_ANON_KEY=ANON_KEY,
        )
        with RunningServer(env) as srv:
            status, _, body = get(f"{srv.url}/health")
    report = json.loads(body)
    assert status == 200, body
    assert_contract(report, extra=("supabase",))
    assert report["services"]["supabase"]["status"] == "up"
    assert report["status"] == "healthy"
    path, headers = kong.requests[-1]
    assert path == "/rest/v1/" and headers["apikey"] == ANON_KEY
    assert headers["authorization"] == f"Bearer {ANON_KEY}"
    assert ANON_KEY.encode() not in body


def test_health_without_supabase_has_no_supabase_entry(pg, redis, s3):
    with RunningServer(stack_env(pg, redis, s3)) as srv:
        status, _, body = get(f"{srv.url}/health")
    assert status == 200, body
    assert "supabase" not in json.loads(body)["services"]


def test_supabase_not_listening_makes_health_503_and_logs_why(pg, redis, s3):
    """The real failure: nothing on the port. Down counts like any service: unhealthy, 503 (the seed's
    contract knows no "degraded"), the others still up, the reason in the server's log, never in the JSON."""
    dead = free_port()
    config = hr.config_from_env(
        stack_env(pg, redis, s3, HEALTH_SUPABASE_URL=f"http://127.0.0.1:{dead}/rest/v1/")
    )
    lines: list = []
    service = hr.HealthService(config, log=lines.append)
    report = service.report()
    assert_contract(report, extra=("supabase",))
    assert report["status"] == "unhealthy" and hr.http_status(report) == 503
    assert report["services"]["supabase"]["status"] == "down"
    assert {n: s["status"] for n, s in report["services"].items() if n != "supabase"} == {
        "database": "up",
        "redis": "up",
        "storage": "up",
    }
    down = [line for line in lines if line.startswith("supabase: down - ")]
    assert down, lines
    assert f"GET http://127.0.0.1:{dead}/rest/v1/" in down[0] and "refused" in down[0], down[0]
    assert "refused" not in json.dumps(report)


def test_supabase_gateway_without_upstream_is_down_with_its_status(pg, redis, s3):
    with KongStandIn(upstream_down=True) as kong:
        config = hr.config_from_env(
            stack_env(pg, redis, s3, HEALTH_SUPABASE_URL=f"http://127.0.0.1:{kong.port}/rest/v1/")
        )
        lines: list = []
        report = hr.HealthService(config, log=lines.append).report()
    assert report["services"]["supabase"]["status"] == "down" and report["status"] == "unhealthy"
    assert any("answered HTTP 502 (expected 200, 401)" in line for line in lines), lines


def test_supabase_recovers_on_the_next_round(pg, redis, s3):
    """Stopped, then started again on the same port: 503 while it is gone, 200 once it answers (cache off)."""
    kong = KongStandIn()
    env = stack_env(pg, redis, s3, HEALTH_SUPABASE_URL=f"http://127.0.0.1:{kong.port}/rest/v1/")
    with RunningServer(env) as srv:
        assert get(f"{srv.url}/health")[0] == 200
        kong.close()
        status, _, body = get(f"{srv.url}/health")
        assert status == 503 and json.loads(body)["services"]["supabase"]["status"] == "down"
        with KongStandIn(port=kong.port):
            status, _, body = get(f"{srv.url}/health")
        assert status == 200, body
        assert json.loads(body)["services"]["supabase"]["status"] == "up"


# --------------------------------------------------------------------------- bin/cmx health (the host's view)


def _stack_folder(tmp_path: Path, ports: int, **extra: str) -> Path:
    (tmp_path / "secrets").mkdir(exist_ok=True)
    for name in ("postgres_password", "redis_password", "s3_access_key", "s3_secret_key"):
        (tmp_path / "secrets" / name).write_text("x")
    lines = [
        "CMX_BIND_ADDRESS=127.0.0.1",
        "POSTGRES_USER=u",
        "POSTGRES_DB=d",
        f"POSTGRES_PORT={ports}",
        f"PGBOUNCER_PORT={ports}",
        f"REDIS_PORT={ports}",
        f"S3_PORT={ports}",
        f"S3_BUCKET={S3_BUCKET}",
    ] + [f"{key}={value}" for key, value in extra.items()]
    (tmp_path / ".env").write_text("\n".join(lines) + "\n")
    return tmp_path


def test_env_from_stack_adds_supabase_only_when_enabled(tmp_path):
    folder = _stack_folder(tmp_path, 1)
    assert not any(k.startswith("HEALTH_SUPABASE") for k in hr.env_from_stack(str(folder)))

    _stack_folder(tmp_path, 1, CMX_SUPABASE_ENABLED="true", CMX_SUPABASE_API_PORT="54999")
    env = hr.env_from_stack(str(folder))
    assert env["HEALTH_SUPABASE_URL"] == "http://127.0.0.1:54999/rest/v1/"
    assert "HEALTH_SUPABASE_ANON_KEY" not in env  # no app .env yet: probed without a key (200 or 401)
    assert hr.config_from_env(env).specs["supabase"]["expected_status"] == [200, 401]

    (folder / "app").mkdir()
    (folder / "app" / ".env").write_text("NEXT_PUBLIC_SUPABASE_ANON_KEY=<get-from-supabase-start>\n")
    assert "HEALTH_SUPABASE_ANON_KEY" not in hr.env_from_stack(str(folder))
    (folder / "app" / ".env").write_text(f"NEXT_PUBLIC_SUPABASE_ANON_KEY='{ANON_KEY}'\n")
    env = hr.env_from_stack(str(folder))
    assert env["HEALTH_SUPABASE_ANON_KEY"] == ANON_KEY
    assert hr.config_from_env(env).specs["supabase"]["expected_status"] == [200]

    # A .env rendered before the port was recorded: the CLI's default port; [api] disabled: nothing to probe.
    _stack_folder(tmp_path, 1, CMX_SUPABASE_ENABLED="true")
    assert hr.env_from_stack(str(folder))["HEALTH_SUPABASE_URL"] == "http://127.0.0.1:54321/rest/v1/"
    _stack_folder(tmp_path, 1, CMX_SUPABASE_ENABLED="true", CMX_SUPABASE_API_PORT="0")
    assert "HEALTH_SUPABASE_URL" not in hr.env_from_stack(str(folder))


def test_cli_check_names_supabase_down_or_skipped(tmp_path):
    dead = free_port()
    folder = _stack_folder(tmp_path, dead)
    proc = run_cli(["check", "-v"], {"CMX_PROJECT_DIR": str(folder), "HEALTH_PROBE_TIMEOUT_MS": "500"})
    assert proc.returncode == 2
    assert "supabase" not in json.loads(proc.stdout)["services"]
    assert "supabase: skipped (not enabled: cmx_supabase_enabled is false for this stack)" in proc.stderr

    _stack_folder(tmp_path, dead, CMX_SUPABASE_ENABLED="true", CMX_SUPABASE_API_PORT=str(dead))
    proc = run_cli(["check"], {"CMX_PROJECT_DIR": str(folder), "HEALTH_PROBE_TIMEOUT_MS": "500"})
    assert proc.returncode == 2
    assert json.loads(proc.stdout)["services"]["supabase"] == {
        "status": "down",
        "latency": pytest.approx(0, abs=600),
    }
    assert f"supabase: down - GET http://127.0.0.1:{dead}/rest/v1/: " in proc.stderr


def test_cli_check_sends_the_app_key_to_supabase(tmp_path):
    with KongStandIn(require_key=ANON_KEY) as kong:
        folder = _stack_folder(
            tmp_path, free_port(), CMX_SUPABASE_ENABLED="true", CMX_SUPABASE_API_PORT=str(kong.port)
        )
        (folder / "app").mkdir()
        (folder / "app" / ".env").write_text(f"NEXT_PUBLIC_SUPABASE_ANON_KEY={ANON_KEY}\n")
        proc = run_cli(["check", "-v"], {"CMX_PROJECT_DIR": str(folder), "HEALTH_PROBE_TIMEOUT_MS": "500"})
        assert json.loads(proc.stdout)["services"]["supabase"]["status"] == "up", proc.stderr
        assert "supabase: up (" in proc.stderr and ANON_KEY not in proc.stdout + proc.stderr
        assert kong.requests[-1][1]["apikey"] == ANON_KEY
        # A wrong key: Kong's 401 is down, since with a key only 200 counts.
        (folder / "app" / ".env").write_text("NEXT_PUBLIC_SUPABASE_ANON_KEY=wrong-key\n")
        proc = run_cli(["check"], {"CMX_PROJECT_DIR": str(folder), "HEALTH_PROBE_TIMEOUT_MS": "500"})
        assert "answered HTTP 401 (expected 200)" in proc.stderr and "wrong-key" not in proc.stderr


# --------------------------------------------------------------------------- what the roles render

needs_ansible = pytest.mark.skipif(
    not (REPO / ".venv" / "bin" / "ansible-playbook").exists(), reason="needs the repository's .venv"
)


@needs_ansible
@pytest.mark.parametrize("enabled", [False, True])
def test_stack_renders_the_supabase_probe_only_when_enabled(tmp_path, enabled):
    from test_quoting import compose_config, needs_compose  # noqa: F401
    from test_stack_templates import HOSTILE, render

    values = {**HOSTILE, "cmx_supabase_enabled": enabled, "cmx_supabase_api_port": 54999}
    done = render(tmp_path, values)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = tmp_path / "out"
    health = compose_config(out)["services"]["health"]
    env_file = (out / ".env").read_text(encoding="utf-8")
    if enabled:
        assert health["environment"]["HEALTH_SUPABASE_URL"] == "http://host.docker.internal:54999/rest/v1/"
        assert health["extra_hosts"] in (
            ["host.docker.internal=host-gateway"],
            ["host.docker.internal:host-gateway"],
            {"host.docker.internal": ["host-gateway"]},
            {"host.docker.internal": "host-gateway"},
        ), health["extra_hosts"]
        assert "CMX_SUPABASE_ENABLED=true\n" in env_file and "CMX_SUPABASE_API_PORT=54999\n" in env_file
        # The host's view reads the same port from the rendered folder.
        assert hr.env_from_stack(str(out))["HEALTH_SUPABASE_URL"] == "http://127.0.0.1:54999/rest/v1/"
    else:
        assert "HEALTH_SUPABASE_URL" not in health["environment"] and "extra_hosts" not in health
        assert "CMX_SUPABASE" not in env_file
        assert "HEALTH_SUPABASE_URL" not in hr.env_from_stack(str(out))
    raw = yaml.safe_load((out / "docker-compose.yml").read_text(encoding="utf-8"))
    assert raw["services"]["health"]["networks"] == ["stack"]  # never on Supabase's network


HEALTH_VARS_PLAY = """\
- name: The health role's service lists
  hosts: all
  gather_facts: false
  vars_files:
    - {repo}/roles/health/defaults/main.yml
    - {repo}/roles/health/vars/main.yml
  tasks:
    - name: Print them
      ansible.builtin.debug:
        msg: "{{{{ {{'wait': __health_services | map(attribute='name') | list,
                  'server': (__health_services | selectattr('name', 'eq', 'health') | first).expected_status,
                  'supabase': __health_supabase}} | to_json }}}}"
"""


@needs_ansible
@pytest.mark.parametrize("enabled", [False, True])
def test_health_role_waits_for_the_server_and_reports_supabase_when_enabled(tmp_path, enabled):
    play = tmp_path / "play.yml"
    play.write_text(HEALTH_VARS_PLAY.format(repo=REPO))
    endpoint = {"host": "127.0.0.1", "port": 1, "sslmode": "disable", "sslrootcert": "", "mode": "container"}
    values = {
        "cmx_supabase_enabled": enabled,
        "cmx_supabase_api_port": 54999,
        "cmx_endpoints": {
            "postgres": endpoint,
            "pgbouncer": endpoint,
            "redis": {**endpoint, "tls": False, "ca_file": ""},
            "s3": {
                **endpoint,
                "endpoint": "http://127.0.0.1:1",
                "health_path": "/healthz",
                "addressing": "path",
                "ca_file": "",
            },
        },
        "cmx_bind_address": "127.0.0.1",
        "cmx_project_name": "cmxsb",
        "cmx_health_enabled": True,
        "cmx_health_port": 58080,
        "cmx_postgres_user": "u",
        "cmx_postgres_password": "p",
        "cmx_postgres_db": "d",
        "cmx_redis_password": "r",
        "cmx_s3_bucket": "b",
        "cmx_s3_access_key": "a",
        "cmx_s3_secret_key": "s",
    }
    (tmp_path / "values.json").write_text(json.dumps(values))
    done = subprocess.run(
        [
            REPO / ".venv" / "bin" / "ansible-playbook",
            "-i",
            "localhost,",
            play,
            "-e",
            f"@{tmp_path}/values.json",
            "-e",
            "ansible_connection=local",
            "-e",
            f"ansible_python_interpreter={sys.executable}",
        ],
        cwd=REPO,
        env={**ansible_env(), "ANSIBLE_STDOUT_CALLBACK": "json"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads(done.stdout)["plays"][0]["tasks"][0]["hosts"]["localhost"]["msg"]
    result = json.loads(result) if isinstance(result, str) else result
    # The wait never includes Supabase (it starts after the health stage) ...
    assert result["wait"] == ["database", "pgbouncer", "redis", "storage", "health"]
    if enabled:
        # ... so /health may still say 503 there; the supabase stage waits until it reports Supabase up.
        assert result["server"] == [200, 503]
        assert result["supabase"] == [
            {
                "name": "supabase",
                "type": "http",
                "url": "http://127.0.0.1:54999/rest/v1/",
                "expected_status": [200, 401],
            }
        ]
    else:
        assert result["server"] == [200] and result["supabase"] == []


SUPABASE_WAIT_PLAY = """\
- name: The supabase role's last start step only
  hosts: all
  gather_facts: false
  tasks:
    - name: Wait until GET /health reports Supabase up
      ansible.builtin.include_role:
        name: supabase
        tasks_from: health
"""


def _supabase_wait(tmp_path: Path, health_port: int) -> subprocess.CompletedProcess:
    tmp_path.mkdir()
    play = tmp_path / "play.yml"
    play.write_text(SUPABASE_WAIT_PLAY)
    extra = {"cmx_health_port": health_port, "cmx_bind_address": "127.0.0.1", "supabase_wait_timeout": 2}
    (tmp_path / "values.json").write_text(json.dumps(extra))
    return subprocess.run(
        [
            REPO / ".venv" / "bin" / "ansible-playbook",
            *("-i", REPO / "inventories" / "dev", play, "-e", f"@{tmp_path}/values.json"),
            *("-e", "ansible_connection=local", "-e", f"ansible_python_interpreter={sys.executable}"),
        ],
        cwd=REPO,
        env=ansible_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )


@needs_ansible
def test_supabase_start_ends_when_health_reports_supabase_up(tmp_path):
    """roles/supabase/tasks/health.yml against a real /health server: it waits for the "supabase" entry, not
    for the whole report (the other services are not configured here, so /health is 503 throughout)."""
    with KongStandIn() as kong:
        env = {"HEALTH_SUPABASE_URL": f"http://127.0.0.1:{kong.port}/rest/v1/", "HEALTH_BIND": "127.0.0.1"}
        with RunningServer({**env, "HEALTH_PORT": "0", "HEALTH_QUIET": "1", "HEALTH_CACHE_MS": "0"}) as srv:
            done = _supabase_wait(tmp_path / "up", srv.port)
            assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
            assert "Wait until GET /health reports Supabase up" in done.stdout
            kong.close()
            done = _supabase_wait(tmp_path / "down", srv.port)
            assert done.returncode == 2, done.stdout[-3000:]
            assert "Supabase answers on the host, but GET http://127.0.0.1:" in done.stdout
    # No "supabase" entry in /health (a stack rendered before Supabase was enabled): nothing to wait for.
    with RunningServer({"HEALTH_BIND": "127.0.0.1", "HEALTH_PORT": "0", "HEALTH_QUIET": "1"}) as srv:
        done = _supabase_wait(tmp_path / "absent", srv.port)
    assert done.returncode == 0, done.stdout[-3000:]
    assert "skipped=1" in done.stdout and "rescued=0" in done.stdout
