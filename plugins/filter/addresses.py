# Copyright: CleanMateX DevOps
# Apache License 2.0 (see galaxy.yml)
"""Filter: the address a client on the host uses to reach a port published on the bind address."""

from __future__ import annotations

WILDCARDS = ("", "0.0.0.0", "::", "[::]")


def service_host(bind_address, loopback="127.0.0.1"):
    """cmx_bind_address -> where the converge's own clients (and the apps on the host) connect.

    A wildcard or loopback bind is reached on `loopback` ('localhost' for the app .env keeps dev's values
    readable); a specific address (a private one in staging) is reached on itself: nothing listens on
    127.0.0.1 then."""
    address = str(bind_address or "").strip()
    if address in WILDCARDS or address in ("127.0.0.1", "localhost", "::1"):
        return loopback
    return address


class FilterModule:
    def filters(self):
        return {"service_host": service_host}
