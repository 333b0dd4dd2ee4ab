# Copyright: CleanMateX DevOps
# Apache License 2.0 (see galaxy.yml)
"""Action plugin: stop first, in one line, when vaulted inventory values cannot be opened.

Runs on the controller before anything else of a play (the first task of playbooks/site.yml): without it a
missing password surfaces later as a long template traceback from whichever task first touches a secret.
"""

from __future__ import annotations

DOCUMENTATION = r"""
module: cmx_vault_check
short_description: Fail in one line when vaulted inventory values cannot be decrypted
description:
  - Tries to decrypt every variable of the host whose value is vault-encrypted (C(!vault) or a vaulted file).
  - Fails naming the variables and the fix (C(--ask-vault-pass) or C(ANSIBLE_VAULT_PASSWORD_FILE)) when no
    vault secret was given, or when the given one does not open them.
  - Controller-only and read-only.
version_added: 0.1.0
author: CleanMateX DevOps
options: {}
"""

from ansible.plugins.action import ActionBase


def _is_vaulted(value) -> bool:
    return type(value).__name__ in ("EncryptedString", "AnsibleVaultEncryptedUnicode")


class ActionModule(ActionBase):
    _supports_check_mode = True

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        del tmp
        task_vars = task_vars or {}
        unopened, reason = [], ""
        for name in sorted(task_vars):
            value = task_vars.get(name)
            if not _is_vaulted(value):
                continue
            try:
                str(value)
            except Exception as exc:  # no secret, or the wrong one: the same fix
                unopened.append(name)
                reason = reason or str(exc).splitlines()[0]
        result["changed"] = False
        if unopened:
            shown = ", ".join(unopened[:5]) + (f" and {len(unopened) - 5} more" if len(unopened) > 5 else "")
            result["failed"] = True
            result["msg"] = (
                f"The vault cannot be opened ({reason}): the inventory keeps {shown} in ansible-vault. "
                "Fix: add --ask-vault-pass, or export ANSIBLE_VAULT_PASSWORD_FILE=<file with the password>."
            )
        return result
