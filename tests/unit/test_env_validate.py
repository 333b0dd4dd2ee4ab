"""Every validation rule with a failing and a passing input, run through the library, the CLI (bin/cmx-env)
and the module (cmx_env_validate main()), which must give identical verdicts and messages."""

from __future__ import annotations

import json

import pytest
from ansible_collections.cleanmatex.infra.plugins.module_utils import env_schema
from ansible_collections.cleanmatex.infra.plugins.module_utils.env_validate import (
    validate_file,
    validate_mapping,
    validate_text,
)
from test_env_support import (
    DEMO_ANON_KEY,
    DEMO_SERVICE_KEY,
    DEV_STACK,
    JWT_SECRET,
    apply,
    base_stack,
    base_values,
    env_text,
    make_jwt,
    run_cli,
    run_module,
)

ANON = "NEXT_PUBLIC_SUPABASE_ANON_KEY"
SERVICE = "SUPABASE_SERVICE_ROLE_KEY"
DB = "postgresql://cmx_app:cmx_app_pass_dev@localhost:5432/cmx_db"
NO_ROLE_JWT = make_jwt(None)
NO_S3_STACK = {key: value for key, value in DEV_STACK.items() if not key.startswith("s3_")}


_SAME = object()


def case(case_id, env, bad, expect, good=None, stack=None, severity="error", good_stack=_SAME):
    """bad: changes to the environment's valid base values that must report `expect` (variable, text);
    good: changes that must pass (default: the base itself); stack: changes to the base stack settings,
    or False for no stack settings; good_stack: the same for the passing input (default: stack)."""
    good_stack = stack if good_stack is _SAME else good_stack
    return pytest.param(env, bad, good or {}, stack, good_stack, (severity, *expect), id=case_id)


