# Copyright: CleanMateX DevOps
# Apache License 2.0 (see galaxy.yml)
"""quote_for: an inventory value quoted for the file or language it lands in.

    {{ cmx_postgres_db | cleanmatex.infra.quote_for('sql_ident') }}
    {{ (key ~ '=' ~ value) | cleanmatex.infra.quote_for('compose') }}

Targets: sql_ident, sql_literal, compose, env, redis, pgbouncer_ini, pgbouncer_name. The rules live in
plugins/module_utils/quoting.py (unit-tested against the real parsers); this is only the Jinja side.
"""

from __future__ import annotations

from ansible.errors import AnsibleFilterError
from ansible_collections.cleanmatex.infra.plugins.module_utils.quoting import quote_for as _quote_for


def quote_for(value, target):
    try:
        return _quote_for(value, target)
    except ValueError as error:
        raise AnsibleFilterError(f"quote_for({target!r}): {error}") from error


class FilterModule:
    """Quoting per destination."""

    def filters(self):
        return {"quote_for": quote_for}
