"""What a Docker host has, asked in one go: engine, Compose v2, image build tools, OS, init system.

Plain Python (subprocess + /etc/os-release), unit-tested; plugins/modules/cmx_docker_host.py wraps it.
One module call instead of a command per question keeps a converge with nothing to change fast.
"""

from __future__ import annotations

import os
import shutil
import subprocess

BUILD_TOOLS = ("mmdebstrap",)


def _run(argv: list[str], timeout: float) -> tuple[int, str, str]:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
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


def probe(timeout: float = 15.0) -> dict:
    engine_rc, engine_out, engine_err = _run(
        ["docker", "version", "--format", "{{.Server.Version}}"], timeout
    )
    compose_rc, compose_out, compose_err = _run(["docker", "compose", "version", "--short"], timeout)
    release = read_os_release()
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
    }
