#!/usr/bin/python3
"""The storage container's front door (CleanMateX SeaweedFS image, cleanmatex.infra images role).

`weed mini` runs with every listener on 127.0.0.1 inside the container (master, volume server, filer,
their gRPC ports, S3, admin UI): nothing of SeaweedFS is reachable from the project network or a
published port by itself. This process runs it as a child and forwards only what is meant to be
reachable, TCP byte for byte:

    storage_front.py --forward 0.0.0.0:9000=127.0.0.1:8333 \
        --forward 0.0.0.0:23646=127.0.0.1:23647 --hosts 23646=localhost,127.0.0.1,::1 \
        -- /entrypoint.sh mini -ip=127.0.0.1 -ip.bind=127.0.0.1 ...

--hosts PORT=NAMES: the first request of every connection to that listener must carry a Host header
naming one of NAMES (the port in the header is not compared); anything else gets 403 and the connection
is closed. A browser keys its connections by origin, so a page reaching the port through DNS rebinding
sends its own host name on every connection it opens: the admin UI never sees it.

The child's exit status is this process's; SIGTERM/SIGINT are passed on; a listener that cannot be opened
stops the child and exits 1 (the container stops instead of serving half).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys

HEAD_LIMIT = 64 * 1024
HEAD_TIMEOUT = 30.0
FORBIDDEN = (
    b"HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain\r\nContent-Length: 31\r\nConnection: close\r\n\r\n"
    b"Forbidden: unknown Host header\n"
)


def split_address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"not HOST:PORT: {text!r}")
    return host.strip("[]"), int(port)


def host_name(header: str) -> str:
    """The host name of a Host header value, lower case, without port or IPv6 brackets."""
    value = header.strip().lower()
    if value.startswith("["):
        end = value.find("]")
        return value[1:end] if end > 0 else ""
    return value.partition(":")[0]


def request_host(head: bytes) -> str | None:
    """The Host header of an HTTP/1.x request head (bytes up to the blank line), or None."""
    lines = head.split(b"\r\n")
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if sep and name.strip().lower() == b"host":
            return value.decode("latin-1")
    return None


def host_allowed(head: bytes, allowed: frozenset[str]) -> bool:
    header = request_host(head)
    return header is not None and host_name(header) in allowed


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        try:
            if writer.can_write_eof():
                writer.write_eof()
        except (ConnectionError, OSError, RuntimeError):
            pass


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(ConnectionError, OSError):
        await writer.wait_closed()


def make_handler(target: tuple[str, int], allowed: frozenset[str] | None):
    async def handle(client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        first = b""
        try:
            if allowed is not None:
                try:
                    first = await asyncio.wait_for(client_reader.readuntil(b"\r\n\r\n"), HEAD_TIMEOUT)
                except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, OSError):
                    return
                if not host_allowed(first, allowed):
                    client_writer.write(FORBIDDEN)
                    await client_writer.drain()
                    return
            try:
                upstream_reader, upstream_writer = await asyncio.open_connection(*target)
            except OSError:
                return
            if first:
                upstream_writer.write(first)
            await asyncio.gather(_pipe(client_reader, upstream_writer), _pipe(upstream_reader, client_writer))
            await _close(upstream_writer)
        except (ConnectionError, OSError):
            pass
        finally:
            await _close(client_writer)

    return handle


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--forward", action="append", default=[], help="LISTEN_HOST:PORT=TARGET_HOST:PORT")
    parser.add_argument("--hosts", action="append", default=[], help="LISTEN_PORT=name,name,...")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- the command to run")
    args = parser.parse_args(argv)
    if args.command[:1] == ["--"]:
        args.command = args.command[1:]
    args.forwards = []
    hosts = {}
    for item in args.hosts:
        port, _, names = item.partition("=")
        hosts[int(port)] = frozenset(name.strip().lower() for name in names.split(",") if name.strip())
    for item in args.forward:
        listen, _, target = item.partition("=")
        listen_address, target_address = split_address(listen), split_address(target)
        args.forwards.append((listen_address, target_address, hosts.get(listen_address[1])))
    return args


async def run(args: argparse.Namespace) -> int:
    servers = []
    try:
        for listen, target, allowed in args.forwards:
            handler = make_handler(target, allowed)
            servers.append(await asyncio.start_server(handler, *listen, reuse_address=True))
    except OSError as exc:
        print(f"storage_front: cannot listen: {exc}", file=sys.stderr, flush=True)
        return 1
    if not args.command:
        await asyncio.Event().wait()
    child = await asyncio.create_subprocess_exec(*args.command)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, child.send_signal, sig)
    status = await child.wait()
    for server in servers:
        server.close()
    return status if status >= 0 else 128 - status


def main(argv: list[str] | None = None) -> int:
    return asyncio.run(run(parse_args(sys.argv[1:] if argv is None else argv)))


if __name__ == "__main__":
    sys.exit(main())
