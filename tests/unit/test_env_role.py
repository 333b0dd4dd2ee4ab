"""The env role for real (ansible-playbook on localhost): validate first, render 0600 files, keep secrets
out of the output, stop before writing anything when the inventory is broken, list every problem at once."""

from __future__ import annotations

import json
import re
import shutil
import stat
import subprocess
import sys

import pytest
from ansible_collections.cleanmatex.infra.plugins.module_utils.env_validate import (
    Report,
    parse_env,
    validate_file,
)
from test_env_support import DEV_APP_STACK, REPO, ansible_env, dev_values

pytestmark = pytest.mark.skipif(
    shutil.which("ansible-playbook", path=str(REPO / ".venv" / "bin")) is None,
    reason="needs the repository's .venv (./bootstrap.sh)",
)

PLAY = """\
- name: Application environment
  hosts: all
  gather_facts: false
  roles:
    - role: cleanmatex.infra.env
"""
VALIDATE_ONLY_PLAY = """\
- name: Validate the application environment only
  hosts: all
  gather_facts: false
  tasks:
    - name: Validate
      ansible.builtin.import_role:
        name: cleanmatex.infra.env
        tasks_from: validate
"""
CI_VAULT = ["--vault-password-file", str(REPO / "inventories" / "ci" / ".vault-pass-ci")]
BOOTSTRAP_PASSWORD = "cmx-bootstrap-vault-password-public-placeholders-only"
LOCAL = ["-e", "ansible_connection=local", "-e", f"ansible_python_interpreter={sys.executable}"]


def playbook(tmp_path, *args, play=PLAY, inventory="inventories/dev"):
    path = tmp_path / "play.yml"
    path.write_text(play, encoding="utf-8")
    return subprocess.run(
        [str(REPO / ".venv" / "bin" / "ansible-playbook"), "-i", inventory, str(path), *args],
        cwd=REPO,
        env=ansible_env(),
        capture_output=True,
        text=True,
        check=False,
    )


def out_dir_args(out):
    return ["-e", f"env_output_dir={out}"]


def parsed(path):
    report = Report("dev", str(path))
    parse_env(path.read_text(encoding="utf-8"), report)
    assert report.problems == []
    return report.values


def recap(result):
    match = re.search(r"ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", result.stdout)
    assert match, result.stdout + result.stderr
    return {
        k: int(v) for k, v in zip(("ok", "changed", "unreachable", "failed"), match.groups(), strict=True)
    }


def test_dev_renders_the_example_values_0600_and_is_idempotent(tmp_path):
    out = tmp_path / "app"
    first = playbook(tmp_path, *out_dir_args(out))
    assert first.returncode == 0, first.stdout + first.stderr
    env_file = out / ".env"
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(out.stat().st_mode) == 0o700
    assert parsed(env_file) == dev_values()
    assert env_file.read_text(encoding="utf-8").startswith("#\n# Ansible managed\n#\n")
    assert validate_file(str(env_file), "dev", DEV_APP_STACK).problems == []
    second = playbook(tmp_path, *out_dir_args(out))
    assert recap(second)["changed"] == 0


def test_check_mode_writes_nothing(tmp_path):
    out = tmp_path / "app"
    result = playbook(tmp_path, "--check", "--diff", *out_dir_args(out))
    assert result.returncode == 0, result.stdout
    assert not out.exists()
    assert "change-me-in-production" not in result.stdout


def test_values_round_trip_through_the_template(tmp_path):
    out = tmp_path / "app"
    overrides = {
        "env_output_dir": str(out),
        "env_values": {
            "JWT_SECRET": 'it\'s a "secret" #1 \\ with spaces',
            "WHATSAPP_API_KEY": "has space and 'single'",
            "SENDGRID_API_KEY": None,
            "ENABLE_MARKETPLACE": True,
            "APP_PORT": 3001,
            "CUSTOM_FLAG": "a#b",
        },
        "env_files": [
            {"dest": str(out / ".env")},
            {"dest": str(out / "web.env"), "groups": ["supabase", "features"]},
        ],
    }
    result = playbook(tmp_path, "-e", json.dumps(overrides))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "CUSTOM_FLAG: is not in the schema" in result.stdout + result.stderr  # an Ansible warning
    values = parsed(out / ".env")
    expected = dict(dev_values())
    expected.update(
        JWT_SECRET='it\'s a "secret" #1 \\ with spaces',
        WHATSAPP_API_KEY="has space and 'single'",
        ENABLE_MARKETPLACE="true",
        CUSTOM_FLAG="a#b",
    )
    del expected["SENDGRID_API_KEY"]
    assert values == expected
    web = parsed(out / "web.env")
    assert sorted(web) == sorted(
        [
            "NEXT_PUBLIC_SUPABASE_URL",
            "NEXT_PUBLIC_SUPABASE_ANON_KEY",
            "SUPABASE_SERVICE_ROLE_KEY",
            "ENABLE_ASSEMBLY",
            "ENABLE_MARKETPLACE",
            "ENABLE_AI_FEATURES",
        ]
    )
    assert stat.S_IMODE((out / "web.env").stat().st_mode) == 0o600


