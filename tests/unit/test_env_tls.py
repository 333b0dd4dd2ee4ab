"""DATABASE_URL / DATABASE_POOLED_URL against the stack's TLS mode (stack setting postgres_tls)."""

from __future__ import annotations

import pytest
from ansible_collections.cleanmatex.infra.plugins.module_utils import env_schema, pg_tls
from ansible_collections.cleanmatex.infra.plugins.module_utils.env_validate import validate_mapping
from test_env_support import apply, base_stack, base_values

CA = "/opt/cmx/app/postgres-ca.crt"
URLS = ("DATABASE_URL", "DATABASE_POOLED_URL")


def _with_query(values, query):
    return apply(values, {name: values[name] + query for name in URLS if name in values})


def _errors(report, name):
    return [p.message for p in report.errors if p.variable == name]


@pytest.mark.parametrize("environment", ["staging", "production"])
def test_tls_stack_accepts_verify_full_with_the_ca(environment):
    values = _with_query(base_values(environment), pg_tls.url_query(CA))
    report = validate_mapping(values, environment, dict(base_stack(environment), postgres_tls="true"))
    for name in URLS:
        assert _errors(report, name) == [], report.summary()


@pytest.mark.parametrize("query", ["", "?sslmode=require", "?sslmode=prefer", "?sslmode=verify-ca"])
def test_tls_stack_refuses_a_url_that_does_not_verify_the_server(query):
    values = _with_query(base_values("staging"), query)
    report = validate_mapping(values, "staging", dict(base_stack("staging"), postgres_tls="true"))
    for name in URLS:
        (message,) = _errors(report, name)
        assert "does not verify" in message and "the stack serves TLS" in message


def test_tls_stack_refuses_verify_full_without_a_ca_file():
    values = _with_query(base_values("staging"), "?sslmode=verify-full")
    report = validate_mapping(values, "staging", dict(base_stack("staging"), postgres_tls="true"))
    assert any("no sslrootcert" in m for m in _errors(report, "DATABASE_URL"))


def test_plaintext_stack_refuses_a_url_that_asks_for_tls():
    values = _with_query(base_values("dev"), pg_tls.url_query(CA))
    report = validate_mapping(values, "dev", dict(base_stack("dev"), postgres_tls="false"))
    assert any("the stack serves none" in m for m in _errors(report, "DATABASE_URL"))
    plain = validate_mapping(base_values("dev"), "dev", dict(base_stack("dev"), postgres_tls="false"))
    assert _errors(plain, "DATABASE_URL") == []


def test_without_the_setting_nothing_is_checked():
    values = _with_query(base_values("dev"), "?sslmode=require")
    assert _errors(validate_mapping(values, "dev", base_stack("dev")), "DATABASE_URL") == []


def test_default_url_ends_with_the_env_roles_tls_query():
    entry = env_schema.BY_NAME["DATABASE_URL"]
    context = {
        "cmx_postgres_app_user": "app",
        "cmx_postgres_app_password": "p w",
        "env_service_host": "localhost",
        "cmx_postgres_port": 5432,
        "cmx_postgres_db": "db",
    }
    assert (
        env_schema.render_default(entry["default"]["dev"], context)
        == "postgresql://app:p%20w@localhost:5432/db"
    )
    tls = dict(context, env_database_tls_query=pg_tls.url_query(CA))
    assert env_schema.render_default(entry["default"]["staging"], tls).endswith(
        "/db?sslmode=verify-full&sslrootcert=" + CA
    )
