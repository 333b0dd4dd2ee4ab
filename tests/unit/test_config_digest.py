"""Container-label digests: HMAC under a per-host key, never a plain hash of a secret (issue 17, item 7)."""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
from pathlib import Path

import pytest
from ansible_collections.cleanmatex.infra.plugins.module_utils.config_digest import (
    KeyFileError,
    config_digest,
    digests,
    ensure_key,
    read_key,
)

ROOT = Path(__file__).resolve().parents[2]
SECRET = "cmx_pass_dev"


def _plain_hashes(secret: str) -> set[str]:
    """What the labels used to carry (or could carry) for one secret, as plain SHA-256."""
    forms = [secret, json.dumps([secret]), f"{secret}:", f":{secret}"]
    return {hashlib.sha256(form.encode()).hexdigest() for form in forms}


def test_key_is_generated_once_with_private_modes_and_kept(tmp_path):
    path = tmp_path / "project" / "secrets" / "label_hmac.key"
    key, created = ensure_key(str(path))
    assert created and len(key) == 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    again, created_again = ensure_key(str(path))
    assert (again, created_again) == (key, False)
    assert path.read_text() == key.hex() + "\n"


def test_two_hosts_get_different_keys(tmp_path):
    first, _ = ensure_key(str(tmp_path / "a" / "k"))
    second, _ = ensure_key(str(tmp_path / "b" / "k"))
    assert first != second


def test_check_mode_writes_nothing(tmp_path):
    path = tmp_path / "secrets" / "k"
    key, created = ensure_key(str(path), check_mode=True)
    assert created and len(key) == 32 and not path.exists()


def test_existing_folder_mode_is_left_alone(tmp_path):
    folder = tmp_path / "secrets"
    folder.mkdir(mode=0o700)
    os.chmod(folder, 0o700)
    ensure_key(str(folder / "k"))
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700


@pytest.mark.parametrize("content", ["", "not a key\n", "ab" * 31 + "\n", "zz" * 32])
def test_a_damaged_key_file_is_refused_naming_the_fix(tmp_path, content):
    path = tmp_path / "k"
    path.write_text(content)
    with pytest.raises(KeyFileError, match=r"does not hold a label key .* Fix: delete it"):
        read_key(str(path))


def test_digest_is_stable_changes_with_the_secret_and_is_not_a_plain_hash(tmp_path):
    key, _ = ensure_key(str(tmp_path / "k"))
    label = config_digest(key, [SECRET])
    assert label == config_digest(key, [SECRET])  # idempotent across runs
    assert label != config_digest(key, [SECRET + "x"])  # a changed secret recreates the container
    assert re.fullmatch(r"[0-9a-f]{64}", label)
    assert label not in _plain_hashes(SECRET)
    # Another host (another key) gives another label for the same secret.
    other, _ = ensure_key(str(tmp_path / "other"))
    assert config_digest(other, [SECRET]) != label


def test_parts_are_not_ambiguous():
    key = b"k" * 32
    assert config_digest(key, ["a:b", "c"]) != config_digest(key, ["a", "b:c"])
    assert config_digest(key, "x") != config_digest(key, ["x"])


def test_digests_covers_every_input():
    key = b"k" * 32
    found = digests(key, {"redis": ["conf", SECRET], "storage": ["a", "b", "seaweedfs"]})
    assert set(found) == {"redis", "storage"}
    assert found["redis"] == config_digest(key, ["conf", SECRET])


def test_the_stack_role_hashes_no_secret_without_the_key():
    """Every label digest goes through cmx_config_digest: no hash() filter in the stack role's files."""
    offenders = [
        f"{path.relative_to(ROOT)}:{number}"
        for path in sorted((ROOT / "roles" / "stack").rglob("*"))
        if path.is_file() and path.suffix in (".yml", ".j2")
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if re.search(r"\bhash\(|\bsha256\b|\bchecksum\(", line) and not line.lstrip().startswith("#")
    ]
    assert not offenders, offenders
    labels = (ROOT / "roles" / "stack" / "templates" / "docker-compose.yml.j2").read_text()
    used = set(re.findall(r"org\.cleanmatex\.config-hash: \"\{\{ (__stack_\w+_hash) \}\}\"", labels))
    variables = (ROOT / "roles" / "stack" / "vars" / "main.yml").read_text()
    for name in used:
        wanted = rf"^{name}: \"{{{{ __stack_config_digests\.digests\.\w+ }}}}\"$"
        assert re.search(wanted, variables, re.M), name
