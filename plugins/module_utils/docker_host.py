"""What a Docker host has, asked in one go: engine, Compose v2, image build tools, OS, init system,
the Debian mirror of its apt sources, its architecture and its images.

Plain Python (subprocess, /etc/os-release, the Docker socket), unit-tested; plugins/modules/cmx_docker_host.py
wraps it. One module call instead of a command per question keeps a converge with nothing to change fast;
the docker_host role publishes the result and the images role reuses it.
"""

from __future__ import annotations

import http.client
import importlib.util
import json
import os
import platform
import shutil
import socket
import subprocess

from ansible_collections.cleanmatex.infra.plugins.module_utils.apt_sources import find_mirror, read_sources
from ansible_collections.cleanmatex.infra.plugins.module_utils.ports import check_ports

BUILD_TOOLS = ("mmdebstrap",)
# Python libraries the collection's modules import on the host (PostgreSQL clients).
PYTHON_MODULES = ("psycopg2",)
DAEMON_JSON = "/etc/docker/daemon.json"
DEFAULT_DOCKER_HOST = "unix:///var/run/docker.sock"


def _run(argv: list[str], timeout: float, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False, env=env)
    except FileNotFoundError:
        return 127, "", f"{argv[0]}: command not found"
    except subprocess.TimeoutExpired:
        return 124, "", f"`{' '.join(argv)}` did not answer within {timeout:g} s"
    return done.returncode, done.stdout.strip(), done.stderr.strip()


def first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else ""


def read_os_release(path: str = "/etc/os-release") -> dict[str, str]:
    values: dict[str, str] = {}
    try:
        with open(path, encoding="utf-8") as handle:
            for line in handle:
                key, sep, value = line.strip().partition("=")
                if sep and key and not key.startswith("#"):
                    values[key] = value.strip().strip('"')
    except OSError:
        pass
    return values


def os_family(release: dict[str, str]) -> str:
    """'Debian' for Debian and its derivatives (ID or ID_LIKE), else the ID as given."""
    ids = {release.get("ID", "")} | set(release.get("ID_LIKE", "").split())
    return "Debian" if ids & {"debian", "ubuntu"} else release.get("ID", "unknown")


def pid1_is_systemd(comm_path: str = "/proc/1/comm") -> bool:
    try:
        with open(comm_path, encoding="utf-8") as handle:
            return handle.read().strip() == "systemd"
    except OSError:
        return False


# Environments where a dockerd started in the background (no supervisor) is acceptable: a laptop or CI box
# whose engine nothing else manages, and whose next converge starts it again.
BACKGROUND_DOCKERD_ENVIRONMENTS = ("dev", "ci")


def docker_service_enabled(timeout: float = 15.0) -> bool | None:
    """Whether systemd starts docker.service at boot (`systemctl is-enabled`); None without systemctl."""
    rc, out, _err = _run(["systemctl", "is-enabled", "docker.service"], timeout)
    if rc == 127:
        return None
    return rc == 0 and out.strip() in ("enabled", "enabled-runtime", "static", "alias")


def dockerd_plan(
    engine_ok: bool, systemd: bool, service_enabled: bool | None, environment: str, host: str
) -> dict[str, str]:
    """How the Docker engine is (to be) run here, so that something restarts it after a crash or reboot.

    action: 'none' (nothing to do), 'systemd' (systemctl enable --now docker: systemd restarts it and starts
    it at boot), 'background' (setsid nohup dockerd: dev/ci only, the next converge starts it again) or
    'refuse' (no systemd outside dev/ci: the caller stops with `message`).
    """
    if systemd:
        if engine_ok and service_enabled:
            return {"action": "none", "message": ""}
        return {
            "action": "systemd",
            "message": f"dockerd on {host} is started and enabled at boot by systemd (docker.service)",
        }
    if engine_ok:
        return {"action": "none", "message": ""}
    if environment in BACKGROUND_DOCKERD_ENVIRONMENTS:
        return {
            "action": "background",
            "message": f"dockerd on {host} is started in the background ({environment}: nothing restarts it "
            "after a crash or a reboot; the next converge starts it again)",
        }
    return {
        "action": "refuse",
        "message": f"dockerd is not running on {host} and this host has no systemd: in "
        f"{environment or 'an unnamed'} environment the playbook does not start dockerd in the background, "
        "where nothing would restart it after a crash or a reboot. Fix: run the Docker engine under a "
        "service manager that restarts it (on a server with systemd: apt-get install docker.io && systemctl "
        "enable --now docker), start it and re-run; only a throwaway machine may use cmx_environment dev "
        "or ci.",
    }


