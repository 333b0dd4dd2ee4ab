# Copyright: CleanMateX
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The stack's status: one line per service (container, image, server version, URL, health, uptime).

Read from the rendered stack folder (compose .env, secrets/) and the Docker engine; nothing is changed.
Used by the cmx_stack_status module (playbooks/status.yml) and bin/cmx-status. Credentials appear in the
URLs only when asked (dev's documented defaults); never otherwise.
"""

from __future__ import annotations

import datetime
import json
import os
import re
import subprocess
import urllib.parse

# Which command prints the server's version inside each service's container, and how to read it.
VERSION_COMMANDS = {
    "postgres": (["postgres", "--version"], r"\(PostgreSQL\) (\S+)", "PostgreSQL {}"),
    "pgbouncer": (["pgbouncer", "--version"], r"PgBouncer (\S+)", "PgBouncer {}"),
    "redis": (["redis-server", "--version"], r"v=(\S+)", "Redis {}"),
    "storage": (["weed", "version"], r"version \S+ (\S+)", "SeaweedFS {}"),
    "redis-commander": (
        ["node", "-p", "require('redis-commander/package.json').version"],
        r"^(\d\S*)",
        "Redis Commander {}",
    ),
}
# Service order in the report.
ORDER = ["postgres", "pgbouncer", "redis", "storage", "health", "redis-commander"]


class StatusError(Exception):
    pass


def read_env(path: str) -> dict:
    values = {}
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            line = line.strip()
            if line and not line.startswith("#") and "=" in line:
                key, _, value = line.partition("=")
                values[key.strip()] = value.strip()
    return values


def _secret(project_dir: str, name: str) -> str:
    try:
        with open(os.path.join(project_dir, "secrets", name), encoding="utf-8") as fh:
            return fh.read()
    except OSError:
        return ""


def urls(stack: dict, project_dir: str, show_credentials: bool) -> dict:
    """Host URL per compose service, from the compose .env; passwords only when show_credentials."""
    bind = stack.get("CMX_BIND_ADDRESS") or "127.0.0.1"
    host = "localhost" if bind in ("127.0.0.1", "0.0.0.0") else bind
    user = urllib.parse.quote(stack.get("POSTGRES_USER", ""), safe="")
    db = urllib.parse.quote(stack.get("POSTGRES_DB", ""), safe="")
    pg_auth = user
    redis_auth = ""
    if show_credentials:
        pg_auth = f"{user}:{urllib.parse.quote(_secret(project_dir, 'postgres_password'), safe='')}"
        redis_password = _secret(project_dir, "redis_password")
        redis_auth = f":{urllib.parse.quote(redis_password, safe='')}@" if redis_password else ""
    bucket = stack.get("S3_BUCKET", "")
    found = {
        "postgres": f"postgresql://{pg_auth}@{host}:{stack.get('POSTGRES_PORT')}/{db}",
        "pgbouncer": f"postgresql://{pg_auth}@{host}:{stack.get('PGBOUNCER_PORT')}/{db}",
        "redis": f"redis://{redis_auth}{host}:{stack.get('REDIS_PORT')}",
        "storage": f"http://{host}:{stack.get('S3_PORT')} bucket {bucket}",
        "health": f"http://{host}:{stack.get('HEALTH_PORT')}/health",
        "redis-commander": f"http://{host}:{stack.get('REDIS_COMMANDER_PORT')}",
    }
    console = stack.get("S3_CONSOLE_PORT")
    if console:
        found["storage"] += f", console http://{host}:{console}"
    if show_credentials:
        access, secret = _secret(project_dir, "s3_access_key"), _secret(project_dir, "s3_secret_key")
        found["storage"] += f" (access key {access}, secret key {secret}"
        console_user, console_password = console_login(project_dir)
        found["storage"] += (
            f"; console login {console_user} / {console_password})" if console_password else ")"
        )
        commander_user, commander_password = redis_commander_login(project_dir)
        if commander_password:
            found["redis-commander"] += f" (login {commander_user} / {commander_password})"
    return found


def console_login(project_dir: str) -> tuple[str, str]:
    """(user, password) of the S3 console, from the rendered SeaweedFS security.toml; ('', '') if none."""
    try:
        import tomllib
    except ImportError:  # Python < 3.11: no login shown
        return "", ""
    try:
        admin = tomllib.loads(_secret(project_dir, "seaweedfs_security.toml")).get("admin", {})
    except tomllib.TOMLDecodeError:
        return "", ""
    return str(admin.get("user", "")), str(admin.get("password", ""))


def redis_commander_login(project_dir: str) -> tuple[str, str]:
    """(user, password) of Redis Commander, from its rendered JSON config; ('', '') if none."""
    try:
        auth = (
            json.loads(_secret(project_dir, "redis-commander.json") or "{}")
            .get("server", {})
            .get("httpAuth", {})
        )
    except ValueError:
        return "", ""
    return str(auth.get("username", "")), str(auth.get("password", ""))


def uptime(started_at: str, now: datetime.datetime | None = None) -> int | None:
    """Seconds since Docker's State.StartedAt (RFC 3339 with nanoseconds)."""
    match = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)", started_at or "")
    if not match or started_at.startswith("0001"):
        return None
    started = datetime.datetime.fromisoformat(match.group(1)).replace(tzinfo=datetime.UTC)
    now = now or datetime.datetime.now(datetime.UTC)
    return max(0, int((now - started).total_seconds()))


