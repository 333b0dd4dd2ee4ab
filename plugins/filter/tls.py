# Copyright: CleanMateX DevOps
# Apache License 2.0 (see galaxy.yml)
"""TLS for PostgreSQL and PgBouncer, the Jinja side (the rules live in plugins/module_utils/pg_tls.py).

- ``{{ [cmx_bind_address, inventory_hostname] | cleanmatex.infra.tls_sans }}``: DNS:/IP: subjectAltNames
- ``{{ cmx_tls_enabled | cleanmatex.infra.tls_pg_hba }}``: pg_hba.conf in TLS mode
- ``{{ ca_file_or_empty | cleanmatex.infra.tls_url_query }}``: ?sslmode=verify-full&sslrootcert=...
"""

from __future__ import annotations

from ansible_collections.cleanmatex.infra.plugins.module_utils import pg_tls


def tls_sans(names):
    return pg_tls.server_sans(names)


def tls_pg_hba(enabled):
    return pg_tls.pg_hba(bool(enabled))


def tls_url_query(ca_file, plaintext=""):
    return pg_tls.url_query(ca_file or None, plaintext)


class FilterModule:
    """TLS helpers."""

    def filters(self):
        return {"tls_sans": tls_sans, "tls_pg_hba": tls_pg_hba, "tls_url_query": tls_url_query}
