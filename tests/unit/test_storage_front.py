"""storage_front.py (the SeaweedFS image's front door): Host parsing, and the real process forwarding to a
real HTTP server it runs as its child — 403 for a foreign Host, byte-for-byte forwarding otherwise, the
child's exit status passed on, and no child at all when a listener cannot be opened."""

from __future__ import annotations

import contextlib
import http.client
import importlib.util
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from test_probes_support import free_port, wait_for

SCRIPT = Path(__file__).parents[2] / "roles" / "images" / "files" / "seaweedfs" / "storage_front.py"
_spec = importlib.util.spec_from_file_location("storage_front", SCRIPT)
front = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(front)


@pytest.mark.parametrize(
    ("header", "name"),
    [
        ("localhost:9001", "localhost"),
        ("LOCALHOST", "localhost"),
        ("127.0.0.1:39001", "127.0.0.1"),
        ("[::1]:9001", "::1"),
        ("[::1]", "::1"),
        (" evil.example:9001 ", "evil.example"),
        ("[broken", ""),
    ],
)
def test_host_name(header, name):
    assert front.host_name(header) == name


def test_host_allowed_reads_the_host_header_of_the_head():
    allowed = frozenset({"localhost", "127.0.0.1"})
    assert front.host_allowed(b"GET / HTTP/1.1\r\nhOsT: localhost:9001\r\nAccept: */*\r\n\r\n", allowed)
    assert not front.host_allowed(b"GET / HTTP/1.1\r\nHost: localhost.evil.example\r\n\r\n", allowed)
    assert not front.host_allowed(b"GET / HTTP/1.0\r\nAccept: */*\r\n\r\n", allowed)
    # A header named like Host in the request line's place does not count.
    assert not front.host_allowed(b"Host: localhost\r\nX: y\r\n\r\n", allowed)


def test_parse_args_pairs_listeners_with_their_host_lists():
    args = front.parse_args(
        [
            "--forward=0.0.0.0:9000=127.0.0.1:8333",
            "--forward=0.0.0.0:23646=127.0.0.1:23647",
            "--hosts=23646=localhost,::1",
            "--",
            "mini",
            "-dir=/data",
        ]
    )
    assert args.command == ["mini", "-dir=/data"]
    assert args.forwards == [
        (("0.0.0.0", 9000), ("127.0.0.1", 8333), None),
        (("0.0.0.0", 23646), ("127.0.0.1", 23647), frozenset({"localhost", "::1"})),
    ]
    with pytest.raises(ValueError, match="HOST:PORT"):
        front.parse_args(["--forward=9000=127.0.0.1:8333"])


def _get(port: int, host_header: str | None) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.putrequest("GET", "/", skip_host=True)
        if host_header is not None:
            conn.putheader("Host", host_header)
        conn.endheaders()
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def _answers(port: int) -> bool:
    try:
        return _get(port, "localhost")[0] == 200
    except OSError:
        return False


@pytest.fixture
def running_front(tmp_path):
    (tmp_path / "marker.txt").write_text("served by the child")
    checked, open_port, backend = free_port(), free_port(), free_port()
    argv = [sys.executable, str(SCRIPT), f"--forward=127.0.0.1:{checked}=127.0.0.1:{backend}"]
    argv += [f"--forward=127.0.0.1:{open_port}=127.0.0.1:{backend}", f"--hosts={checked}=localhost,127.0.0.1"]
    argv += [
        "--",
        sys.executable,
        "-m",
        "http.server",
        str(backend),
        "--bind",
        "127.0.0.1",
        "-d",
        str(tmp_path),
    ]
    # A session of its own: the cleanup kills the front and its child together (no orphaned http.server).
    process = subprocess.Popen(
        argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    try:
        wait_for(lambda: _answers(checked), what="the front forwarding to its child")
        yield process, checked, open_port, backend
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


def test_front_forwards_known_hosts_and_refuses_foreign_ones(running_front):
    _, checked, open_port, _ = running_front
    status, body = _get(checked, "localhost:1234")
    assert status == 200 and b"marker.txt" in body
    assert _get(checked, "127.0.0.1")[0] == 200
    status, body = _get(checked, "rebind.evil.example:1234")
    assert status == 403 and b"unknown Host" in body
    assert _get(checked, None)[0] == 403
    # The listener without a host list forwards whatever the Host says (S3 signs its Host header itself).
    status, body = _get(open_port, "storage:9000")
    assert status == 200 and b"marker.txt" in body


def test_front_passes_sigterm_to_its_child_and_exits_with_its_status(running_front):
    process, checked, _, backend = running_front
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=10) == 128 + signal.SIGTERM
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", backend), timeout=2):
        pass
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", checked), timeout=2):
        pass


def test_front_with_a_taken_port_starts_no_child(tmp_path):
    marker = tmp_path / "child-ran"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [
                sys.executable,
                str(SCRIPT),
                f"--forward=127.0.0.1:{port}=127.0.0.1:1",
                "--",
                "touch",
                str(marker),
            ],
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert result.returncode == 1
    assert "cannot listen" in result.stderr
    assert not marker.exists()