def human_duration(seconds: int | None) -> str:
    if seconds is None:
        return "-"
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    return f"{minutes}m {secs}s" if minutes else f"{secs}s"


def parse_version(service: str, output: str, health_version: str = "") -> str | None:
    if service == "health":
        return f"cmx-health {health_version}" if health_version else None
    spec = VERSION_COMMANDS.get(service)
    if not spec:
        return None
    match = re.search(spec[1], output, re.M)
    return spec[2].format(match.group(1)) if match else None


def _docker(docker: str, *args: str, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run([docker, *args], capture_output=True, text=True, timeout=timeout)


def server_version(docker: str, container: str, service: str, running: bool, env: list) -> str | None:
    if service == "health":
        values = dict(item.split("=", 1) for item in env if "=" in item)
        return parse_version("health", "", values.get("HEALTH_VERSION", ""))
    spec = VERSION_COMMANDS.get(service)
    if not spec or not running:
        return None
    done = _docker(docker, "exec", container, *spec[0])
    return parse_version(service, done.stdout + done.stderr) if done.returncode == 0 else None


# CMX_EXTERNAL_<SERVICE> in the compose .env (docs/external-services.md) -> the status row's service name.
EXTERNAL = {"POSTGRES": "postgres", "PGBOUNCER": "pgbouncer", "REDIS": "redis", "S3": "storage"}


def external_services(stack: dict) -> list[dict]:
    """One row per external service the rendered stack uses: no container, its endpoint as the URL
    (GET /health and bin/cmx health probe it)."""
    rows = []
    for key, service in EXTERNAL.items():
        endpoint = stack.get(f"CMX_EXTERNAL_{key}")
        if endpoint:
            rows.append(
                {
                    "service": service,
                    "container": "external",
                    "image": None,
                    "version": None,
                    "url": endpoint,
                    "health": "external",
                    "uptime_seconds": None,
                    "uptime": "-",
                }
            )
    return rows


def collect(project_dir: str, show_credentials: bool = False, docker: str = "docker") -> dict:
    """The status report of the stack rendered in project_dir (raises StatusError when there is none)."""
    env_path = os.path.join(project_dir, ".env")
    if not os.path.isfile(env_path):
        raise StatusError(
            f"no rendered stack in {project_dir}: run `bin/cmx up` (ansible-playbook dev.yml) first"
        )
    stack = read_env(env_path)
    project = stack.get("CMX_PROJECT_NAME", "")
    listed = _docker(docker, "ps", "-aq", "--filter", f"label=com.docker.compose.project={project}")
    if listed.returncode != 0:
        raise StatusError(f"docker ps failed: {listed.stderr.strip()}")
    ids = listed.stdout.split()
    details = json.loads(_docker(docker, "inspect", *ids).stdout) if ids else []
    service_urls = urls(stack, project_dir, show_credentials)
    services = []
    for item in details:
        service = item["Config"]["Labels"].get("com.docker.compose.service", "")
        state = item["State"]
        running = bool(state.get("Running"))
        seconds = uptime(state.get("StartedAt", "")) if running else None
        name = item["Name"].lstrip("/")
        services.append(
            {
                "service": service,
                "container": name,
                "image": item["Config"]["Image"],
                "version": server_version(docker, name, service, running, item["Config"].get("Env") or []),
                "url": service_urls.get(service),
                "health": (state.get("Health") or {}).get("Status") or state.get("Status", "unknown"),
                "uptime_seconds": seconds,
                "uptime": human_duration(seconds),
            }
        )
    services += external_services(stack)
    services.sort(
        key=lambda s: (ORDER.index(s["service"]) if s["service"] in ORDER else len(ORDER), s["service"])
    )
    return {"project": project, "project_dir": project_dir, "services": services}


def lines(report: dict, environment: str = "") -> list[str]:
    """The report as aligned text lines: a heading, then one line per service."""
    where = f"{environment}, " if environment else ""
    head = f"CleanMateX stack '{report['project']}' ({where}{report['project_dir']})"
    if not report["services"]:
        return [head, "  no containers: the stack is down (bin/cmx up starts it)"]
    columns = ["service", "container", "image", "version", "health", "uptime", "url"]
    rows = [[str(s.get(c) or "-") for c in columns] for s in report["services"]]
    widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(columns)]
    out = [head, "  " + "  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip()]
    out += ["  " + "  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    return out
