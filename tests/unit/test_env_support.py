"""Shared helpers for the env tests: valid value sets per environment, the CLI and module runners."""

from __future__ import annotations

import base64
import importlib.machinery
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

from ansible_collections.cleanmatex.infra.plugins.module_utils.env_validate import dotenv_value

REPO = Path(__file__).resolve().parents[2]
CLI = REPO / "bin" / "cmx-env"
VENV_BIN = REPO / ".venv" / "bin"


def load_cli():
    """bin/cmx-env as a Python module (it has no .py suffix)."""
    loader = importlib.machinery.SourceFileLoader("cmx_env_cli", str(CLI))
    spec = importlib.util.spec_from_loader("cmx_env_cli", loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def _b64(data):
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def make_jwt(role, iss="supabase"):
    claims = {"iss": iss, "ref": "cmxprojectref0001", "iat": 1760000000, "exp": 2075000000}
    if role is not None:
        claims["role"] = role
    header = _b64({"alg": "HS256", "typ": "JWT"})
    return f"{header}.{_b64(claims)}.c2lnbmF0dXJlLW5vdC1jaGVja2VkLWJ5LXRoZS12YWxpZGF0b3I"


# Supabase CLI's local demo keys are JWTs issued by "supabase-demo": public knowledge.
DEMO_ANON_KEY = make_jwt("anon", iss="supabase-demo")
DEMO_SERVICE_KEY = make_jwt("service_role", iss="supabase-demo")

PG_PASSWORD = "Q7f3kP9xL2mN8vR4tW6yZ1"
REDIS_PASSWORD = "R3dk8Qz2Lm5Nx7Vb9Pw4"
S3_ACCESS = "AKIAQ7F3KP9XL2MN8VR4"
S3_SECRET = "kP9xL2mN8vR4tW6yQ7f3aB5cD1eF0gH2"
JWT_SECRET = "9f2c4e6a8b0d1f3e5a7c9b1d3f5e7a9c2d4f6a8b"


def dev_values():
    """The dev values exactly as generated into .env.example (schema defaults over the dev inventory)."""
    return load_cli().dev_values(REPO)


DEV_STACK = {
    "postgres_host": "localhost",
    "postgres_port": 5432,
    "postgres_user": "cmx_user",
    "postgres_password": "cmx_pass_dev",
    "postgres_db": "cmx_db",
    # The URLs log in as the app role (docs/security.md), not as postgres_user (the bootstrap superuser).
    "postgres_app_user": "cmx_app",
    "postgres_app_password": "cmx_app_pass_dev",
    "pgbouncer_port": 6432,
    "redis_host": "localhost",
    "redis_port": 6379,
    "redis_password": "",
    "s3_host": "localhost",
    "s3_port": 9000,
    "s3_access_key": "minioadmin",
    "s3_secret_key": "minioadmin123",
    "s3_bucket": "cleanmatex-dev",
    "s3_region": "us-east-1",
}

# The dev inventory's stack as the env role passes it (the same as DEV_STACK).
DEV_APP_STACK = DEV_STACK


def strict_values(environment):
    """A complete, strong set of values that passes in staging or production."""
    domain = "staging.cleanmatex.invalid" if environment == "staging" else "cleanmatex.invalid"
    return {
        "NODE_ENV": "production",
        "CMX_ENVIRONMENT": environment,
        "DATABASE_URL": f"postgresql://cmx_app:{PG_PASSWORD}@localhost:5432/cmx_db",
        "DATABASE_POOLED_URL": f"postgresql://cmx_app:{PG_PASSWORD}@localhost:6432/cmx_db",
        "DATABASE_POOL_MIN": "2",
        "DATABASE_POOL_MAX": "10",
        "POSTGRES_PORT": "5432",
        "PGBOUNCER_PORT": "6432",
        "NEXT_PUBLIC_SUPABASE_URL": f"https://supabase.{domain}",
        "NEXT_PUBLIC_SUPABASE_ANON_KEY": make_jwt("anon"),
        "SUPABASE_SERVICE_ROLE_KEY": make_jwt("service_role"),
        "REDIS_URL": f"redis://:{REDIS_PASSWORD}@localhost:6379",
        "REDIS_DB": "0",
        "REDIS_PASSWORD": REDIS_PASSWORD,
        "S3_ENDPOINT": "http://localhost:9000",
        "S3_REGION": "us-east-1",
        "S3_ACCESS_KEY": S3_ACCESS,
        "S3_SECRET_KEY": S3_SECRET,
        "S3_BUCKET": f"cleanmatex-{environment}",
        "APP_PORT": "3001",
        "APP_URL": f"https://api.{domain}",
        "WEB_ADMIN_URL": f"https://admin.{domain}",
        "JWT_SECRET": JWT_SECRET,
        "JWT_EXPIRES_IN": "1h",
        "ENABLE_ASSEMBLY": "true",
        "ENABLE_MARKETPLACE": "false",
        "ENABLE_AI_FEATURES": "false",
        "WHATSAPP_API_KEY": "wa8Kd93Jf0Lq2Zx7Vb5Nm1",
        "WHATSAPP_PHONE_NUMBER": "+96550000000",
        "TWILIO_ACCOUNT_SID": "AC0123456789abcdef0123456789abcdef",
        "TWILIO_AUTH_TOKEN": "fedcba9876543210fedcba9876543210",
        "SENDGRID_API_KEY": "SG.abcdefghijklmnop1234.ABCDEFGHIJKLMNOPqrstuvwx_-12",
        "STRIPE_SECRET_KEY": ("sk_live_" if environment == "production" else "sk_test_")
        + "51Hx9Kd93Jf0Lq2Zx7Vb5",
    }


def strict_stack(environment):
    return dict(
        DEV_STACK,
        postgres_password=PG_PASSWORD,
        postgres_app_password=PG_PASSWORD,
        redis_password=REDIS_PASSWORD,
        s3_access_key=S3_ACCESS,
        s3_secret_key=S3_SECRET,
        s3_bucket=f"cleanmatex-{environment}",
    )


def base_values(environment):
    return dev_values() if environment in ("dev", "ci") else strict_values(environment)


def base_stack(environment):
    if environment == "ci":
        return dict(DEV_STACK, s3_bucket="cleanmatex-dev")
    return dict(DEV_STACK) if environment == "dev" else strict_stack(environment)


def apply(values, changes):
    """values with changes applied; a None change removes the variable."""
    result = dict(values)
    for name, value in changes.items():
        if value is None:
            result.pop(name, None)
        else:
            result[name] = value
    return result


def env_text(values):
    """An env file holding the values (quoted the way the role renders them)."""
    return "".join(f"{name}={dotenv_value(str(value))}\n" for name, value in values.items())


def run_cli(*args, stdin=None):
    return subprocess.run(
        [sys.executable, str(CLI), *args], capture_output=True, text=True, input=stdin, check=False
    )


def run_module(params):
    """cmx_env_validate's main() in this process, as Ansible would run it; returns the result dict."""
    from ansible_collections.cleanmatex.infra.plugins.modules import cmx_env_validate
    from ansible_collections.cleanmatex.infra.tests.module_main import run_main

    return run_main(cmx_env_validate, params)


def ansible_env():
    env = dict(os.environ)
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    env["ANSIBLE_FORCE_COLOR"] = "0"
    env["ANSIBLE_NOCOLOR"] = "1"
    # Each test says whether Ansible gets the vault password; the test runner's own setting must not leak in.
    env.pop("ANSIBLE_VAULT_PASSWORD_FILE", None)
    return env
