"""Preflight port check (module_utils.ports, cmx_docker_host's ports option) with sockets bound here."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys

import pytest
from ansible_collections.cleanmatex.infra.plugins.module_utils import ports
from test_probes_support import docker_container, free_port, require_docker

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), os.pardir, os.pardir))


@pytest.fixture
def held_port():
    """A port held (LISTEN) by this test process on 127.0.0.1."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(1)
    yield sock.getsockname()[1]
    sock.close()


def spec(service, port, variable=None, bind_address=None):
    return {"service": service, "port": port, "variable": variable, "bind_address": bind_address}


def test_conflict_names_port_service_variable_and_our_pid(held_port):
    statuses, _ = ports.check_ports(
        [spec("postgres", held_port, "cmx_postgres_port")], project="cmx", use_docker=False
    )
    st = statuses[0]
    assert st.status == "conflict"
    assert st.message.startswith(f"port {held_port} (postgres) on 127.0.0.1 is in use by pid {os.getpid()} (")
    assert st.message.endswith("; set cmx_postgres_port in your inventory to a free port")
    assert f"pid {os.getpid()}" in st.holder


def test_free_port_is_free():
    statuses, _ = ports.check_ports([spec("redis", free_port(), "cmx_redis_port")], use_docker=False)
    assert statuses[0].status == "free" and statuses[0].message is None


def test_all_conflicts_are_listed(held_port):
    other = socket.socket()
    other.bind(("127.0.0.1", 0))
    other.listen(1)
    try:
        statuses, _ = ports.check_ports(
            [
                spec("postgres", held_port, "cmx_postgres_port"),
                spec("redis", free_port(), "cmx_redis_port"),
                spec("s3", other.getsockname()[1], "cmx_s3_port"),
            ],
            use_docker=False,
        )
    finally:
        other.close()
    assert [s.status for s in statuses] == ["conflict", "free", "conflict"]
    assert "cmx_s3_port" in statuses[2].message


def test_wildcard_bind_collides_with_loopback_listener(held_port):
    statuses, _ = ports.check_ports([spec("api", held_port, "cmx_api_port", "0.0.0.0")], use_docker=False)
    assert statuses[0].status == "conflict" and f"pid {os.getpid()}" in statuses[0].message


def test_same_port_twice_in_the_inventory():
    port = free_port()
    statuses, _ = ports.check_ports(
        [spec("redis", port, "cmx_redis_port"), spec("redis_commander", port, "cmx_redis_commander_port")],
        use_docker=False,
    )
    assert statuses[0].status == "free"
    assert statuses[1].status == "conflict"
    assert statuses[1].message == (
        f"port {port} (redis_commander) on 127.0.0.1 is also configured for redis; "
        "set cmx_redis_commander_port in your inventory to a free port"
    )


def test_address_not_on_this_host():
    # 192.0.2.1 is TEST-NET-1: never assigned here; bind() fails locally, nothing is sent
    statuses, _ = ports.check_ports(
        [spec("postgres", free_port(), "cmx_postgres_port", "192.0.2.1")], use_docker=False
    )
    assert statuses[0].status == "error"
    assert "cmx_bind_address" in statuses[0].message


def test_no_variable_gives_generic_hint(held_port):
    statuses, _ = ports.check_ports([spec("thing", held_port)], use_docker=False)
    assert statuses[0].message.endswith("choose another host port for thing")


# --------------------------------------------------------------------------- /proc


def test_proc_listening_socket_maps_to_our_pid(held_port):
    socks = ports.listening_sockets(held_port)
    assert [a for a, _ in socks] == ["127.0.0.1"]
    holders = ports.processes_for_inodes([i for _, i in socks])
    assert [h.pid for h in holders] == [os.getpid()]
    assert holders[0].cmdline


def test_proc_ipv6_listener():
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    sock = socket.socket(socket.AF_INET6)
    try:
        sock.bind(("::1", 0))
    except OSError:
        sock.close()
        pytest.skip("::1 not available")
    sock.listen(1)
    try:
        port = sock.getsockname()[1]
        assert [a for a, _ in ports.listening_sockets(port)] == ["::1"]
        statuses, _ = ports.check_ports([spec("api", port, "cmx_api_port", "::1")], use_docker=False)
        assert statuses[0].status == "conflict" and f"pid {os.getpid()}" in statuses[0].message
    finally:
        sock.close()


