"""What a Docker host has, asked in one go: engine, Compose v2, image build tools, OS, init system,
the Debian mirror of its apt sources, its architecture and its images.

Plain Python (subprocess, /etc/os-release, the Docker socket), unit-tested; plugins/modules/cmx_docker_host.py
wraps it. One module call instead of a command per question keeps a converge with nothing to change fast;
the docker_host role publishes the result and the images role reuses it.
"""

from __future__ import annotations

import http.client
import json
import os
import platform
import shutil
import socket
import subprocess

from ansible_collections.cleanmatex.infra.plugins.module_utils.apt_sources import find_mirror, read_sources

BUILD_TOOLS = ("mmdebstrap",)
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


def probe(timeout: float = 15.0, apt_dir: str = "/etc/apt", docker_host: str | None = None) -> dict:
    """Everything the docker_host and images roles ask about the host. docker_host overrides DOCKER_HOST."""
    env = {**os.environ, "DOCKER_HOST": docker_host} if docker_host else None
    daemon = docker_host or os.environ.get("DOCKER_HOST") or DEFAULT_DOCKER_HOST
    engine_rc, engine_out, engine_err = _run(
        ["docker", "version", "--format", "{{.Server.Version}}"], timeout, env
    )
    compose_rc, compose_out, compose_err = _run(["docker", "compose", "version", "--short"], timeout, env)
    release = read_os_release()
    mirror, mirror_file = find_mirror(read_sources(apt_dir))
    images, images_error = docker_image_tags(daemon, timeout)
    return {
        "engine_ok": engine_rc == 0 and bool(engine_out),
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
        "systemd": pid1_is_systemd(),
        "arch": platform.machine(),
        "mirror": mirror,
        "mirror_file": mirror_file,
        "images": images,
        "images_error": images_error,
    }
