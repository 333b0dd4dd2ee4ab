#!/usr/bin/python
"""Ansible module: keyed digests of secret-bearing configuration for container labels."""

from __future__ import annotations

DOCUMENTATION = r"""
module: cmx_config_digest
short_description: HMAC digests of configuration and secrets, for labels that trigger recreation
description:
  - Computes HMAC-SHA256 of each entry of O(inputs) under a per-host key read from O(key_file).
  - The key is 32 random bytes generated the first time (mode 0600, its folder 0700) and kept across
    converges, so the same inputs give the same digest and a changed secret gives a new one, while a
    published digest (a container label) allows no offline guessing of the secret.
  - The key never leaves the host; only the digests are returned.
version_added: 0.1.0
author: CleanMateX DevOps
options:
  key_file: {description: Where the host's key is kept (created when missing)., type: path, required: true}
  inputs:
    description: Name to value (a string or a list of strings) to digest. Values are secret (no_log).
    type: dict
    required: true
notes:
  - Supports check mode (a missing key is generated for the run but not written; changed is then true).
"""

EXAMPLES = r"""
- name: Compute the container labels' config digests
  cleanmatex.infra.cmx_config_digest:
    key_file: /opt/cmx/secrets/label_hmac.key
    inputs:
      redis: ["{{ redis_conf }}", "{{ redis_password }}"]
  register: digests
"""

RETURN = r"""
digests:
  description: Name to HMAC-SHA256 hex digest, for every name in O(inputs).
  returned: always
  type: dict
key_created: {description: The key file was written by this run., returned: always, type: bool}
"""

from ansible_collections.cleanmatex.infra.plugins.module_utils.config_digest import ARGUMENT_SPEC, task_result
from ansible_collections.cleanmatex.infra.plugins.module_utils.task_module import run_task_module


def main() -> None:
    run_task_module(ARGUMENT_SPEC, task_result)


if __name__ == "__main__":
    main()
