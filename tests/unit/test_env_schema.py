"""The schema itself: complete, consistent, and its defaults equivalent in Python and in the role's Jinja."""

from __future__ import annotations

import re

import jinja2
import pytest
from ansible_collections.cleanmatex.infra.plugins.module_utils import env_schema as schema
from test_env_support import REPO, load_cli

# The seed's .env.example (PRD 001, "Environment Variables") plus the stack's own.
SEED_VARIABLES = [
    "NODE_ENV",
    "DATABASE_URL",
    "DATABASE_POOL_MIN",
    "DATABASE_POOL_MAX",
    "NEXT_PUBLIC_SUPABASE_URL",
    "NEXT_PUBLIC_SUPABASE_ANON_KEY",
    "SUPABASE_SERVICE_ROLE_KEY",
    "REDIS_URL",
    "REDIS_DB",
    "S3_ENDPOINT",
    "S3_ACCESS_KEY",
    "S3_SECRET_KEY",
    "S3_BUCKET",
    "APP_PORT",
    "APP_URL",
    "WEB_ADMIN_URL",
    "JWT_SECRET",
    "JWT_EXPIRES_IN",
    "ENABLE_ASSEMBLY",
    "ENABLE_MARKETPLACE",
    "ENABLE_AI_FEATURES",
    "WHATSAPP_API_KEY",
    "WHATSAPP_PHONE_NUMBER",
    "TWILIO_ACCOUNT_SID",
    "TWILIO_AUTH_TOKEN",
    "SENDGRID_API_KEY",
    "STRIPE_SECRET_KEY",
]
STACK_VARIABLES = ["DATABASE_POOLED_URL", "POSTGRES_PORT", "PGBOUNCER_PORT", "REDIS_PASSWORD", "S3_REGION"]


def _yaml(path):
    return load_cli().load_yaml(path)


def test_every_seed_and_stack_variable_is_in_the_schema():
    assert set(SEED_VARIABLES + STACK_VARIABLES) <= set(schema.BY_NAME)
    assert len(schema.BY_NAME) == len(schema.VARIABLES), "duplicate names"


@pytest.mark.parametrize("entry", schema.VARIABLES, ids=lambda entry: entry["name"])
def test_entry_is_complete(entry):
    assert re.fullmatch(r"[A-Z][A-Z0-9_]*", entry["name"])
    assert entry["type"] in schema.TYPES
    assert entry["group"] in schema.GROUP_IDS
    assert entry["description"].endswith(".")
    assert set(entry["required"]) == set(schema.ENVIRONMENTS)
    assert set(entry["default"]) == set(schema.ENVIRONMENTS)
    if entry["type"] == "enum":
        assert entry["choices"]
    if entry["type"] == "int":
        assert entry["min"] <= entry["max"]
    if entry["type"] == "url":
        assert entry["schemes"]
        # A URL with a password in it is a secret.
        assert entry.get("secret") is bool(entry.get("url_password"))
    if entry.get("pattern"):
        re.compile(entry["pattern"])
        assert entry.get("pattern_hint")


def test_only_the_anon_key_is_a_secret_shipped_to_browsers():
    public_secrets = [
        e["name"] for e in schema.VARIABLES if e["name"].startswith("NEXT_PUBLIC_") and e["secret"]
    ]
    assert public_secrets == ["NEXT_PUBLIC_SUPABASE_ANON_KEY"]


@pytest.mark.parametrize("env", ["dev", "ci"])
def test_a_new_engineer_needs_nothing(env):
    """Every variable required in dev and ci has a default there."""
    missing = [e["name"] for e in schema.VARIABLES if e["required"][env] and e["default"][env] is None]
    assert missing == []


@pytest.mark.parametrize("env", schema.STRICT_ENVIRONMENTS)
def test_no_literal_secret_defaults_outside_dev(env):
    """Outside dev and ci a secret comes from the inventory (vault), never from the schema."""
    for entry in schema.VARIABLES:
        template = entry["default"][env]
        if entry["secret"] and template:
            assert schema.template_inputs(template), entry["name"]


def _inventory_names(env):
    names = set()
    for path in (REPO / "inventories" / env / "group_vars" / "all").glob("*.yml"):
        names.update(_yaml(path))
    return names


