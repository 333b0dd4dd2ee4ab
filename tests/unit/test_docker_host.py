"""Docker host probe: OS family from os-release, PID 1, a missing docker CLI reported, not raised, the images
listed over the Docker socket, and the apt mirror, architecture and images returned by cmx_docker_host."""

from __future__ import annotations

import http.server
import json
import os
import platform
import socketserver
import subprocess
import sys
import threading

import pytest
from ansible_collections.cleanmatex.infra.plugins.module_utils import docker_host

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), os.pardir, os.pardir))
MODULE = "ansible_collections.cleanmatex.infra.plugins.modules.cmx_docker_host"


def test_os_family_recognises_debian_and_derivatives(tmp_path):
    (tmp_path / "debian").write_text('ID=debian\nPRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\n')
    (tmp_path / "mint").write_text('ID=linuxmint\nID_LIKE="ubuntu debian"\n')
    (tmp_path / "fedora").write_text("ID=fedora\n")
    assert docker_host.os_family(docker_host.read_os_release(str(tmp_path / "debian"))) == "Debian"
    assert docker_host.os_family(docker_host.read_os_release(str(tmp_path / "mint"))) == "Debian"
    assert docker_host.os_family(docker_host.read_os_release(str(tmp_path / "fedora"))) == "fedora"
    assert docker_host.read_os_release(str(tmp_path / "missing")) == {}


def test_pid1_check_reads_comm(tmp_path):
    (tmp_path / "comm").write_text("systemd\n")
    assert docker_host.pid1_is_systemd(str(tmp_path / "comm"))
    (tmp_path / "comm").write_text("bash\n")
    assert not docker_host.pid1_is_systemd(str(tmp_path / "comm"))


def test_probe_reports_a_missing_docker_cli(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-daemon.sock")  # never the real daemon
    result = docker_host.probe(timeout=5)
    assert result["engine_ok"] is False and result["compose_ok"] is False
    assert "command not found" in result["engine_error"]
    assert result["docker_cli"] == "" and result["build_tools"] == {"mmdebstrap": ""}


# --------------------------------------------------------------------------- a fake Docker socket


class _Handler(http.server.BaseHTTPRequestHandler):
    payload = b"[]"
    status = 200

    def do_GET(self):
        self.send_response(self.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(self.payload)))
        self.end_headers()
        self.wfile.write(self.payload)

    def log_message(self, *args):
        pass


class _UnixServer(socketserver.UnixStreamServer):
    def get_request(self):
        request, _ = super().get_request()
        return request, ("local", 0)


@pytest.fixture
def docker_socket(tmp_path):
    path = str(tmp_path / "docker.sock")
    server = _UnixServer(path, _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Handler.status = 200
    _Handler.payload = json.dumps(
        [
            {"RepoTags": ["cmx/redis:8.0-abc", "redis:7-alpine"]},
            {"RepoTags": None},
            {"RepoTags": ["<none>:<none>"]},
        ]
    ).encode()
    yield path
    server.shutdown()
    server.server_close()


def test_docker_image_tags_over_unix_socket(docker_socket):
    tags, error = docker_host.docker_image_tags(f"unix://{docker_socket}")
    assert (tags, error) == (["cmx/redis:8.0-abc", "redis:7-alpine"], "")


def test_docker_image_tags_errors(docker_socket, tmp_path):
    tags, error = docker_host.docker_image_tags("tcp://127.0.0.1:2375")
    assert tags is None and "not a unix socket" in error
    tags, error = docker_host.docker_image_tags(f"unix://{tmp_path}/nothing.sock")
    assert tags is None and error
    _Handler.status = 500
    _Handler.payload = b"boom"
    tags, error = docker_host.docker_image_tags(f"unix://{docker_socket}")
    assert tags is None and "HTTP 500" in error


# --------------------------------------------------------------------------- what the images role reads


@pytest.fixture
def apt_dir(tmp_path):
    sources = tmp_path / "apt" / "sources.list.d" / "debian.sources"
    sources.parent.mkdir(parents=True)
    sources.write_text(
        "Types: deb\nURIs: http://mirror.example.invalid/debian/\nSuites: trixie\nComponents: main\n"
    )
    return str(tmp_path / "apt")


@pytest.fixture
def fake_docker(tmp_path, monkeypatch):
    """A docker CLI on PATH that answers every command with the DOCKER_HOST it was given."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "docker").write_text('#!/bin/sh\necho "${DOCKER_HOST:-unset}"\n')
    (bin_dir / "docker").chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    return str(bin_dir / "docker")


def test_probe_returns_mirror_arch_and_images(apt_dir, docker_socket, fake_docker):
    result = docker_host.probe(timeout=5, apt_dir=apt_dir, docker_host=f"unix://{docker_socket}")
    assert result["mirror"] == "http://mirror.example.invalid/debian"
    assert result["mirror_file"].endswith("debian.sources")
    assert result["arch"] == platform.machine()
    assert result["images"] == ["cmx/redis:8.0-abc", "redis:7-alpine"] and result["images_error"] == ""
    # The docker CLI asks the same daemon the images were listed from.
    assert result["engine_ok"] and result["engine_version"] == f"unix://{docker_socket}"
    assert result["compose_version"] == f"unix://{docker_socket}"
    assert result["docker_cli"] == fake_docker


def test_probe_reads_docker_host_from_the_environment(apt_dir, docker_socket, fake_docker, monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", f"unix://{docker_socket}")
    result = docker_host.probe(timeout=5, apt_dir=apt_dir)
    assert result["images"] == ["cmx/redis:8.0-abc", "redis:7-alpine"]
    monkeypatch.setenv("DOCKER_HOST", "tcp://127.0.0.1:2375")
    result = docker_host.probe(timeout=5, apt_dir=apt_dir)
    assert result["images"] is None and "not a unix socket" in result["images_error"]
    assert result["engine_version"] == "tcp://127.0.0.1:2375"


def test_probe_without_apt_sources(tmp_path, fake_docker):
    result = docker_host.probe(
        timeout=5, apt_dir=str(tmp_path / "missing"), docker_host="tcp://127.0.0.1:2375"
    )
    assert (result["mirror"], result["mirror_file"]) == ("", "")


def run_module(params):
    """cmx_docker_host in its own process, as Ansible runs it (warnings then land in the result)."""
    done = subprocess.run(
        [sys.executable, "-m", MODULE, json.dumps({"ANSIBLE_MODULE_ARGS": params})],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": os.path.join(REPO, ".collections")},
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout)


def test_module_returns_the_new_keys_and_warnings(apt_dir, docker_socket, fake_docker):
    result = run_module(
        {"apt_dir": apt_dir, "docker_host": f"unix://{docker_socket}", "warnings": ["MinIO is archived"]}
    )
    assert result["changed"] is False and not result.get("failed")
    # ansible-core 2.19 sends each warning as a structured event
    assert [w["event"]["msg"] for w in result["warnings"]] == ["MinIO is archived"]
    assert result["mirror"] == "http://mirror.example.invalid/debian"
    assert result["mirror_file"].endswith("debian.sources")
    assert result["arch"] == platform.machine()
    assert result["images"] == ["cmx/redis:8.0-abc", "redis:7-alpine"] and result["images_error"] == ""
    assert result["build_tools"] == {"mmdebstrap": ""}


def test_module_without_a_unix_socket(apt_dir, fake_docker):
    result = run_module({"apt_dir": apt_dir, "docker_host": "tcp://127.0.0.1:2375"})
    assert result["images"] is None and "not a unix socket" in result["images_error"]
    assert "warnings" not in result
