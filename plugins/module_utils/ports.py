# Copyright: CleanMateX
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Preflight host-port check: can every port the stack will publish be bound, and if not, who holds it?

A port is fine when it can be bound on its address, or when a running
container of our own compose project (label com.docker.compose.project)
publishes it - a re-run of the playbook must not trip over its own stack.

Holders are found in two ways: ``docker ps`` (containers publishing the
port, whoever owns them) and /proc/net/tcp{,6} LISTEN sockets mapped through
/proc/<pid>/fd to a pid, its comm and command line.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import os
import re
import socket
import subprocess
from dataclasses import asdict, dataclass, field

PROJECT_LABEL = "com.docker.compose.project"
_WILDCARDS = ("0.0.0.0", "::", "")
_TCP_LISTEN = "0A"


@dataclass
class Published:
    container: str
    project: str | None
    host_ip: str
    start: int
    end: int

    def covers(self, port: int) -> bool:
        return self.start <= port <= self.end


@dataclass
class Holder:
    pid: int
    comm: str
    cmdline: str

    def describe(self) -> str:
        cmd = " ".join((self.cmdline or self.comm).split())
        if len(cmd) > 120:
            cmd = cmd[:117] + "..."
        return f"pid {self.pid} ({cmd})"


@dataclass
class PortStatus:
    service: str
    port: int
    bind_address: str
    variable: str | None
    status: str  # free | ours | conflict | error
    holder: str | None = None
    message: str | None = None
    containers: list = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


# --------------------------------------------------------------------------- bind test