def rotate_log(path: str, max_bytes: int, keep: int) -> bool:
    """Copy-and-truncate rotation of a log a running process appends to (dockerd started with `>> log`).

    When `path` is larger than `max_bytes`: path.<keep-1> -> path.<keep>, ..., path -> path.1 (a copy), then
    `path` is truncated in place, so the writer (O_APPEND) goes on writing at its start. At most `keep` old
    files are kept. True when it rotated."""
    try:
        size = os.path.getsize(path)
    except OSError:
        return False
    if size <= max_bytes or keep < 1:
        return False
    for number in range(keep - 1, 0, -1):
        older = f"{path}.{number}"
        if os.path.exists(older):
            os.replace(older, f"{path}.{number + 1}")
    shutil.copy2(path, f"{path}.1")
    with open(path, "r+b") as handle:
        handle.truncate(0)
    return True


class _UnixHTTPConnection(http.client.HTTPConnection):
    """HTTP over a Unix socket (the Docker Engine API)."""

    def __init__(self, path: str, timeout: float = 10):
        super().__init__("localhost", timeout=timeout)
        self._socket_path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self._socket_path)


def docker_image_tags(docker_host: str, timeout: float = 10) -> tuple[list[str] | None, str]:
    """(['repo:tag', ...], '') from the Docker Engine API (GET /images/json), or (None, reason).

    Only unix:// sockets are read; anything else is left to the caller (community.docker).
    """
    if not docker_host.startswith("unix://"):
        return None, f"not a unix socket: {docker_host}"
    path = docker_host[len("unix://") :]
    try:
        conn = _UnixHTTPConnection(path, timeout)
        try:
            conn.request("GET", "/images/json")
            response = conn.getresponse()
            body = response.read()
        finally:
            conn.close()
    except OSError as exc:
        return None, f"{docker_host}: {exc}"
    if response.status != 200:
        return None, f"{docker_host}: HTTP {response.status} {body[:200]!r}"
    try:
        images = json.loads(body)
    except ValueError as exc:
        return None, f"{docker_host}: invalid JSON ({exc})"
    tags = sorted(
        {tag for image in images for tag in (image.get("RepoTags") or []) if tag != "<none>:<none>"}
    )
    return tags, ""


