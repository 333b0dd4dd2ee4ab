"""The collection's version: MANIFEST.json when installed, galaxy.yml in a checkout."""

from __future__ import annotations

import json

import yaml
from ansible_collections.cleanmatex.infra.plugins.lookup.collection_version import ROOT, collection_version


def test_checkout_reads_galaxy_yml():
    assert collection_version() == str(yaml.safe_load((ROOT / "galaxy.yml").read_text())["version"])


def test_installed_collection_reads_the_manifest(tmp_path):
    (tmp_path / "MANIFEST.json").write_text(json.dumps({"collection_info": {"version": "9.8.7"}}))
    (tmp_path / "galaxy.yml").write_text("version: 0.0.1\n")
    assert collection_version(tmp_path) == "9.8.7"