def try_bind(address: str, port: int) -> int:
    """0 when ``address:port`` can be bound (TCP, SO_REUSEADDR like a server), else the errno."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6 and address in ("::", ""):
            # a [::] bind also covers IPv4, as docker-proxy's does
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind((address, int(port)))
        return 0
    except OSError as exc:
        return exc.errno or errno.EADDRINUSE
    finally:
        sock.close()


# --------------------------------------------------------------------------- /proc


def _hex_to_ip(hexaddr: str) -> str:
    raw = bytes.fromhex(hexaddr)
    if len(raw) == 4:
        return socket.inet_ntop(socket.AF_INET, raw[::-1])
    # IPv6: four 32-bit words, each in host (little-endian) order
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))
    ip = ipaddress.IPv6Address(words)
    return str(ip.ipv4_mapped) if ip.ipv4_mapped else str(ip)


def listening_sockets(port: int, proc_root: str = "/proc") -> list[tuple[str, int]]:
    """[(local address, inode)] of TCP sockets in LISTEN state on ``port`` (this network namespace)."""
    found = []
    for name in ("tcp", "tcp6"):
        try:
            with open(os.path.join(proc_root, "net", name), encoding="ascii") as fh:
                lines = fh.read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            cols = line.split()
            if len(cols) < 10 or cols[3] != _TCP_LISTEN:
                continue
            addr, _, hexport = cols[1].partition(":")
            if int(hexport, 16) != int(port):
                continue
            try:
                found.append((_hex_to_ip(addr), int(cols[9])))
            except ValueError:
                continue
    return found


def processes_for_inodes(inodes, proc_root: str = "/proc") -> list[Holder]:
    """Map socket inodes to the processes holding them (needs the right to read /proc/<pid>/fd)."""
    targets = {f"socket:[{i}]" for i in inodes}
    holders: list[Holder] = []
    if not targets:
        return holders
    try:
        pids = [p for p in os.listdir(proc_root) if p.isdigit()]
    except OSError:
        return holders
    for pid in pids:
        fd_dir = os.path.join(proc_root, pid, "fd")
        try:
            fds = os.listdir(fd_dir)
        except OSError:
            continue
        for fd in fds:
            try:
                link = os.readlink(os.path.join(fd_dir, fd))
            except OSError:
                continue
            if link in targets:
                holders.append(_holder(int(pid), proc_root))
                break
    return holders


def _holder(pid: int, proc_root: str) -> Holder:
    def read(name):
        try:
            with open(os.path.join(proc_root, str(pid), name), "rb") as fh:
                return fh.read()
        except OSError:
            return b""

    comm = read("comm").decode("utf-8", "replace").strip()
    cmdline = read("cmdline").replace(b"\0", b" ").decode("utf-8", "replace").strip()
    return Holder(pid, comm, cmdline)


# --------------------------------------------------------------------------- docker

_PORT_RE = re.compile(
    r"^(?P<ip>\[[0-9a-fA-F:.]*\]|[0-9a-fA-F:.]*?):(?P<start>\d+)(?:-(?P<end>\d+))?->\d+(?:-\d+)?/(?P<proto>\w+)$"
)


def parse_docker_ports(text: str) -> list[tuple[str, int, int]]:
    """'0.0.0.0:5432->5432/tcp, :::5432->5432/tcp, 127.0.0.1:9000-9001->9000-9001/tcp' -> [(ip, start, end)].

    Only published TCP ports; exposed-only ports ('5432/tcp') are skipped.
    """
    out = []
    for item in (text or "").split(","):
        m = _PORT_RE.match(item.strip())
        if not m or m.group("proto") != "tcp":
            continue
        ip = m.group("ip").strip("[]")
        start = int(m.group("start"))
        out.append((ip, start, int(m.group("end") or start)))
    return out


DOCKER_PS_FORMAT = '{{.Names}}\t{{.Label "' + PROJECT_LABEL + '"}}\t{{.Ports}}'


def parse_docker_ps(output: str) -> list[Published]:
    published = []
    for line in (output or "").splitlines():
        cols = line.split("\t")
        if len(cols) < 3:
            continue
        name, project, ports = cols[0], cols[1] or None, cols[2]
        for ip, start, end in parse_docker_ports(ports):
            published.append(Published(name, project, ip, start, end))
    return published


def _subprocess_run(argv):
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.SubprocessError) as exc:
        return 127, "", str(exc)
    return proc.returncode, proc.stdout, proc.stderr


def docker_published(run=None, docker: str = "docker") -> tuple[list[Published], str | None]:
    """Ports published by running containers, via ``docker ps`` (argument list, no shell).

    ``run(argv) -> (rc, stdout, stderr)``; defaults to subprocess. Returns
    (published, warning) - the warning says why docker could not be asked.
    """
    run = run or _subprocess_run
    rc, out, err = run([docker, "ps", "--format", DOCKER_PS_FORMAT])
    if rc != 0:
        return (
            [],
            f"docker ps failed ({(err or out).strip()[:200] or f'rc={rc}'}); containers not consulted",
        )
    return parse_docker_ps(out), None


# --------------------------------------------------------------------------- check


def _is_wildcard(addr: str) -> bool:
    return addr in _WILDCARDS


def addresses_overlap(a: str, b: str) -> bool:
    """Would binds on ``a`` and ``b`` (same port) collide? Wildcards collide with everything."""
    a, b = (a or "").strip("[]"), (b or "").strip("[]")
    if _is_wildcard(a) or _is_wildcard(b):
        return True
    try:
        return ipaddress.ip_address(a) == ipaddress.ip_address(b)
    except ValueError:
        return a == b


def _fix_hint(variable: str | None, service: str) -> str:
    if variable:
        return f"set {variable} in your inventory to a free port"
    return f"choose another host port for {service}"


def check_ports(
    specs: list[dict],
    project: str | None = None,
    default_bind: str = "127.0.0.1",
    run=None,
    use_docker: bool = True,
    proc_root: str = "/proc",
    address_variable: str = "cmx_bind_address",
) -> tuple[list[PortStatus], list[str]]:
    """Check each ``{service, port, bind_address?, variable?}``; return (statuses, warnings)."""
    warnings: list[str] = []
    published: list[Published] = []
    if use_docker:
        published, warning = docker_published(run)
        if warning:
            warnings.append(warning)

    statuses: list[PortStatus] = []
    seen: dict[tuple[str, int], str] = {}
    for spec in specs:
        service = str(spec.get("service") or "service")
        port = int(spec["port"])
        address = str(spec.get("bind_address") or default_bind)
        variable = spec.get("variable") or None
        where = f"port {port} ({service}) on {address}"
        st = PortStatus(service, port, address, variable, "free")
        statuses.append(st)

        if not 0 < port < 65536:
            st.status, st.message = "error", f"{where}: not a valid TCP port; {_fix_hint(variable, service)}"
            continue
        dup = next(
            (svc for (addr, p), svc in seen.items() if p == port and addresses_overlap(addr, address)), None
        )
        if dup is not None:
            st.status = "conflict"
            st.holder = f"also configured for {dup}"
            st.message = f"{where} is also configured for {dup}; {_fix_hint(variable, service)}"
            continue
        seen[(address, port)] = service

        by_containers = [p for p in published if p.covers(port) and addresses_overlap(p.host_ip, address)]
        st.containers = sorted({p.container for p in by_containers})
        ours = [p for p in by_containers if project and p.project == project]
        foreign = [p for p in by_containers if not (project and p.project == project)]
        if ours and not foreign:
            st.status, st.holder = "ours", f"container {ours[0].container} of compose project {project}"
            continue

        err = try_bind(address, port)
        if err == 0 and not foreign:
            continue
        if err == errno.EADDRNOTAVAIL:
            st.status = "error"
            st.message = (
                f"{where}: address {address} does not exist on this host; "
                f"set {address_variable} in your inventory to an address of this host"
            )
            continue
        # privileged port and we are not root: docker binds it as root, so only a listener is a conflict
        if err == errno.EACCES and not foreign and not _listeners(port, address, proc_root):
            continue
        st.status = "conflict"
        st.holder = _describe_holder(port, address, foreign, proc_root)
        st.message = f"{where} is in use by {st.holder}; {_fix_hint(variable, service)}"
    return statuses, warnings


def _listeners(port: int, address: str, proc_root: str) -> list[tuple[str, int]]:
    return [(a, i) for a, i in listening_sockets(port, proc_root) if addresses_overlap(a, address)]


def _describe_holder(port: int, address: str, foreign: list[Published], proc_root: str) -> str:
    if foreign:
        p = foreign[0]
        owner = f" of compose project '{p.project}'" if p.project else ""
        return f"docker container '{p.container}'{owner}"
    listeners = _listeners(port, address, proc_root)
    holders = processes_for_inodes([i for _, i in listeners], proc_root)
    if holders:
        return ", ".join(h.describe() for h in holders)
    if listeners:
        return (
            f"a process this user cannot see (LISTEN socket on {listeners[0][0]}:{port}; "
            f"try: sudo ss -ltnp 'sport = :{port}')"
        )
    return f"another process (not visible from here; try: sudo ss -ltnp 'sport = :{port}')"
