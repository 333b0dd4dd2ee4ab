"""Secrets in the repository: the scanner of the test command (detect-secrets, against .secrets.baseline)
fails on a planted secret, and every vault file holds only values that are really encrypted."""

from __future__ import annotations

import importlib.util
import json
import re
import secrets
import string
import subprocess
import sys
from pathlib import Path

import yaml
from ansible.parsing.vault import VaultLib, VaultSecret

REPO = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("secret_scan", REPO / "tests" / "secret_scan.py")
secret_scan = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(secret_scan)
DETECT_SECRETS = Path(sys.executable).parent / "detect-secrets"
SCRIPT = REPO / "tests" / "secret_scan.py"
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
    "molecule/managed/inventory/group_vars/all/vault.yml": (REPO / "molecule/managed/.vault-pass-test")
    .read_text()
    .strip(),
}


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True)


def test_a_planted_secret_fails_the_scan_and_moved_lines_do_not(tmp_path):
    """tests/secret_scan.py on a small repository with the real baseline's plugins and filters."""
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q")
    settings = json.loads(BASELINE.read_text())
    (repo / ".secrets.baseline").write_text(json.dumps({**settings, "results": {}}))
    (repo / "clean.yml").write_text('db_password: "{{ vault_cmx_postgres_password }}"\nport: 5432\n')
    git(repo, "add", "-A")
    assert secret_scan.new_findings(repo) == []

    key_id = "AKIA" + "".join(secrets.choice(string.ascii_uppercase + string.digits) for _ in range(16))
    (repo / "settings.yml").write_text(f"aws_access_key_id: {key_id}\ndb_password: {secrets.token_hex(20)}\n")
    git(repo, "add", "-A")
    found = subprocess.run(
        [sys.executable, str(SCRIPT), str(repo)], capture_output=True, text=True, check=False
    )
    assert found.returncode == 1
    assert "settings.yml: AWS Access Key not in .secrets.baseline" in found.stderr
    assert "settings.yml: Secret Keyword not in .secrets.baseline" in found.stderr

    # Reviewed and recorded: the scan passes, and still passes when the lines move.
    subprocess.run([str(DETECT_SECRETS), "scan", "--baseline", ".secrets.baseline"], cwd=repo, check=True)
    assert secret_scan.new_findings(repo) == []
    (repo / "settings.yml").write_text("# a new first line\n" + (repo / "settings.yml").read_text())
    assert secret_scan.new_findings(repo) == []


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