CASES = [
    # --- types --------------------------------------------------------------------------------------------
    case(
        "int",
        "dev",
        {"DATABASE_POOL_MIN": "two"},
        ("DATABASE_POOL_MIN", "is not an integer"),
        {"DATABASE_POOL_MIN": "5"},
    ),
    case("int-range", "dev", {"REDIS_DB": "16"}, ("REDIS_DB", "is 16, out of range"), {"REDIS_DB": "15"}),
    case(
        "port",
        "dev",
        {"APP_PORT": "70000"},
        ("APP_PORT", "is not a port number"),
        {"APP_PORT": "4000", "APP_URL": "http://localhost:4000"},
    ),
    case(
        "bool",
        "dev",
        {"ENABLE_ASSEMBLY": "yes"},
        ("ENABLE_ASSEMBLY", "is not a boolean"),
        {"ENABLE_ASSEMBLY": "false"},
    ),
    case(
        "enum",
        "dev",
        {"NODE_ENV": "dev"},
        ("NODE_ENV", "is 'dev', not one of the allowed values"),
        {"NODE_ENV": "test"},
    ),
    case(
        "duration-bare-number",
        "dev",
        {"JWT_EXPIRES_IN": "3600"},
        ("JWT_EXPIRES_IN", "a bare number means milliseconds"),
        {"JWT_EXPIRES_IN": "30m"},
    ),
    case(
        "duration-words",
        "dev",
        {"JWT_EXPIRES_IN": "1 hour"},
        ("JWT_EXPIRES_IN", "is not a duration"),
        {"JWT_EXPIRES_IN": "7d"},
    ),
    case(
        "url-scheme",
        "dev",
        {"DATABASE_URL": DB.replace("postgresql", "mysql")},
        ("DATABASE_URL", "uses the scheme mysql://"),
        {"DATABASE_URL": DB.replace("postgresql", "postgres")},
    ),
    case(
        "url-not-a-url",
        "dev",
        {"REDIS_URL": "localhost:6379"},
        ("REDIS_URL", "is not a valid URL"),
        {"REDIS_URL": "redis://127.0.0.1:6379"},
    ),
    case(
        "url-bad-port",
        "dev",
        {"DATABASE_URL": DB.replace("5432", "99999")},
        ("DATABASE_URL", "is not a valid URL"),
    ),
    case(
        "url-no-user",
        "dev",
        {"DATABASE_URL": "postgresql://localhost:5432/cmx_db"},
        ("DATABASE_URL", "has no user name"),
    ),
    case(
        "url-no-password",
        "dev",
        {"DATABASE_URL": "postgresql://cmx_app@localhost:5432/cmx_db"},
        ("DATABASE_URL", "has no password"),
    ),
    case(
        "url-no-database",
        "dev",
        {"DATABASE_URL": DB.replace("/cmx_db", "/")},
        ("DATABASE_URL", "names no database"),
    ),
    case("required-missing", "dev", {"JWT_SECRET": None}, ("JWT_SECRET", "is missing (required in dev)")),
    case("required-empty", "dev", {"APP_URL": ""}, ("APP_URL", "is empty (required in dev)")),
    case(
        "optional-in-dev-required-in-staging",
        "staging",
        {"WHATSAPP_API_KEY": ""},
        ("WHATSAPP_API_KEY", "is empty (required in staging)"),
    ),
    case(
        "angle-placeholder",
        "dev",
        {ANON: "<get-from-supabase-start>"},
        (ANON, "is a <placeholder>"),
        {ANON: DEMO_ANON_KEY, SERVICE: DEMO_SERVICE_KEY},
    ),
    # --- formats ------------------------------------------------------------------------------------------
    case(
        "phone",
        "dev",
        {"WHATSAPP_PHONE_NUMBER": "12345"},
        ("WHATSAPP_PHONE_NUMBER", "does not have the expected format"),
        {"WHATSAPP_PHONE_NUMBER": "+96550000000"},
    ),
    case(
        "twilio-sid",
        "dev",
        {"TWILIO_ACCOUNT_SID": "AC123"},
        ("TWILIO_ACCOUNT_SID", "does not have the expected format"),
        {"TWILIO_ACCOUNT_SID": "AC0123456789abcdef0123456789abcdef"},
    ),
    case(
        "twilio-token",
        "dev",
        {"TWILIO_AUTH_TOKEN": "xyz"},
        ("TWILIO_AUTH_TOKEN", "does not have the expected format"),
        {"TWILIO_AUTH_TOKEN": "fedcba9876543210fedcba9876543210"},
    ),
    case(
        "sendgrid",
        "dev",
        {"SENDGRID_API_KEY": "sg-123"},
        ("SENDGRID_API_KEY", "does not have the expected format"),
        {"SENDGRID_API_KEY": "SG.abcdefghijklmnop1234.ABCDEFGHIJKLMNOPqrstuvwx"},
    ),
    case(
        "stripe",
        "dev",
        {"STRIPE_SECRET_KEY": "pk_test_51Hx9Kd93Jf0Lq2Zx7Vb5"},
        ("STRIPE_SECRET_KEY", "does not have the expected format"),
        {"STRIPE_SECRET_KEY": "sk_test_51Hx9Kd93Jf0Lq2Zx7Vb5"},
    ),
    case(
        "stripe-live-in-production",
        "production",
        {"STRIPE_SECRET_KEY": "sk_test_51Hx9Kd93Jf0Lq2Zx7Vb5"},
        ("STRIPE_SECRET_KEY", "is not allowed in production"),
    ),
    case(
        "bucket-name",
        "dev",
        {"S3_BUCKET": "Bad_Bucket"},
        ("S3_BUCKET", "does not have the expected format"),
        stack={"s3_bucket": None},
    ),
    case(
        "region-name",
        "dev",
        {"S3_REGION": "US-EAST"},
        ("S3_REGION", "does not have the expected format"),
        {"S3_REGION": "eu-west-1"},
        stack={"s3_region": None},
    ),
    case("jwt-format", "dev", {ANON: "not-a-jwt"}, (ANON, "is not a JWT"), {ANON: DEMO_ANON_KEY}),
    case(
        "jwt-role",
        "dev",
        {ANON: make_jwt("service_role")},
        (ANON, "is a key for the role service_role, not for the role anon"),
        {ANON: make_jwt("anon")},
    ),
    case(
        "supabase-new-keys",
        "dev",
        {ANON: "sb_secret_abc123"},
        (ANON, "is an sb_secret_... key"),
        {ANON: "sb_publishable_abc123", SERVICE: "sb_secret_def456"},
    ),
    case(
        "anon-is-service-key",
        "dev",
        {ANON: NO_ROLE_JWT, SERVICE: NO_ROLE_JWT},
        (ANON, "is the same as SUPABASE_SERVICE_ROLE_KEY"),
        {ANON: NO_ROLE_JWT},
    ),
    case("line-break", "dev", {"JWT_SECRET": "abc\ndef"}, ("JWT_SECRET", "contains a line break")),
    case(
        "white-space",
        "dev",
        {"JWT_SECRET": " change-me-in-production"},
        ("JWT_SECRET", "has leading or trailing"),
        severity="warning",
    ),
    case(
        "dollar",
        "dev",
        {"JWT_SECRET": "abc$HOME123"},
        ("JWT_SECRET", "contains '$' followed by a name"),
        {"JWT_SECRET": "abc$ 123"},
        severity="warning",
    ),
    case(
        "unknown-typo",
        "dev",
        {"JWT_SECRT": "some-value"},
        ("JWT_SECRT", "is not in the schema (a typo?)"),
        severity="warning",
    ),
    case(
        "unknown",
        "dev",
        # Unknown variables' values stay masked (a typo'd secret name); a one-character value would be masked
        # inside every other string of the output too (tmp paths included), so use a distinctive one.
        {"SOMETHING_ELSE": "an-unknown-value"},
        ("SOMETHING_ELSE", "is not in the schema"),
        severity="warning",
    ),
    # --- between variables --------------------------------------------------------------------------------
    case(
        "pool-max-below-min",
        "dev",
        {"DATABASE_POOL_MIN": "20"},
        ("DATABASE_POOL_MAX", "is smaller than DATABASE_POOL_MIN (10 < 20)"),
        {"DATABASE_POOL_MIN": "10"},
    ),
    case(
        "pooled-user",
        "dev",
        {"DATABASE_POOLED_URL": "postgresql://other:cmx_app_pass_dev@localhost:6432/cmx_db"},
        ("DATABASE_POOLED_URL", "user differs from DATABASE_URL's"),
        stack=False,
    ),
    case(
        "pooled-password",
        "dev",
        {"DATABASE_POOLED_URL": "postgresql://cmx_app:other-pw@localhost:6432/cmx_db"},
        ("DATABASE_POOLED_URL", "password differs from DATABASE_URL's"),
        stack=False,
    ),
    case(
        "pooled-database",
        "dev",
        {"DATABASE_POOLED_URL": "postgresql://cmx_app:cmx_app_pass_dev@localhost:6432/x"},
        ("DATABASE_POOLED_URL", "database differs from DATABASE_URL's"),
        stack=False,
    ),
    case(
        "postgres-port-vs-url",
        "dev",
        {"POSTGRES_PORT": "5433"},
        ("POSTGRES_PORT", "is 5433 but DATABASE_URL uses port 5432"),
        stack=False,
    ),
    case(
        "pgbouncer-port-vs-url",
        "dev",
        {"PGBOUNCER_PORT": "6433"},
        ("PGBOUNCER_PORT", "is 6433 but DATABASE_POOLED_URL uses port 6432"),
        stack=False,
    ),
    case(
        "redis-url-vs-password",
        "dev",
        {"REDIS_PASSWORD": "abc", "REDIS_URL": "redis://:xyz@localhost:6379"},
        ("REDIS_URL", "password differs from REDIS_PASSWORD"),
        {"REDIS_PASSWORD": "abc", "REDIS_URL": "redis://:abc@localhost:6379"},
        stack=False,
    ),
    case(
        "redis-url-lacks-password",
        "dev",
        {"REDIS_PASSWORD": "abc"},
        ("REDIS_URL", "has no password but REDIS_PASSWORD is set"),
        stack=False,
    ),
    case(
        "redis-password-empty",
        "dev",
        {"REDIS_URL": "redis://:abc@localhost:6379"},
        ("REDIS_PASSWORD", "is empty but REDIS_URL carries a password"),
        stack=False,
    ),
    case(
        "app-url-port",
        "dev",
        {"APP_URL": "http://localhost:3002"},
        ("APP_URL", "points at localhost port 3002 but the backend listens on APP_PORT 3001"),
    ),
    case(
        "cmx-environment",
        "dev",
        {"CMX_ENVIRONMENT": "production"},
        ("CMX_ENVIRONMENT", "says production but the file is being validated for dev"),
    ),
    # --- against the stack settings -----------------------------------------------------------------------
    case(
        "stack-postgres-user",
        "dev",
        {"DATABASE_URL": DB.replace("cmx_app", "someone")},
        ("DATABASE_URL", "user 'someone' differs from the PostgreSQL user"),
    ),
    case(
        "stack-postgres-password",
        "dev",
        {"DATABASE_URL": DB.replace("cmx_app_pass_dev", "other_pw")},
        ("DATABASE_URL", "password differs from the PostgreSQL password"),
    ),
    case(
        "stack-postgres-host",
        "dev",
        {"DATABASE_URL": DB.replace("localhost", "db.example.com")},
        ("DATABASE_URL", "host 'db.example.com' differs from the PostgreSQL host"),
        {"DATABASE_URL": DB.replace("localhost", "127.0.0.1")},
    ),
    case(
        "stack-postgres-port",
        "dev",
        {"DATABASE_URL": DB.replace("5432", "5433"), "POSTGRES_PORT": "5433"},
        ("DATABASE_URL", "port 5433 differs from the PostgreSQL port"),
    ),
    case(
        "stack-postgres-db",
        "dev",
        {"DATABASE_URL": DB.replace("cmx_db", "otherdb")},
        ("DATABASE_URL", "database 'otherdb' differs from the PostgreSQL database"),
    ),
    case(
        "stack-pgbouncer-port",
        "dev",
        {"DATABASE_POOLED_URL": DB.replace("5432", "6433"), "PGBOUNCER_PORT": "6433"},
        ("DATABASE_POOLED_URL", "port 6433 differs from the PgBouncer port"),
    ),
    case(
        "stack-postgres-port-variable",
        "dev",
        {},
        ("POSTGRES_PORT", "is 5432 but the stack publishes it on 5433"),
        {"DATABASE_URL": DB.replace("5432", "5433"), "POSTGRES_PORT": "5433"},
        stack={"postgres_port": 5433},
    ),
    case(
        "stack-redis-requires-password",
        "dev",
        {},
        ("REDIS_URL", "has no password but Redis requires one"),
        {"REDIS_URL": "redis://:srv-pass@localhost:6379", "REDIS_PASSWORD": "srv-pass"},
        stack={"redis_password": "srv-pass"},
    ),
    case(
        "stack-redis-password",
        "dev",
        {"REDIS_URL": "redis://:wrong@localhost:6379", "REDIS_PASSWORD": "wrong"},
        ("REDIS_URL", "password differs from the Redis password"),
        {"REDIS_URL": "redis://:srv-pass@localhost:6379", "REDIS_PASSWORD": "srv-pass"},
        stack={"redis_password": "srv-pass"},
    ),
    case(
        "stack-redis-has-no-password",
        "dev",
        {"REDIS_URL": "redis://:abc@localhost:6379", "REDIS_PASSWORD": "abc"},
        ("REDIS_URL", "carries a password but Redis has none"),
    ),
    case(
        "stack-redis-password-variable",
        "dev",
        {"REDIS_PASSWORD": "abc", "REDIS_URL": "redis://:abc@localhost:6379"},
        ("REDIS_PASSWORD", "differs from the Redis password"),
    ),
    case(
        "stack-redis-port",
        "dev",
        {"REDIS_URL": "redis://localhost:6380"},
        ("REDIS_URL", "port 6380 differs from the Redis port"),
    ),
    case(
        "stack-redis-host",
        "dev",
        {"REDIS_URL": "redis://cache.example.com:6379"},
        ("REDIS_URL", "host 'cache.example.com' differs from the Redis host"),
    ),
    case(
        "stack-s3-port",
        "dev",
        {"S3_ENDPOINT": "http://localhost:9002"},
        ("S3_ENDPOINT", "port 9002 differs from the storage's S3 port"),
    ),
    case(
        "stack-s3-host",
        "dev",
        {"S3_ENDPOINT": "http://s3.example.com:9000"},
        ("S3_ENDPOINT", "host 's3.example.com' differs from the storage host"),
    ),
    case(
        "stack-s3-access-key",
        "dev",
        {"S3_ACCESS_KEY": "otherkey"},
        ("S3_ACCESS_KEY", "differs from the storage's credentials"),
    ),
    case(
        "stack-s3-secret-key",
        "dev",
        {"S3_SECRET_KEY": "othersecret"},
        ("S3_SECRET_KEY", "differs from the storage's credentials"),
    ),
    case(
        "stack-s3-bucket",
        "dev",
        {"S3_BUCKET": "other-bucket"},
        ("S3_BUCKET", "'other-bucket' differs from the storage's 'cleanmatex-dev'"),
    ),
    case(
        "stack-s3-region",
        "dev",
        {"S3_REGION": "eu-west-1"},
        ("S3_REGION", "'eu-west-1' differs from the storage's 'us-east-1'"),
    ),
    # --- staging / production only ------------------------------------------------------------------------
    case(
        "missing-secret",
        "production",
        {"JWT_SECRET": None},
        ("JWT_SECRET", "is missing (required in production)"),
    ),
    case(
        "default-jwt-secret",
        "staging",
        {"JWT_SECRET": "change-me-in-production"},
        ("JWT_SECRET", "is a well-known default value (refused in staging)"),
    ),
    case(
        "default-s3-access-key",
        "staging",
        {"S3_ACCESS_KEY": "minioadmin"},
        ("S3_ACCESS_KEY", "is a well-known default value"),
        stack={"s3_access_key": None},
        good_stack=None,
    ),
    case(
        "default-s3-secret-key",
        "production",
        {"S3_SECRET_KEY": "minioadmin123"},
        ("S3_SECRET_KEY", "is a well-known default value"),
        stack={"s3_secret_key": None},
        good_stack=None,
    ),
    case(
        "default-db-password",
        "production",
        {"DATABASE_URL": DB, "DATABASE_POOLED_URL": DB.replace("5432", "6432")},
        ("DATABASE_URL", "its password is a well-known default value"),
        stack={"postgres_app_password": "cmx_app_pass_dev"},
        good_stack=None,
    ),
    case(
        "short-jwt-secret",
        "staging",
        {"JWT_SECRET": JWT_SECRET[:31]},
        ("JWT_SECRET", "is shorter than 32 characters"),
        {"JWT_SECRET": JWT_SECRET[:32]},
    ),
    case("low-variety-secret", "staging", {"JWT_SECRET": "ab" * 20}, ("JWT_SECRET", "fewer than 6 distinct")),
    case(
        "placeholder-secret",
        "production",
        {"WHATSAPP_API_KEY": "REPLACE-ME-whatsapp-api-key"},
        ("WHATSAPP_API_KEY", "is a placeholder"),
    ),
    case(
        "your-placeholder",
        "production",
        {"WHATSAPP_API_KEY": "your-whatsapp-api-key"},
        ("WHATSAPP_API_KEY", "is a placeholder"),
    ),
    case(
        "supabase-demo-key", "staging", {ANON: DEMO_ANON_KEY}, (ANON, "is the Supabase CLI's public demo key")
    ),
    case(
        "http-app-url",
        "staging",
        {"APP_URL": "http://api.staging.cleanmatex.invalid"},
        ("APP_URL", "uses plain http:// in staging"),
    ),
    case(
        "http-supabase-url",
        "production",
        {"NEXT_PUBLIC_SUPABASE_URL": "http://supabase.cleanmatex.invalid"},
        ("NEXT_PUBLIC_SUPABASE_URL", "uses plain http:// in production"),
    ),
    case(
        "http-s3-own-private-address",
        "staging",
        {"S3_ENDPOINT": "http://10.0.0.6:9000"},
        ("S3_ENDPOINT", "uses plain http:// in staging"),
        {"S3_ENDPOINT": "http://10.0.0.5:9000"},
        stack=dict(
            dict.fromkeys(("s3_port", "s3_access_key", "s3_secret_key", "s3_bucket", "s3_region")),
            s3_host="10.0.0.5",
        ),
    ),
    case(
        "http-s3-remote",
        "staging",
        {"S3_ENDPOINT": "http://s3.example.com"},
        ("S3_ENDPOINT", "uses plain http:// in staging"),
        {"S3_ENDPOINT": "https://s3.example.com"},
        stack=dict.fromkeys(
            ("s3_host", "s3_port", "s3_access_key", "s3_secret_key", "s3_bucket", "s3_region")
        ),
    ),
    case(
        "redis-no-password",
        "staging",
        {"REDIS_URL": "redis://localhost:6379"},
        ("REDIS_URL", "has no password (required in staging)"),
    ),
    case(
        "redis-weak-password",
        "production",
        {"REDIS_URL": "redis://:redis@localhost:6379", "REDIS_PASSWORD": "redis"},
        ("REDIS_URL", "its password is a well-known default value"),
        stack={"redis_password": "redis"},
        good_stack=None,
    ),
    case(
        "node-env-production",
        "staging",
        {"NODE_ENV": "development"},
        ("NODE_ENV", "must be production in staging"),
    ),
    # --- ci is lenient like dev ---------------------------------------------------------------------------
    case(
        "ci-node-env",
        "ci",
        {"NODE_ENV": "staging"},
        ("NODE_ENV", "not one of the allowed values"),
        {"JWT_SECRET": "change-me-in-production"},
    ),
]


