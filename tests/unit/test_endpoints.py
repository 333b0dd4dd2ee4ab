"""Where each data service runs (plugins/module_utils/endpoints.py): the fact every role reads, and the
problems the env validation reports with the rest of the environment, each naming the variable to fix."""

from __future__ import annotations

import pytest
from ansible_collections.cleanmatex.infra.plugins.module_utils import endpoints
from ansible_collections.cleanmatex.infra.plugins.module_utils.env_task import argument_spec, task_result

CONTAINERS = {
    "bind_address": "127.0.0.1",
    "project_dir": "/srv/cmx",
    "postgres_port": 5432,
    "redis_port": 6379,
}


@pytest.fixture
def ca(tmp_path):
    path = tmp_path / "ca.pem"
    path.write_text("-----BEGIN CERTIFICATE-----\n")
    return str(path)


def external(ca, **extra):
    return {
        **CONTAINERS,
        "postgres_mode": "external",
        "postgres_host": "db.internal",
        "postgres_port": 5433,
        "postgres_ca_file": ca,
        "redis_mode": "external",
        "redis_host": "cache.internal",
        "redis_port": 6380,
        "redis_tls": "true",
        "s3_mode": "external",
        "s3_endpoint": "https://s3.eu-west-1.amazonaws.com/",
        "s3_addressing": "virtual",
        "s3_create_bucket": "false",
        "redis_ca_file": ca,
        "s3_ca_file": ca,
        **extra,
    }


def test_the_default_is_every_service_a_container_on_the_published_ports():
    resolved = endpoints.resolve(CONTAINERS)
    assert resolved["containers"] == ["postgres", "pgbouncer", "redis", "storage"]
    assert resolved["external"] == [] and resolved["ca_files"] == []
    assert (resolved["postgres"]["host"], resolved["postgres"]["port"]) == ("127.0.0.1", 5432)
    assert resolved["postgres"]["sslmode"] == "disable"
    assert resolved["pgbouncer"]["upstream"]["service_host"] == "postgres"
    assert resolved["s3"]["endpoint"] == "http://127.0.0.1:9000"
    assert resolved["s3"]["health_path"] == "/healthz"


def test_the_stack_tls_verifies_its_own_ca():
    resolved = endpoints.resolve({**CONTAINERS, "tls_enabled": "True", "bind_address": "10.0.0.10"})
    assert resolved["postgres"]["host"] == "10.0.0.10"
    assert resolved["postgres"]["sslrootcert"] == "/srv/cmx/secrets/tls/ca.crt"
    assert (
        endpoints.libpq_query(resolved["postgres"])
        == "?sslmode=verify-full&sslrootcert=/run/secrets/tls/ca.crt"
    )
    assert endpoints.libpq_query(endpoints.resolve(CONTAINERS)["postgres"]) == ""


def test_external_services_resolve_to_their_endpoints_and_cas(ca):
    resolved = endpoints.resolve(external(ca))
    assert resolved["containers"] == ["pgbouncer"]
    assert resolved["external"] == ["postgres", "redis", "s3"]
    postgres = resolved["postgres"]
    assert (postgres["host"], postgres["port"], postgres["sslmode"]) == ("db.internal", 5433, "verify-full")
    assert postgres["sslrootcert"] == "/srv/cmx/secrets/ca/postgres.crt"
    # The stack's PgBouncer logs in to the managed server with its CA, as the containers see it.
    assert resolved["pgbouncer"]["upstream"] == {
        "mode": "external",
        "service_host": "db.internal",
        "service_port": 5433,
        "sslmode": "verify-full",
        "container_sslrootcert": "/run/secrets/ca/postgres.crt",
    }
    assert resolved["redis"]["tls"] is True
    assert resolved["s3"]["endpoint"] == "https://s3.eu-west-1.amazonaws.com"
    assert resolved["s3"]["create_bucket"] is False and resolved["s3"]["health_path"] == ""
    assert [entry["src"] for entry in resolved["ca_files"]] == [ca, ca, ca]
    assert [entry["dest"].rsplit("/", 1)[1] for entry in resolved["ca_files"]] == [
        "postgres.crt",
        "redis.crt",
        "s3.crt",
    ]


def test_valid_external_settings_have_no_problem(ca):
    assert endpoints.problems(external(ca), "production") == []
    assert endpoints.problems(CONTAINERS, "production") == []