# --------------------------------------------------------------------------- docker


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0.0.0.0:5432->5432/tcp, :::5432->5432/tcp", [("0.0.0.0", 5432, 5432), ("::", 5432, 5432)]),
        ("127.0.0.1:9000-9001->9000-9001/tcp", [("127.0.0.1", 9000, 9001)]),
        ("[::]:6379->6379/tcp", [("::", 6379, 6379)]),
        ("5432/tcp", []),
        ("0.0.0.0:53->53/udp", []),
        ("", []),
    ],
)
def test_parse_docker_ports(text, expected):
    assert ports.parse_docker_ports(text) == expected


def test_parse_docker_ps_lines():
    out = "cmx-postgres\tcmx\t127.0.0.1:5432->5432/tcp\nlonely\t\t0.0.0.0:8080->80/tcp\nbroken line\n"
    pub = ports.parse_docker_ps(out)
    assert [(p.container, p.project, p.host_ip, p.start) for p in pub] == [
        ("cmx-postgres", "cmx", "127.0.0.1", 5432),
        ("lonely", None, "0.0.0.0", 8080),
    ]


def test_docker_container_of_our_project_is_fine_and_others_conflict():
    port = free_port()
    with docker_container(
        f"cmx-test-portcheck-{os.getpid()}",
        ["-p", f"127.0.0.1:{port}:8080"],
        ["/bin/busybox", "httpd", "-f", "-p", "8080"],
        project="cmxtest-ours",
    ) as name:
        entry = [spec("web", port, "cmx_web_port")]
        statuses, warnings = ports.check_ports(entry, project="cmxtest-ours")
        assert warnings == []
        assert statuses[0].status == "ours", statuses[0]
        assert statuses[0].containers == [name]

        statuses, _ = ports.check_ports(entry, project="someone-else")
        assert statuses[0].status == "conflict"
        assert statuses[0].message == (
            f"port {port} (web) on 127.0.0.1 is in use by docker container '{name}' of compose "
            "project 'cmxtest-ours'; set cmx_web_port in your inventory to a free port"
        )


def test_docker_unavailable_is_a_warning(held_port):
    statuses, warnings = ports.check_ports(
        [spec("postgres", held_port, "cmx_postgres_port")], run=lambda argv: (127, "", "docker: not found")
    )
    assert warnings and "docker ps failed" in warnings[0]
    assert statuses[0].status == "conflict"  # /proc still finds us


# --------------------------------------------------------------------------- the module in ansible


def ansible_adhoc(args: dict, check: bool = False):
    ansible = shutil.which("ansible", path=os.path.dirname(sys.executable)) or shutil.which("ansible")
    if not ansible:
        pytest.skip("ansible not installed")
    env = dict(
        os.environ,
        ANSIBLE_LOAD_CALLBACK_PLUGINS="1",
        ANSIBLE_STDOUT_CALLBACK="json",
        ANSIBLE_CONFIG=os.path.join(REPO, "ansible.cfg"),
    )
    argv = [ansible, "localhost", "-m", "cleanmatex.infra.cmx_docker_host", "-a", json.dumps(args)]
    if check:
        argv.append("--check")
    proc = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=180)
    data = json.loads(proc.stdout[proc.stdout.index("{") :])
    return proc.returncode, data["plays"][0]["tasks"][0]["hosts"]["localhost"]


def test_module_in_ansible_reports_every_conflict(held_port):
    require_docker()  # the module checks ports only once the engine answered
    free = free_port()
    rc, res = ansible_adhoc(
        {
            "project": "cmx",
            "ports": [
                {"service": "postgres", "port": held_port, "variable": "cmx_postgres_port"},
                {"service": "redis", "port": free, "variable": "cmx_redis_port"},
                {"service": "redis_commander", "port": free, "variable": "cmx_redis_commander_port"},
            ],
        },
        check=True,
    )
    assert rc == 0 and not res.get("failed"), res  # it describes; the preflight role decides
    problems = res["port_problems"]
    assert len(problems) == 2
    assert f"port {held_port} (postgres) on 127.0.0.1 is in use by pid {os.getpid()}" in problems[0]
    assert "set cmx_postgres_port in your inventory to a free port" in problems[0]
    assert "set cmx_redis_commander_port" in problems[1]
    assert [p["status"] for p in res["ports"]] == ["conflict", "free", "conflict"]


def test_module_in_ansible_passes_on_free_ports():
    require_docker()
    rc, res = ansible_adhoc(
        {"project": "cmx", "ports": [{"service": "redis", "port": free_port(), "variable": "cmx_redis_port"}]}
    )
    assert rc == 0, res
    assert res["port_problems"] == [] and res["changed"] is False
    assert [p["status"] for p in res["ports"]] == ["free"]
