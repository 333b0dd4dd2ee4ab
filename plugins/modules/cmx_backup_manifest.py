#!/usr/bin/python
# Copyright: CleanMateX DevOps
# Apache-2.0 (see galaxy.yml)

DOCUMENTATION = r"""
---
module: cmx_backup_manifest
short_description: Verify or prune CleanMateX backup folders (written by cmx_backup)
description:
  - O(action=verify) picks the backup to restore (O(name), or the newest complete one) and checks every
    file of its manifest, sizes then sha256, before anything is restored. A mismatch fails naming the file.
  - O(action=prune) keeps the O(keep) newest complete backups and deletes older ones, plus incomplete
    folders older than the newest complete backup. Only folders named like backups are ever touched.
    It holds the lock that every backup holds while it runs (C(<root>/.cmx-backup.lock)), waiting up to
    60 s for a running backup, so it never deletes a backup in progress.
version_added: 0.1.0
author: CleanMateX DevOps
options:
  action:
    description: What to do.
    type: str
    required: true
    choices: [verify, prune]
  root:
    description: Folder that holds the backups (the inventory's C(cmx_backup_dir)).
    type: path
    required: true
  name:
    description:
      - Backup to verify (O(action=verify)) - a folder name under O(root) or a path. Empty selects the
        newest complete backup.
    type: str
    default: ""
  keep:
    description: How many complete backups to keep (O(action=prune)).
    type: int
    default: 7
notes:
  - Supports check mode (O(action=verify) and O(action=prune) report without changing anything).
"""

EXAMPLES = r"""
- name: Keep only the 3 newest backups
  cleanmatex.infra.cmx_backup_manifest:
    action: prune
    root: /opt/cmx/backups
    keep: 3

- name: Verify the newest backup before restoring it
  cleanmatex.infra.cmx_backup_manifest:
    action: verify
    root: /opt/cmx/backups
  register: backup_verified
"""

RETURN = r"""
name:
  description: Folder name of the backup.
  returned: verify
  type: str
  sample: 20250601T120000Z
path:
  description: Absolute path of the backup folder.
  returned: verify
  type: str
manifest:
  description: The verified manifest.
  returned: verify
  type: dict
verified:
  description: Files whose size and sha256 matched.
  returned: verify
  type: list
  elements: str
unlisted:
  description: Files in the folder the manifest does not list (ignored by a restore).
  returned: verify
  type: list
  elements: str
deleted:
  description: Backup folders removed by the retention.
  returned: prune
  type: list
  elements: str
failed_file:
  description: The file whose checksum or size did not match.
  returned: failure of verify
  type: str
"""

import os

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.cleanmatex.infra.plugins.module_utils import backup


def _verify(module: AnsibleModule) -> dict:
    params = module.params
    try:
        path = backup.select_backup(params["root"], params["name"])
        manifest = backup.load_manifest(path)
        verified = backup.verify_files(path, manifest)
    except backup.ChecksumError as exc:
        module.fail_json(msg=f"refusing to restore: {exc}", failed_file=exc.file)
    return {
        "changed": False,
        "name": os.path.basename(path),
        "path": path,
        "manifest": manifest,
        "verified": verified,
        "unlisted": backup.unlisted_files(path, manifest),
    }


def main():
    module = AnsibleModule(
        argument_spec={
            "action": {"type": "str", "required": True, "choices": ["verify", "prune"]},
            "root": {"type": "path", "required": True},
            "name": {"type": "str", "default": ""},
            "keep": {"type": "int", "default": 7},
        },
        supports_check_mode=True,
    )
    params = module.params
    try:
        if params["action"] == "verify":
            module.exit_json(**_verify(module))
        if params["keep"] < 1:
            module.fail_json(msg="keep must be at least 1 for action=prune")
        deleted = backup.prune(params["root"], params["keep"], check_mode=module.check_mode)
        module.exit_json(changed=bool(deleted), deleted=deleted)
    except backup.BackupError as exc:
        module.fail_json(msg=str(exc))
    except OSError as exc:
        module.fail_json(msg=f"{params['action']} failed: {exc}")


if __name__ == "__main__":
    main()