def test_ci_takes_its_secret_from_the_test_vault(tmp_path):
    out = tmp_path / "app"
    result = playbook(tmp_path, *CI_VAULT, *out_dir_args(out), inventory="inventories/ci")
    assert result.returncode == 0, result.stdout + result.stderr
    values = parsed(out / ".env")
    assert values["JWT_SECRET"] == "cmx-ci-test-jwt-secret-protects-nothing-real"
    assert values["NODE_ENV"] == "test" and values["CMX_ENVIRONMENT"] == "ci"
    assert values["REDIS_URL"] == "redis://:ci-redis-test-password@localhost:16379"
    assert values["REDIS_PASSWORD"] == "ci-redis-test-password"

    without_password = playbook(tmp_path, *out_dir_args(tmp_path / "other"), inventory="inventories/ci")
    assert without_password.returncode != 0
    assert "no vault secrets" in without_password.stdout + without_password.stderr


def test_vvv_converge_prints_no_secret(tmp_path):
    out = tmp_path / "app"
    result = playbook(tmp_path, "-vvv", *CI_VAULT, *out_dir_args(out), inventory="inventories/ci")
    assert result.returncode == 0, result.stdout + result.stderr
    rendered = (out / ".env").read_text(encoding="utf-8")
    output = result.stdout + result.stderr
    secrets = [
        "cmx-ci-test-jwt-secret-protects-nothing-real",
        "ci-redis-test-password",
        "cmx_app_pass_ci",
        "minioadmin123",
        "minioadmin",
    ]
    for secret in secrets:
        assert secret in rendered
        assert secret not in output, f"{secret} appears in the -vvv output"
    # The superuser's and the other roles' passwords are in no .env (docs/security.md), and not in the output.
    for secret in (
        "cmx_pass_dev",
        "cmx_migrator_pass_ci",
        "cmx_health_pass_ci",
        "cmx_pgbouncer_admin_pass_ci",
    ):
        assert secret not in rendered and secret not in output, secret
    assert "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER" in output  # the module's invocation was printed, masked


def _staging(tmp_path, inventory, *args):
    password = tmp_path / "bootstrap-pass"
    password.write_text(BOOTSTRAP_PASSWORD + "\n", encoding="utf-8")
    return playbook(tmp_path, "--vault-password-file", str(password), *LOCAL, *args, inventory=str(inventory))


def test_staging_with_placeholders_stops_before_writing_and_lists_everything(tmp_path):
    out = tmp_path / "app"
    result = _staging(tmp_path, REPO / "inventories" / "staging", "-vvv", *out_dir_args(out))
    output = result.stdout + result.stderr
    assert result.returncode == 2
    assert not out.exists()
    assert "values for environment staging: INVALID: 19 errors" in output
    # The database roles' passwords no .env carries are refused on their own (docs/security.md).
    for name in (
        "cmx_postgres_password",
        "cmx_postgres_migration_password",
        "cmx_postgres_health_password",
        "cmx_pgbouncer_admin_password",
    ):
        assert f"  - {name}: is a placeholder, not a secret" in output, name
    for name in (
        "DATABASE_URL",
        "REDIS_URL",
        "REDIS_PASSWORD",
        "S3_ACCESS_KEY",
        "S3_SECRET_KEY",
        "JWT_SECRET",
        "NEXT_PUBLIC_SUPABASE_ANON_KEY",
        "SUPABASE_SERVICE_ROLE_KEY",
        "STRIPE_SECRET_KEY",
    ):
        assert re.search(rf"  - {name}: .*(placeholder|its password)", output), name
    assert "Render the application env files" not in output
    for secret in (
        "REPLACE-ME-jwt-secret",
        "REPLACE-ME-postgres-password",
        "REPLACE-ME-postgres-app-password",
        "REPLACE-ME-postgres-migration-password",
        "REPLACE-ME-redis-password",
        "REPLACE-ME-s3-secret-key",
        "REPLACE-ME-stripe-secret-key",
    ):
        assert secret not in output