def _stack(env, stack_changes):
    if stack_changes is False:
        return None
    return apply(base_stack(env), stack_changes or {})


def _values(env, changes):
    values = base_values(env)
    if env == "ci":
        values = apply(values, {"CMX_ENVIRONMENT": "ci", "NODE_ENV": "test"})
    return apply(values, changes)


@pytest.mark.parametrize("env", env_schema.ENVIRONMENTS)
def test_base_values_are_valid(env):
    report = validate_mapping(_values(env, {}), env, base_stack(env))
    assert report.problems == []


PARAMS = ("env", "bad", "good", "stack", "good_stack", "expect")


@pytest.mark.parametrize(PARAMS, CASES)
def test_rule_reports_failing_input(env, bad, good, stack, good_stack, expect):
    report = validate_mapping(_values(env, bad), env, _stack(env, stack))
    severity, variable, text = expect
    found = [
        p for p in report.problems if p.severity == severity and p.variable == variable and text in p.message
    ]
    assert found, f"expected {expect} in {report.problems}"
    assert report.valid is (severity == "warning")
    _assert_no_secret(report)


@pytest.mark.parametrize(PARAMS, CASES)
def test_rule_accepts_passing_input(env, bad, good, stack, good_stack, expect):
    report = validate_mapping(_values(env, good), env, _stack(env, good_stack))
    assert report.errors == []
    assert [p for p in report.warnings if p.variable == expect[1]] == []


