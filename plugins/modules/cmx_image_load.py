#!/usr/bin/python
"""Ansible module: load shipped image archives on a host without a registry, verified end to end."""

from __future__ import annotations

DOCUMENTATION = r"""
module: cmx_image_load
short_description: Verify and load shipped docker save archives
description:
  - For every entry of O(archives) whose image the host does not have yet (by image ID), checks the
    archive's sha256, runs C(docker load), and checks that the loaded image has the expected ID.
  - Each archive file is removed afterwards, loaded or not.
  - A damaged archive or an image with another ID stops with a message naming the image; nothing of a
    damaged archive is loaded.
version_added: 0.1.0
author: CleanMateX DevOps
options:
  archives:
    description: What M(cleanmatex.infra.cmx_image_archive) returned.
    type: list
    elements: dict
    required: true
    suboptions:
      ref: {description: Image reference., type: str, required: true}
      id: {description: Expected image ID., type: str, required: true}
      file: {description: The archive (on the host unless O(directory) is given)., type: path, required: true}
      sha256: {description: The archive's expected sha256., type: str, required: true}
      size: {description: The archive's size (informative)., type: int}
  directory:
    description: Where the archives were copied on the host (each under its O(archives[].file) base name).
    type: path
notes:
  - Supports check mode (reports what would be loaded).
"""

EXAMPLES = r"""
- name: Load the shipped images
  cleanmatex.infra.cmx_image_load:
    archives:
      - {ref: "cmx/postgres:17-0123456789ab", id: "sha256:...", file: /opt/cmx/images/x.tar.gz, sha256: "..."}
"""

RETURN = r"""
loaded: {description: References loaded by this run., returned: always, type: list, elements: str}
"""

from ansible_collections.cleanmatex.infra.plugins.module_utils.image_transfer import (
    LOAD_ARGUMENT_SPEC,
    load_result,
)
from ansible_collections.cleanmatex.infra.plugins.module_utils.task_module import run_task_module


def main() -> None:
    run_task_module(LOAD_ARGUMENT_SPEC, load_result)


if __name__ == "__main__":
    main()