@pytest.mark.parametrize("env", schema.ENVIRONMENTS)
def test_every_default_input_is_defined_for_the_environment(env):
    role_defaults = set(_yaml(REPO / "roles" / "env" / "defaults" / "main.yml"))
    known = _inventory_names(env) | role_defaults | set(schema.CONTEXT_FALLBACKS)
    for entry in schema.VARIABLES:
        for field in schema.template_inputs(entry["default"][env]):
            assert field in known, f"{entry['name']} ({env}) uses {field}, defined nowhere"


def test_role_argument_specs_match_the_schema():
    specs = _yaml(REPO / "roles" / "env" / "meta" / "argument_specs.yml")["argument_specs"]
    for entry_point in ("main", "validate"):
        options = specs[entry_point]["options"]
        assert options["env_files"]["options"]["groups"]["choices"] == list(schema.GROUP_IDS)
        assert options["cmx_environment"]["choices"] == list(schema.ENVIRONMENTS)
    defaults = _yaml(REPO / "roles" / "env" / "defaults" / "main.yml")
    assert set(specs["main"]["options"]) - {"cmx_environment"} == set(defaults) - {"env_values"}


CONTEXT = {
    "cmx_environment": "staging",
    "cmx_postgres_user": "owner",
    "cmx_postgres_password": "owner-pw",
    "cmx_postgres_app_user": "app user",
    "cmx_postgres_app_password": "p@ss/w:rd?#%&= ~x",
    "cmx_postgres_port": 5432,
    "cmx_postgres_db": "cmx_db",
    "cmx_pgbouncer_port": 6432,
    "cmx_redis_port": 6379,
    "cmx_s3_port": 9000,
    "cmx_s3_access_key": "key",
    "cmx_s3_secret_key": "secret",
    "cmx_s3_bucket": "bucket",
    "env_service_host": "localhost",
}


def _ansible_like_jinja():
    environment = jinja2.Environment(undefined=jinja2.StrictUndefined)
    environment.filters["default"] = lambda value, fallback="": (
        fallback if isinstance(value, jinja2.Undefined) else value
    )
    return environment


@pytest.mark.parametrize("redis_password", ["", "r3d!s/p@ss"])
@pytest.mark.parametrize("env", schema.ENVIRONMENTS)
def test_python_and_jinja_defaults_are_identical(env, redis_password):
    """The role renders to_jinja(template); .env.example and the docs use render_default(template)."""
    context = dict(CONTEXT, cmx_redis_password=redis_password)
    jinja = _ansible_like_jinja()
    for entry in schema.VARIABLES:
        template = entry["default"][env]
        if template is None:
            continue
        python = schema.render_default(template, context)
        rendered = jinja.from_string(schema.to_jinja(template)).render(context)
        assert rendered == python, entry["name"]


def test_url_defaults_survive_special_characters_in_passwords():
    from urllib.parse import unquote, urlsplit

    context = dict(CONTEXT, cmx_redis_password="r3d!s/p@ss")
    url = urlsplit(schema.render_default(schema.BY_NAME["DATABASE_URL"]["default"]["dev"], context))
    assert unquote(url.password) == CONTEXT["cmx_postgres_app_password"]
    assert unquote(url.username) == "app user" and url.port == 5432 and url.path == "/cmx_db"
    redis = urlsplit(schema.render_default(schema.BY_NAME["REDIS_URL"]["default"]["dev"], context))
    assert unquote(redis.password) == "r3d!s/p@ss"
    plain = schema.render_default(
        schema.BY_NAME["REDIS_URL"]["default"]["dev"], dict(context, cmx_redis_password="")
    )
    assert plain == "redis://localhost:6379"


def test_region_falls_back_when_the_inventory_has_none():
    assert schema.render_default("{cmx_s3_region}", {}) == "us-east-1"
    assert schema.to_jinja("{cmx_s3_region}") == "{{ (cmx_s3_region | default('us-east-1')) }}"


def test_templates_reject_unknown_specs():
    with pytest.raises(ValueError):
        schema.to_jinja("{cmx_postgres_user:upper}")
    with pytest.raises(ValueError):
        schema.render_default("{cmx_postgres_user:upper}", CONTEXT)
    with pytest.raises(KeyError):
        schema.render_default("{cmx_nothing}", {})
