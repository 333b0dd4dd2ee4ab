"""A converge at -vvv prints no secret: not the passwords, keys, JWT secret, nor the SCRAM secret."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from ansible.constants import DEFAULT_VAULT_ID_MATCH
from ansible.parsing.vault import VaultLib, VaultSecret
from conftest import INVENTORY, PROJECT_DIR

ROOT = Path(__file__).resolve().parents[3]


def vaulted_values() -> list[str]:
    """Decrypt the ci vault's inline values with its test password (it protects nothing real)."""
    import yaml

    password = (INVENTORY / ".vault-pass-ci").read_text().strip().encode()
    vault = VaultLib([(DEFAULT_VAULT_ID_MATCH, VaultSecret(password))])

    class Loader(yaml.SafeLoader):
        pass

    Loader.add_constructor(
        "!vault", lambda loader, node: vault.decrypt(loader.construct_scalar(node)).decode()
    )
    data = yaml.load((INVENTORY / "group_vars" / "all" / "vault.yml").read_text(), Loader=Loader) or {}
    return [value for value in data.values() if isinstance(value, str)]


def test_converge_at_vvv_leaks_no_secret(inv):
    secrets = [
        inv["cmx_postgres_password"],
        inv["cmx_redis_password"],
        inv["cmx_s3_secret_key"],
        # The GUIs' logins (printed by the summary in dev only).
        inv["cmx_s3_console_password"],
        inv["cmx_redis_commander_password"],
        # The database roles' (docs/security.md).
        inv["cmx_postgres_app_password"],
        inv["cmx_postgres_migration_password"],
        inv["cmx_postgres_health_password"],
        inv["cmx_pgbouncer_admin_password"],
        *vaulted_values(),
    ]
    scram = (PROJECT_DIR / "secrets" / "pgbouncer" / "userlist.txt").read_text().split()[1].strip('"')
    secrets.append(scram.split("$", 1)[1])
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "ANSIBLE_NOCOLOR": "1"}
    done = subprocess.run(
        [str(bin_dir / "ansible-playbook"), "-vvv", "-i", str(INVENTORY), "dev.yml"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-3000:]
    assert "changed=0" in output  # nothing changed: this run only looks
    leaked = [f"secret #{i} ({len(s)} chars)" for i, s in enumerate(secrets) if s and s in output]
    assert not leaked, f"found in the -vvv output: {leaked}"