def test_missing_vault_variables_are_reported_with_everything_else(tmp_path):
    inventory = tmp_path / "staging"
    shutil.copytree(REPO / "inventories" / "staging", inventory)
    vault = inventory / "group_vars" / "all" / "vault.yml"
    text = vault.read_text(encoding="utf-8")
    for name in ("vault_cmx_jwt_secret", "vault_cmx_postgres_app_password"):
        text = re.sub(rf"\n{name}: !vault \|\n(?: {{10}}.*\n)+", "\n", text)
    vault.write_text(text, encoding="utf-8")
    result = _staging(tmp_path, inventory, *out_dir_args(tmp_path / "app"))
    output = result.stdout + result.stderr
    assert result.returncode == 2
    assert "  - JWT_SECRET: could not be templated: its env_values entry is undefined" in output
    assert (
        "  - DATABASE_URL: could not be templated: its env_values entry, or an inventory variable" in output
    )
    assert "  - REDIS_PASSWORD: is a placeholder" in output


def test_broken_dev_override_fails_with_every_problem(tmp_path):
    out = tmp_path / "app"
    overrides = {
        "env_output_dir": str(out),
        "env_values": {
            "APP_URL": "ftp://localhost",
            "DATABASE_URL": "postgresql://someone:pw@localhost:5433/otherdb",
            "REDIS_DB": "sixteen",
        },
    }
    result = playbook(tmp_path, "-e", json.dumps(overrides))
    output = result.stdout + result.stderr
    assert result.returncode == 2
    assert not out.exists()
    for expected in (
        "  - APP_URL: uses the scheme ftp://",
        "  - DATABASE_URL: user 'someone' differs from the PostgreSQL user",
        "  - DATABASE_URL: password differs from the PostgreSQL password",
        "  - DATABASE_URL: port 5433 differs from the PostgreSQL port",
        "  - DATABASE_URL: database 'otherdb' differs from the PostgreSQL database",
        "  - DATABASE_POOLED_URL: user differs from DATABASE_URL's",
        "  - REDIS_DB: is not an integer",
    ):
        assert expected in output, expected


def test_validate_only_writes_nothing(tmp_path):
    out = tmp_path / "app"
    only = playbook(tmp_path, *out_dir_args(out), play=VALIDATE_ONLY_PLAY)
    assert only.returncode == 0, only.stdout + only.stderr
    disabled = playbook(tmp_path, *out_dir_args(out), "-e", "env_render_enabled=false")  # a string: | bool
    assert disabled.returncode == 0, disabled.stdout + disabled.stderr
    assert not out.exists()


def test_argument_spec_rejects_bad_inputs(tmp_path):
    result = playbook(tmp_path, "-e", '{"env_stack_checks": ["postgres", "mysql"]}')
    assert result.returncode == 2
    assert "env_stack_checks" in result.stdout + result.stderr


def _adhoc(*args):
    env = dict(ansible_env(), ANSIBLE_CALLBACK_RESULT_FORMAT="json")
    return subprocess.run(
        [
            str(REPO / ".venv" / "bin" / "ansible"),
            "localhost",
            "-m",
            "cleanmatex.infra.cmx_env_validate",
            *args,
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )


def test_module_runs_ad_hoc_with_the_libraries_messages(tmp_path):
    good = tmp_path / "good.env"
    good.write_text((REPO / ".env.example").read_text(encoding="utf-8"), encoding="utf-8")
    ok = _adhoc("-a", f"environment=dev path={good}")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    result = json.loads(ok.stdout.split("localhost | SUCCESS => ", 1)[1])
    assert result["msg"] == f"{good} for environment dev: valid" and result["valid"] is True

    bad = tmp_path / "bad.env"
    bad.write_text(good.read_text(encoding="utf-8") + "JWT_SECRT=x1y2\nREDIS_DB=99\n", encoding="utf-8")
    failed = _adhoc("-a", f"environment=staging path={bad}")
    output = failed.stdout + failed.stderr
    assert failed.returncode == 2
    report = validate_file(str(bad), "staging")
    assert f"Module failed: {report.summary()}" in output
    for problem in report.errors:
        assert f"  - {problem.text}\n" in output, problem.text
    assert (
        f"[WARNING]: {bad}:" in output
        and "JWT_SECRT: is not in the schema (a typo?); expected JWT_SECRET" in output
    )
    assert "cmx_pass_dev" not in output and "minioadmin123" not in output
