# Copyright: CleanMateX DevOps
# Apache License 2.0 (see galaxy.yml)
"""Filter: the address a client on the host uses to reach a port published on the bind address."""

from __future__ import annotations

from ansible_collections.cleanmatex.infra.plugins.module_utils import endpoints


def service_host(bind_address, loopback="127.0.0.1"):
    """cmx_bind_address -> where the converge's own clients (and the apps on the host) connect.

    A wildcard or loopback bind is reached on `loopback` ('localhost' for the app .env keeps dev's values
    readable); a specific address (a private one in staging) is reached on itself: nothing listens on
    127.0.0.1 then. One rule with the endpoints role's (module_utils/endpoints.local_host)."""
    return endpoints.local_host(bind_address, loopback)


class FilterModule:
    def filters(self):
        return {"service_host": service_host}