def _assert_no_secret(report):
    texts = "\n".join(problem.text for problem in report.problems)
    for secret in report.secret_strings():
        if len(secret) >= 4:
            assert secret not in texts, "a secret value appears in a message"


# --- the same inputs through the CLI and the module ---------------------------------------------------


def _triples(result_problems):
    return [(p["severity"], p["variable"], p["line"], p["message"], p["expected"]) for p in result_problems]


@pytest.mark.parametrize("which", ["bad", "good"])
@pytest.mark.parametrize(PARAMS, CASES)
def test_module_and_cli_give_the_same_verdict(tmp_path, which, env, bad, good, stack, good_stack, expect):
    values = _values(env, bad if which == "bad" else good)
    stack_settings = _stack(env, stack if which == "bad" else good_stack)
    env_file = tmp_path / ".env"
    env_file.write_text(env_text(values), encoding="utf-8")

    library = validate_file(str(env_file), env, stack_settings)
    mapping = validate_mapping(values, env, stack_settings)

    args = ["validate", "--env", env, str(env_file), "--format", "json"]
    if stack_settings:
        stack_file = tmp_path / "stack.json"
        stack_file.write_text(json.dumps(stack_settings), encoding="utf-8")
        args += ["--stack-json", str(stack_file)]
    cli = run_cli(*args)
    assert cli.returncode == (0 if library.valid else 1), cli.stderr
    cli_problems = json.loads(cli.stdout)[0]["problems"]

    module_file = run_module({"environment": env, "path": str(env_file), "stack": stack_settings})
    module_values = run_module({"environment": env, "values": values, "stack": stack_settings})

    expected_texts = [p.text for p in library.problems]
    assert [p["text"] for p in cli_problems] == expected_texts
    assert [p["text"] for p in module_file["problems"]] == expected_texts
    assert module_file.get("failed", False) is not library.valid
    assert module_file["errors"] == [p.text for p in library.errors]
    # The mapping has no file and lines; everything else is identical.
    assert [p["text"] for p in module_values["problems"]] == [p.text for p in mapping.problems]
    assert [t[:2] + t[3:] for t in _triples(module_values["problems"])] == [
        (p.severity, p.variable, p.message, p.expected) for p in library.problems
    ]
    assert module_values.get("failed", False) is not library.valid


