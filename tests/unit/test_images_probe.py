"""Unit tests of the images role's probe module (plugins/modules/cmx_images_probe.py)."""

from __future__ import annotations

import http.server
import importlib.util
import json
import os
import socketserver
import threading

import pytest

MODULE_PATH = os.path.join(os.path.dirname(__file__), "..", "..", "plugins", "modules", "cmx_images_probe.py")
spec = importlib.util.spec_from_file_location("images_probe", MODULE_PATH)
probe = importlib.util.module_from_spec(spec)
spec.loader.exec_module(probe)


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_deb822_debian_mirror(tmp_path):
    write(
        tmp_path / "sources.list.d" / "debian.sources",
        "Types: deb\n"
        "# a comment\n"
        "URIs: http://mirror.example.invalid/debian/\n"
        "Suites: bookworm bookworm-updates\n"
        "Components: main\n"
        "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
        "\n"
        "Types: deb\n"
        "URIs: http://mirror.example.invalid/debian-security\n"
        "Suites: bookworm-security\n"
        "Components: main\n",
    )
    uri, source = probe.find_mirror(probe.read_sources(str(tmp_path)))
    assert uri == "http://mirror.example.invalid/debian"
    assert source.endswith("debian.sources")


def test_security_only_source_is_not_the_archive(tmp_path):
    write(
        tmp_path / "sources.list.d" / "a.sources",
        "Types: deb\nURIs: http://security.example.invalid/debian-security\n"
        "Suites: trixie-security\nComponents: main\n",
    )
    write(
        tmp_path / "sources.list",
        "deb [arch=amd64 signed-by=/k.gpg] https://ftp.example.invalid/debian trixie main\n",
    )
    assert probe.find_mirror(probe.read_sources(str(tmp_path)))[0] == "https://ftp.example.invalid/debian"


def test_one_line_format_skips_comments_deb_src_and_disabled(tmp_path):
    write(
        tmp_path / "sources.list",
        "# deb http://old.example.invalid/debian bookworm main\n"
        "deb-src http://src.example.invalid/debian bookworm main\n"
        "deb cdrom:[Debian]/ bookworm main\n"
        "deb http://ok.example.invalid/debian bookworm main contrib # trailing\n",
    )
    write(
        tmp_path / "sources.list.d" / "0off.sources",
        "Enabled: no\nTypes: deb\nURIs: http://off.example.invalid/debian\n"
        "Suites: bookworm\nComponents: main\n",
    )
    assert probe.find_mirror(probe.read_sources(str(tmp_path)))[0] == "http://ok.example.invalid/debian"


def test_ubuntu_host_without_debian_source(tmp_path):
    write(
        tmp_path / "sources.list.d" / "ubuntu.sources",
        "Types: deb\nURIs: http://archive.example.invalid/ubuntu\n"
        "Suites: noble noble-updates\nComponents: main\n",
    )
    assert probe.find_mirror(probe.read_sources(str(tmp_path))) == ("", "")


def test_fallback_on_debian_path(tmp_path):
    write(tmp_path / "sources.list.d" / "x.list", "deb http://m.example.invalid/debian custom-suite main\n")
    assert probe.find_mirror(probe.read_sources(str(tmp_path)))[0] == "http://m.example.invalid/debian"


def test_no_apt_config(tmp_path):
    assert probe.read_sources(str(tmp_path / "missing")) == []
    assert probe.find_mirror([]) == ("", "")


def test_deb822_continuation_lines():
    entries = probe.parse_deb822(
        "Types: deb\nURIs: http://a.invalid/debian\n http://b.invalid/debian\nSuites: trixie\n"
    )
    assert entries[0]["uris"] == ["http://a.invalid/debian", "http://b.invalid/debian"]


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
    yield path
    server.shutdown()
    server.server_close()


def test_docker_image_tags_over_unix_socket(docker_socket):
    _Handler.status = 200
    _Handler.payload = json.dumps(
        [
            {"RepoTags": ["cmx/redis:8.0-abc", "redis:7-alpine"]},
            {"RepoTags": None},
            {"RepoTags": ["<none>:<none>"]},
        ]
    ).encode()
    tags, error = probe.docker_image_tags(f"unix://{docker_socket}")
    assert (tags, error) == (["cmx/redis:8.0-abc", "redis:7-alpine"], "")


def test_docker_image_tags_errors(docker_socket, tmp_path):
    tags, error = probe.docker_image_tags("tcp://127.0.0.1:2375")
    assert tags is None and "not a unix socket" in error
    tags, error = probe.docker_image_tags(f"unix://{tmp_path}/nothing.sock")
    assert tags is None and error
    _Handler.status = 500
    _Handler.payload = b"boom"
    tags, error = probe.docker_image_tags(f"unix://{docker_socket}")
    assert tags is None and "HTTP 500" in error