def probe(
    timeout: float = 15.0,
    apt_dir: str = "/etc/apt",
    docker_host: str | None = None,
    environment: str = "",
    host: str = "this host",
) -> dict:
    """Everything the docker_host and images roles ask about the host. docker_host overrides DOCKER_HOST;
    environment and host (the inventory's names) go into RV(dockerd_plan)."""
    env = {**os.environ, "DOCKER_HOST": docker_host} if docker_host else None
    daemon = docker_host or os.environ.get("DOCKER_HOST") or DEFAULT_DOCKER_HOST
    engine_rc, engine_out, engine_err = _run(
        ["docker", "version", "--format", "{{.Server.Version}}"], timeout, env
    )
    compose_rc, compose_out, compose_err = _run(["docker", "compose", "version", "--short"], timeout, env)
    release = read_os_release()
    mirror, mirror_file = find_mirror(read_sources(apt_dir))
    images, images_error = docker_image_tags(daemon, timeout)
    engine_ok = engine_rc == 0 and bool(engine_out)
    systemd = pid1_is_systemd()
    service_enabled = docker_service_enabled(timeout) if systemd else None
    return {
        "dockerd_plan": dockerd_plan(engine_ok, systemd, service_enabled, environment, host),
        "docker_service_enabled": service_enabled,
        "engine_ok": engine_ok,
        "engine_version": engine_out if engine_rc == 0 else "",
        "engine_error": "" if engine_rc == 0 else first_line(engine_err or engine_out) or f"rc={engine_rc}",
        "docker_cli": shutil.which("docker") or "",
        "dockerd": shutil.which("dockerd") or "",
        "compose_ok": compose_rc == 0 and bool(compose_out),
        "compose_version": compose_out if compose_rc == 0 else "",
        "compose_error": ""
        if compose_rc == 0
        else first_line(compose_err or compose_out) or f"rc={compose_rc}",
        "build_tools": {tool: shutil.which(tool) or "" for tool in BUILD_TOOLS},
        "uid": os.geteuid(),
        "os_id": release.get("ID", "unknown"),
        "os_family": os_family(release),
        "os_name": release.get("PRETTY_NAME", release.get("ID", "unknown")),
        "systemd": systemd,
        "arch": platform.machine(),
        "mirror": mirror,
        "mirror_file": mirror_file,
        "images": images,
        "images_error": images_error,
        "python_modules": {name: importlib.util.find_spec(name) is not None for name in PYTHON_MODULES},
        "daemon_settings": read_daemon_settings(),
    }


def read_daemon_settings(path: str = DAEMON_JSON) -> dict | None:
    """dockerd's configuration file as a dict: {} when there is none, None when it is not a JSON object."""
    try:
        with open(path, encoding="utf-8") as handle:
            settings = json.load(handle)
    except FileNotFoundError:
        return {}
    except (OSError, ValueError):
        return None
    return settings if isinstance(settings, dict) else None


# Shared by the cmx_docker_host module and its action plugin.
ARGUMENT_SPEC = {
    "timeout": {"type": "float", "default": 15},
    "apt_dir": {"type": "path", "default": "/etc/apt"},
    "docker_host": {"type": "str"},
    "warnings": {"type": "list", "elements": "str", "default": []},
    "ports": {
        "type": "list",
        "elements": "dict",
        "default": [],
        "options": {
            "service": {"type": "str", "required": True},
            "port": {"type": "int", "required": True},
            "bind_address": {"type": "str"},
            "variable": {"type": "str"},
        },
    },
    "project": {"type": "str"},
    "bind_address": {"type": "str", "default": "127.0.0.1"},
    "address_variable": {"type": "str", "default": "cmx_bind_address"},
    "environment": {"type": "str", "default": ""},
    "inventory_host": {"type": "str", "default": "this host"},
    "dockerd_log": {"type": "path"},
    "dockerd_log_max_bytes": {"type": "int", "default": 52428800},
    "dockerd_log_keep": {"type": "int", "default": 3},
}


def task_result(params: dict, check_mode: bool) -> dict:
    """The module's result: the probe, the rotated dockerd log, the host ports' status and the warnings."""
    warnings = list(params["warnings"])
    host = probe(
        params["timeout"],
        params["apt_dir"],
        params["docker_host"],
        params["environment"],
        params["inventory_host"],
    )
    rotated = False
    if params["dockerd_log"] and not host["systemd"] and not check_mode:
        rotated = rotate_log(
            params["dockerd_log"], params["dockerd_log_max_bytes"], params["dockerd_log_keep"]
        )
    statuses = []
    if params["ports"] and host["engine_ok"]:  # without an engine the role installs one and asks again
        env = {**os.environ, "DOCKER_HOST": params["docker_host"]} if params["docker_host"] else None
        statuses, port_warnings = check_ports(
            params["ports"],
            project=params["project"],
            default_bind=params["bind_address"],
            run=lambda argv: _run(argv, params["timeout"], env),
            address_variable=params["address_variable"],
        )
        warnings += port_warnings
    return {
        "changed": rotated,
        "dockerd_log_rotated": rotated,
        "ports": [status.as_dict() for status in statuses],
        "port_problems": [s.message for s in statuses if s.status in ("conflict", "error")],
        "warnings": warnings,
        **host,
    }