def test_cli_text_output_and_exit_codes(tmp_path):
    good = tmp_path / "good.env"
    good.write_text(env_text(_values("dev", {})), encoding="utf-8")
    bad = tmp_path / "bad.env"
    bad.write_text(
        env_text(_values("staging", {"JWT_SECRET": "change-me-in-production", "APP_URL": None})), "utf-8"
    )

    ok = run_cli("validate", "--env", "dev", str(good))
    assert ok.returncode == 0
    assert ok.stdout.strip() == f"{good} for environment dev: valid"

    failed = run_cli("validate", "--env", "staging", str(bad))
    assert failed.returncode == 1
    report = validate_file(str(bad), "staging")
    assert failed.stdout.splitlines() == [f"error: {p.text}" for p in report.problems] + [report.summary()]
    assert "change-me-in-production" not in failed.stdout

    usage = run_cli("validate", "--env", "qa", str(good))
    assert usage.returncode == 2
    bad_stack = run_cli("validate", "--env", "dev", "--stack", "nonsense=1", str(good))
    assert bad_stack.returncode == 2 and "unknown stack setting 'nonsense'" in bad_stack.stderr
    missing = run_cli("validate", "--env", "dev", str(tmp_path / "nope.env"))
    assert missing.returncode == 1 and "cannot be read (No such file or directory)" in missing.stdout


