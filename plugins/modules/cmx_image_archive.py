#!/usr/bin/python
"""Ansible module: docker save archives of images, cached on the control machine, to ship to a host."""

from __future__ import annotations

DOCUMENTATION = r"""
module: cmx_image_archive
short_description: Write (or reuse) a checksummed docker save archive of each image
description:
  - For every reference in O(images), writes a gzip-compressed C(docker save) archive into O(cache_dir)
    unless an archive of that exact image (same image ID, same sha256) is already there.
  - Returns each archive's path, sha256 and the image ID, for M(ansible.builtin.copy) and
    M(cleanmatex.infra.cmx_image_load) on a host without a registry.
  - Archives of the same repository with another tag are removed (a rebuilt image supersedes them).
  - Meant to run on the control machine (delegated to localhost); writing its cache is not reported as a
    change to any host.
version_added: 0.1.0
author: CleanMateX DevOps
options:
  images: {description: Image references to archive., type: list, elements: str, required: true}
  cache_dir: {description: Folder of the archives (created 0700)., type: path, required: true}
notes:
  - Supports check mode (nothing is written; only the image IDs are returned).
"""

EXAMPLES = r"""
- name: Archive the images the host lacks
  cleanmatex.infra.cmx_image_archive:
    images: [cmx/postgres:17-0123456789ab]
    cache_dir: ~/.cache/cleanmatex-images/archives
  delegate_to: localhost
  register: archived
"""

RETURN = r"""
archives:
  description: One entry per image, in order.
  returned: always
  type: list
  elements: dict
  contains:
    ref: {description: The image reference., type: str}
    id: {description: The image ID (sha256:...)., type: str}
    file: {description: The archive on the control machine., type: str}
    sha256: {description: The archive's sha256., type: str}
    size: {description: The archive's size in bytes., type: int}
written: {description: References whose archive this run wrote., returned: always, type: list, elements: str}
"""

from ansible_collections.cleanmatex.infra.plugins.module_utils.image_transfer import (
    ARCHIVE_ARGUMENT_SPEC,
    archive_result,
)
from ansible_collections.cleanmatex.infra.plugins.module_utils.task_module import run_task_module


def main() -> None:
    run_task_module(ARCHIVE_ARGUMENT_SPEC, archive_result)


if __name__ == "__main__":
    main()
