# Copyright: CleanMateX
"""Lookup: this collection's version, from MANIFEST.json when installed or galaxy.yml in a checkout."""

from __future__ import annotations

DOCUMENTATION = r"""
name: collection_version
short_description: The version of the cleanmatex.infra collection
description:
  - Reads C(MANIFEST.json) of an installed collection, or C(galaxy.yml) in a source checkout.
version_added: 0.1.0
author: CleanMateX DevOps
"""

EXAMPLES = r"""
- name: Show the version
  ansible.builtin.debug:
    msg: "{{ lookup('cleanmatex.infra.collection_version') }}"
"""

RETURN = r"""
_raw:
  description: The version string, e.g. C(0.1.0).
  type: list
  elements: str
"""

import json
from pathlib import Path

import yaml
from ansible.errors import AnsibleLookupError
from ansible.plugins.lookup import LookupBase

ROOT = Path(__file__).resolve().parents[2]


def collection_version(root: Path = ROOT) -> str:
    manifest = root / "MANIFEST.json"
    if manifest.is_file():
        return json.loads(manifest.read_text())["collection_info"]["version"]
    galaxy = root / "galaxy.yml"
    if galaxy.is_file():
        return str(yaml.safe_load(galaxy.read_text())["version"])
    raise AnsibleLookupError(f"neither MANIFEST.json nor galaxy.yml found in {root}")


class LookupModule(LookupBase):
    def run(self, terms, variables=None, **kwargs):
        return [collection_version()]