def test_cli_stack_key_value_and_quiet(tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_text(env_text(_values("dev", {"JWT_SECRT": "x"})), encoding="utf-8")
    result = run_cli("validate", "--env", "dev", "--quiet", "--stack", "postgres_port=5433", str(env_file))
    assert result.returncode == 1
    assert "warning:" not in result.stdout
    assert "DATABASE_URL: port 5432 differs from the PostgreSQL port (stack postgres_port)" in result.stdout


def test_module_reports_undefined_values_with_everything_else():
    values = _values("staging", {"JWT_SECRET": None, "DATABASE_URL": None, "APP_URL": "http://x.invalid"})
    result = run_module(
        {"environment": "staging", "values": values, "undefined": ["JWT_SECRET", "DATABASE_URL"]}
    )
    assert result["failed"] is True
    texts = result["errors"]
    assert "JWT_SECRET: could not be templated: its env_values entry is undefined" in texts[0] or any(
        t.startswith("JWT_SECRET: could not be templated: its env_values entry is undefined") for t in texts
    )
    assert any(
        t.startswith(
            "DATABASE_URL: could not be templated: its env_values entry, or an inventory variable its "
            "default uses (cmx_postgres_app_user, cmx_postgres_app_password,"
        )
        for t in texts
    )
    assert any(t.startswith("APP_URL: uses plain http:// in staging") for t in texts)
    assert not any("is missing" in t for t in texts)


def test_module_masks_only_secrets_in_its_invocation():
    values = _values("dev", {"JWT_SECRET": "dev-only-jwt-secret-value-123"})
    result = run_module({"environment": "dev", "values": values, "stack": DEV_STACK})
    shown = result["invocation"]["module_args"]["values"]
    assert shown["JWT_SECRET"] == "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER"
    assert shown["DATABASE_URL"] == "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER"
    assert shown["S3_SECRET_KEY"] == "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER"
    assert shown["REDIS_DB"] == "0" and shown["APP_PORT"] == "3001"
    assert (
        result["invocation"]["module_args"]["stack"]["postgres_password"]
        == "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER"
    )
    dumped = json.dumps(result)
    assert "dev-only-jwt-secret-value-123" not in dumped and "cmx_pass_dev" not in dumped


def test_module_rejects_bad_parameters():
    assert run_module({"environment": "qa", "values": {}})["failed"] is True
    both = run_module({"environment": "dev", "values": {}, "path": "/tmp/x"})
    assert both["failed"] is True and "mutually exclusive" in both["msg"]
    neither = run_module({"environment": "dev"})
    assert neither["failed"] is True and "one of the following is required" in neither["msg"]


def test_module_fail_on_error_false_succeeds_with_the_verdict():
    result = run_module(
        {"environment": "staging", "values": {"NODE_ENV": "development"}, "fail_on_error": False}
    )
    assert "failed" not in result
    assert result["valid"] is False and result["error_count"] > 1
    assert result["msg"].startswith("values for environment staging: INVALID: ")


def test_check_mode_is_supported():
    result = run_module({"environment": "dev", "values": _values("dev", {}), "_ansible_check_mode": True})
    assert result["changed"] is False and result["valid"] is True and "skipped" not in result


def test_mapping_normalizes_ansible_types():
    values = _values(
        "dev", {"APP_PORT": 3001, "ENABLE_ASSEMBLY": True, "ENABLE_MARKETPLACE": False, "REDIS_DB": 0}
    )
    assert validate_mapping(values, "dev", DEV_STACK).problems == []
    report = validate_mapping(_values("dev", {"EXTRA": [1, 2], "1BAD": "x"}), "dev")
    assert [(p.variable, p.message) for p in report.errors] == [
        ("EXTRA", "is a list, not a single value"),
        ("1BAD", "is not a valid variable name"),
    ]


def test_every_problem_is_reported_in_one_run():
    report = validate_text(
        "NODE_ENV=development\nJWT_SECRET=short\nAPP_URL=http://api.example.com\nREDIS_DB=x\nJWT_SECRT=1\n",
        "production",
    )
    variables = {p.variable for p in report.errors}
    assert {"NODE_ENV", "JWT_SECRET", "APP_URL", "REDIS_DB", "DATABASE_URL", "S3_BUCKET"} <= variables
    assert [p.variable for p in report.warnings] == ["JWT_SECRT"]
    assert report.summary().startswith(".env for environment production: INVALID: ")


def test_unknown_environment_and_stack_keys_are_usage_errors():
    with pytest.raises(ValueError, match="unknown environment 'qa'"):
        validate_mapping({}, "qa")
    with pytest.raises(ValueError, match="unknown stack setting 'pg_port'"):
        validate_mapping({}, "dev", {"pg_port": 1})
    with pytest.raises(ValueError, match="must be a port number"):
        validate_mapping({}, "dev", {"postgres_port": "abc"})
