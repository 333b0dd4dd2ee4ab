"""The per-environment inventories: vaulted secrets where they belong, the staging/production invariants, and
no env file or real secret that can end up in git."""

from __future__ import annotations

import re
import subprocess

import pytest
from ansible.errors import AnsibleError
from ansible.parsing.vault import VaultLib, VaultSecret
from ansible_collections.cleanmatex.infra.plugins.module_utils import env_schema as schema
from ansible_collections.cleanmatex.infra.plugins.module_utils.env_validate import weakness
from test_env_support import REPO, load_cli

BOOTSTRAP_PASSWORD = b"cmx-bootstrap-vault-password-public-placeholders-only"
CI_PASSWORD_FILE = REPO / "inventories" / "ci" / ".vault-pass-ci"
STRICT = schema.STRICT_ENVIRONMENTS
VAULT_REF = re.compile(r"\{\{ (vault_[a-z0-9_]+) \}\}\Z")


def group_vars(env, name):
    path = REPO / "inventories" / env / "group_vars" / "all" / name
    return load_cli().load_yaml(path) if path.exists() else {}


def vaulted(env):
    """{name: ciphertext} of the `!vault` values in an environment's vault.yml."""
    text = (REPO / "inventories" / env / "group_vars" / "all" / "vault.yml").read_text(encoding="utf-8")
    found = {}
    for match in re.finditer(r"^(\w+): !vault \|\n((?: {10}.*\n)+)", text, re.MULTILINE):
        found[match.group(1)] = "\n".join(line.strip() for line in match.group(2).splitlines())
    return found


def decrypt(ciphertext, password):
    try:
        return VaultLib([("default", VaultSecret(password))]).decrypt(ciphertext).decode()
    except AnsibleError:
        return None


@pytest.mark.parametrize("env", STRICT)
def test_strict_vault_holds_only_placeholders_while_it_opens_with_the_public_password(env):
    values = vaulted(env)
    assert values, "vault.yml holds no !vault value"
    text = (REPO / "inventories" / env / "group_vars" / "all" / "vault.yml").read_text(encoding="utf-8")
    assert not re.search(r"^vault_\w+: (?!!vault)", text, re.MULTILINE), "a plain (unencrypted) vault_ value"
    for name, ciphertext in values.items():
        plain = decrypt(ciphertext, BOOTSTRAP_PASSWORD)
        if plain is None:
            continue  # encrypted with the environment's real password: fine
        assert weakness(plain, schema.MIN_SECRET_LENGTH) == "is a placeholder, not a secret", (
            f"{env}: {name} opens with the public bootstrap password but is not a placeholder: "
            "encrypt it with the environment's own vault password"
        )


@pytest.mark.parametrize("env", STRICT)
def test_every_vault_reference_is_defined_and_every_vault_value_used(env):
    referenced = set()
    for name in ("env.yml", "stack.yml"):
        text = (REPO / "inventories" / env / "group_vars" / "all" / name).read_text(encoding="utf-8")
        referenced.update(re.findall(r"\{\{ (vault_[a-z0-9_]+) \}\}", text))
    assert referenced == set(vaulted(env))


@pytest.mark.parametrize("env", STRICT)
def test_strict_secrets_come_from_the_vault(env):
    values = group_vars(env, "env.yml")["env_values"]
    stack = group_vars(env, "stack.yml")
    for entry in schema.VARIABLES:
        if not entry["secret"] or entry["type"] == "url":
            continue
        if entry["name"] in values:
            assert VAULT_REF.match(values[entry["name"]]), f"{entry['name']} is not a vault reference"
        else:
            inputs = schema.template_inputs(entry["default"][env])
            assert inputs, f"{entry['name']} has no value in {env}"
            for name in inputs:
                if name.endswith(("password", "key")):
                    assert VAULT_REF.match(stack[name]), f"{name} is not a vault reference"
    for name in ("cmx_postgres_password", "cmx_redis_password", "cmx_s3_access_key", "cmx_s3_secret_key"):
        assert VAULT_REF.match(stack[name]), name


@pytest.mark.parametrize("env", STRICT)
def test_strict_stack_settings(env):
    stack = group_vars(env, "stack.yml")
    assert stack["cmx_environment"] == env
    assert stack["cmx_bind_address"] == "127.0.0.1"
    # No registry needed on the host: the control machine pulls or builds, then ships what the host lacks.
    assert stack["cmx_image_source"] == "auto"
    assert stack["cmx_image_delivery"] == "ship"
    assert stack["cmx_redis_commander_enabled"] is False
    assert all(origin.startswith("https://") for origin in stack["cmx_s3_cors_origins"])
    for name, value in group_vars(env, "env.yml")["env_values"].items():
        if schema.BY_NAME[name]["type"] == "url":
            assert value.startswith("https://"), name


@pytest.mark.parametrize("env", STRICT)
def test_strict_hosts_are_remote_placeholders(env):
    hosts = load_cli().load_yaml(REPO / "inventories" / env / "hosts.yml")["all"]["hosts"]
    assert hosts
    for name, settings in hosts.items():
        assert name.endswith(".cleanmatex.invalid")
        assert (settings or {}).get("ansible_connection", "ssh") == "ssh"


def test_ci_vault_uses_the_test_password_and_protects_nothing_real():
    password = CI_PASSWORD_FILE.read_text(encoding="utf-8").strip().encode()
    assert b"protects-nothing-real" in password
    for name, ciphertext in vaulted("ci").items():
        plain = decrypt(ciphertext, password)
        assert plain is not None, name
        # A known test value: refused anywhere it would matter.
        assert plain.lower() in (secret.lower() for secret in schema.KNOWN_WEAK_SECRETS), name


def test_dev_needs_no_vault_password():
    for path in (REPO / "inventories" / "dev" / "group_vars" / "all").glob("*.yml"):
        assert "$ANSIBLE_VAULT" not in path.read_text(encoding="utf-8"), path
    assert group_vars("dev", "env.yml")["env_values"] == {}


def _ignored(*paths):
    result = subprocess.run(
        ["git", "check-ignore", "--no-index", "-v", "-n", *paths], cwd=REPO, capture_output=True, text=True
    )
    ignored = {}
    for line in result.stdout.splitlines():
        source, path = line.split("\t")
        pattern = source.split(":", 2)[2]
        ignored[path] = bool(pattern) and not pattern.startswith("!")
    return ignored


def test_env_files_stay_out_of_git_except_the_example():
    status = _ignored(
        ".env",
        ".env.local",
        ".env.production",
        ".cmx/app/.env",
        "app/.env",
        ".env.example",
        "inventories/ci/.vault-pass-ci",
        ".vault-pass-staging",
    )
    assert status[".env"] and status[".env.local"] and status[".env.production"]
    assert status[".cmx/app/.env"] and status["app/.env"] and status[".vault-pass-staging"]
    assert not status[".env.example"] and not status["inventories/ci/.vault-pass-ci"]
