# Copyright: CleanMateX DevOps
# Apache License 2.0 (see galaxy.yml)
"""Supabase config.toml filters; the rules live in plugins/module_utils/supabase_config.py (unit-tested).

{{ cmx_supabase_auth_site_url | cleanmatex.infra.toml_value }}      ->  "http://localhost:3000"
{{ settings | cleanmatex.infra.supabase_config_problems }}         ->  ["cmx_supabase_api_port must ..."]
"""

from __future__ import annotations

from ansible.errors import AnsibleFilterError
from ansible_collections.cleanmatex.infra.plugins.module_utils import supabase_config


def toml_value(value):
    try:
        return supabase_config.toml_value(value)
    except ValueError as error:
        raise AnsibleFilterError(f"toml_value: {error}") from error


def supabase_config_problems(settings):
    if not isinstance(settings, dict):
        raise AnsibleFilterError("supabase_config_problems expects a mapping of inventory variable to value")
    return supabase_config.problems(dict(settings))


class FilterModule:
    """TOML values and the check of the Supabase settings."""

    def filters(self):
        return {"toml_value": toml_value, "supabase_config_problems": supabase_config_problems}
