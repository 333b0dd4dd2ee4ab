"""Secrets in the repository: the scanner of the test command (detect-secrets, against .secrets.baseline)
fails on a planted secret, and every vault file holds only values that are really encrypted."""

from __future__ import annotations

import re
import secrets
import string
import subprocess
import sys
from pathlib import Path

import yaml
from ansible.parsing.vault import VaultLib, VaultSecret

REPO = Path(__file__).resolve().parents[2]
HOOK = Path(sys.executable).parent / "detect-secrets-hook"
BASELINE = REPO / ".secrets.baseline"
# Each encrypted vault file and the password that opens it (public: test or placeholder secrets only).
BOOTSTRAP = "cmx-bootstrap-vault-password-public-placeholders-only"
VAULTS = {
    "inventories/ci/group_vars/all/vault.yml": (REPO / "inventories/ci/.vault-pass-ci").read_text().strip(),
    "inventories/staging/group_vars/all/vault.yml": BOOTSTRAP,
    "inventories/production/group_vars/all/vault.yml": BOOTSTRAP,
    "molecule/staging/inventory/group_vars/all/vault.yml": (REPO / "molecule/staging/.vault-pass-test")
    .read_text()
    .strip(),
}


def scan(tmp_path: Path, *paths: Path) -> subprocess.CompletedProcess:
    """The test command's scan of `paths` against a copy of the baseline (the hook refuses a baseline with
    uncommitted edits, which a developer's working tree may have)."""
    baseline = tmp_path / "baseline.json"
    baseline.write_text(BASELINE.read_text())
    return subprocess.run(
        [str(HOOK), "--baseline", str(baseline), *map(str, paths)],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def test_a_planted_secret_fails_the_scan(tmp_path):
    key_id = "AKIA" + "".join(secrets.choice(string.ascii_uppercase + string.digits) for _ in range(16))
    planted = tmp_path / "settings.yml"
    planted.write_text(f"aws_access_key_id: {key_id}\ndb_password: {secrets.token_hex(20)}\n")
    found = scan(tmp_path, planted)
    assert found.returncode == 1, found.stdout + found.stderr
    assert (
        str(planted) in found.stdout and "AWS Access Key" in found.stdout and "Secret Keyword" in found.stdout
    )
    clean = tmp_path / "clean.yml"
    clean.write_text('db_password: "{{ vault_cmx_postgres_password }}"\nport: 5432\n')
    assert scan(tmp_path, clean).returncode == 0


def test_the_baseline_excludes_only_vault_lock_and_requirement_files():
    baseline = yaml.safe_load(BASELINE.read_text())  # JSON is YAML
    patterns = [
        pattern
        for used in baseline["filters_used"]
        if used["path"].endswith("should_exclude_file")
        for pattern in used["pattern"]
    ]
    tracked = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    excluded = sorted(path for path in tracked.split() if any(re.search(p, path) for p in patterns))
    assert excluded and all(
        re.search(
            r"(vault\.yml|\.vault-pass-\w+|package-lock\.json|requirements[-\w]*\.txt|\.secrets\.baseline)$",
            path,
        )
        for path in excluded
    ), excluded


class _VaultLoader(yaml.SafeLoader):
    pass


_VaultLoader.add_constructor("!vault", lambda loader, node: ("!vault", loader.construct_scalar(node)))


def test_every_vault_file_is_really_encrypted_and_opens_with_its_password():
    tracked = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    vault_files = sorted(path for path in tracked.split() if path.endswith("vault.yml"))
    assert set(VAULTS) <= set(vault_files)
    for path in vault_files:
        values = yaml.load((REPO / path).read_text(), Loader=_VaultLoader) or {}
        if path not in VAULTS:
            assert values == {}, f"{path} is not in VAULTS, so it must define nothing (dev has no secrets)"
            continue
        vault = VaultLib([("default", VaultSecret(VAULTS[path].encode()))])
        assert values, path
        for name, value in values.items():
            assert isinstance(value, tuple) and value[0] == "!vault", f"{path}: {name} is not encrypted"
            assert value[1].startswith("$ANSIBLE_VAULT;1.1;AES256\n"), f"{path}: {name}"
            assert vault.decrypt(value[1]), f"{path}: {name} does not open"
