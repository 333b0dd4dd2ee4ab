# Copyright: CleanMateX DevOps
# Apache License 2.0 (see galaxy.yml)
"""Filter: ``{{ settings | cleanmatex.infra.service_endpoints }}`` -> where each data service is
(plugins/module_utils/endpoints.py; the endpoints role sets the result as the fact cmx_endpoints)."""

from __future__ import annotations

from ansible_collections.cleanmatex.infra.plugins.module_utils import endpoints


def service_endpoints(settings):
    return endpoints.resolve(dict(settings))


def libpq_query(endpoint, side="container"):
    return endpoints.libpq_query(dict(endpoint), side)


def url_host(host):
    return endpoints.url_host(host)


class FilterModule:
    def filters(self):
        return {"service_endpoints": service_endpoints, "libpq_query": libpq_query, "url_host": url_host}