@pytest.mark.parametrize(
    ("extra", "variable", "words"),
    [
        ({"postgres_host": ""}, "cmx_postgres_host", "without an endpoint"),
        ({"postgres_sslmode": "disable"}, "cmx_postgres_sslmode", "plaintext"),
        ({"postgres_ca_file": ""}, "cmx_postgres_ca_file", "needs the CA"),
        ({"postgres_ca_file": "/nonexistent/ca.pem"}, "cmx_postgres_ca_file", "no file"),
        ({"redis_host": ""}, "cmx_redis_host", "without an endpoint"),
        ({"redis_tls": "false"}, "cmx_redis_tls", "plaintext"),
        ({"redis_commander_enabled": "true"}, "cmx_redis_commander_enabled", "Redis container"),
        ({"s3_endpoint": ""}, "cmx_s3_endpoint", "without an endpoint"),
        ({"s3_endpoint": "http://s3.internal:9000"}, "cmx_s3_endpoint", "plaintext"),
        ({"s3_endpoint": "s3.internal"}, "cmx_s3_endpoint", "not an http(s)"),
        ({"s3_addressing": "sideways"}, "cmx_s3_addressing", "unknown addressing"),
        ({"pgbouncer_mode": "external"}, "cmx_pgbouncer_host", "without an endpoint"),
        ({"redis_mode": "cloud"}, "cmx_redis_mode", "unknown mode"),
    ],
)
def test_each_bad_setting_is_named(ca, extra, variable, words):
    found = endpoints.problems(external(ca, **extra), "staging")
    assert [problem["variable"] for problem in found] == [variable]
    assert words in found[0]["message"]


def test_plaintext_is_fine_to_loopback_and_in_dev(ca):
    loopback = external(
        ca,
        postgres_host="127.0.0.1",
        postgres_sslmode="disable",
        redis_host="localhost",
        redis_tls="false",
        s3_endpoint="http://127.0.0.1:9000",
    )
    assert endpoints.problems(loopback, "staging") == []
    remote = external(
        ca, postgres_sslmode="disable", redis_tls="false", s3_endpoint="http://s3.internal:9000"
    )
    assert endpoints.problems(remote, "dev") == []
    assert len(endpoints.problems(remote, "ci")) == 3


def test_an_external_pooler_needs_an_external_server(ca):
    found = endpoints.problems({**CONTAINERS, "pgbouncer_mode": "external", "pgbouncer_host": "pool"}, "dev")
    assert [problem["variable"] for problem in found] == ["cmx_pgbouncer_mode"]


def test_the_env_validation_reports_them_all_at_once_with_the_rest(ca):
    params = {
        "environment": "staging",
        "values": {"NODE_ENV": "production"},
        "undefined": [],
        "path": None,
        "stack": None,
        "services": external(ca, postgres_host="", redis_tls="false"),
        "fail_on_error": True,
    }
    assert "services" in argument_spec()
    result, _warnings = task_result(params, set())
    assert result["failed"]
    assert "cmx_postgres_host: external PostgreSQL without an endpoint" in result["msg"]
    assert "cmx_redis_tls: plaintext Redis to cache.internal" in result["msg"]
    # The environment's own problems are still there (missing required variables).
    assert "JWT_SECRET" in result["msg"]


@pytest.mark.parametrize(
    ("major", "postgres_mode", "words"),
    [
        ("16", "container", "unsupported"),
        ("abc", "external", "unsupported"),
    ],
)
def test_the_postgres_major_is_one_supabase_and_the_stack_can_run(ca, major, postgres_mode, words):
    settings = (
        {**CONTAINERS, "postgres_major": major}
        if postgres_mode == "container"
        else external(ca, postgres_major=major)
    )
    found = endpoints.problems(settings, "dev")
    assert [problem["variable"] for problem in found] == ["cmx_postgres_major"]
    assert words in found[0]["message"]
    # The fix names what provides each supported major.
    assert "15 (Debian bookworm, postgres:15-alpine) or 17 (Debian trixie" in found[0]["expected"]
    # 15 and 17 are fine for the stack's own container (built or pulled) and for an external server.
    for major_ok in ("15", "17"):
        assert endpoints.problems(external(ca, postgres_major=major_ok), "dev") == []
        assert endpoints.problems({**CONTAINERS, "postgres_major": major_ok}, "dev") == []


def test_another_loopback_address_is_reached_on_itself():
    # Only the usual loopback names map to 127.0.0.1: a stack bound to 127.0.0.5 listens there only.
    assert endpoints.local_host("127.0.0.5") == "127.0.0.5"
    assert endpoints.local_host("0.0.0.0") == endpoints.local_host("::1") == "127.0.0.1"
    assert endpoints.local_host("localhost", "localhost") == "localhost"
