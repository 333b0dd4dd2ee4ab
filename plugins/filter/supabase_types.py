# Copyright: CleanMateX DevOps
# Apache License 2.0 (see galaxy.yml)
"""Filters of the supabase role's `types` verb (plugins/module_utils/supabase_types.py):

``{{ services_stdout | cleanmatex.infra.supabase_postgres_meta_tag }}`` -> 'v0.99.0' (`supabase services`),
``{{ tag | cleanmatex.infra.supabase_cli_image(registry) }}`` -> the image name the CLI looks for,
``{{ cmx_endpoints.postgres | cleanmatex.infra.supabase_db_url(user, password, db) }}`` -> the --db-url.
"""

from __future__ import annotations

from ansible.errors import AnsibleFilterError
from ansible_collections.cleanmatex.infra.plugins.module_utils import supabase_types


def supabase_postgres_meta_tag(services_stdout):
    try:
        return supabase_types.postgres_meta_tag(str(services_stdout))
    except supabase_types.SupabaseTypesError as exc:
        raise AnsibleFilterError(str(exc)) from exc


def supabase_cli_image(tag, registry=""):
    return supabase_types.cli_image_ref(str(tag), str(registry or ""))


def supabase_db_url(endpoint, user, password="", database="postgres", with_password=True):
    endpoint = dict(endpoint or {})
    try:
        return supabase_types.db_url(
            endpoint.get("host"),
            endpoint.get("port") or 5432,
            user,
            password if with_password else "",
            database,
            endpoint.get("sslmode") or "disable",
            endpoint.get("sslrootcert") or "",
        )
    except supabase_types.SupabaseTypesError as exc:
        raise AnsibleFilterError(str(exc)) from exc


class FilterModule:
    def filters(self):
        return {
            "supabase_postgres_meta_tag": supabase_postgres_meta_tag,
            "supabase_cli_image": supabase_cli_image,
            "supabase_db_url": supabase_db_url,
        }
