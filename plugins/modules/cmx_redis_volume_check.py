#!/usr/bin/python
"""Ansible module: refuse a Redis data volume whose RDB files the stack's Redis cannot read."""

from __future__ import annotations

DOCUMENTATION = r"""
module: cmx_redis_volume_check
short_description: Refuse a Redis data volume written in a newer RDB format than the stack's Redis reads
description:
  - Reads the RDB header of C(dump.rdb) and of the AOF's RDB base in the data volume, and the Redis version of
    O(image), with a one-off container of O(image) (no network, the volume read-only), and fails when a file's
    format is newer than that Redis reads (e.g. Redis 8's format 12 under Redis 7.0, which reads up to 10),
    naming the files and the ways forward. Nothing is started and the volume is not changed.
  - Skipped (ok) when O(container) runs O(image) already, when the volume does not exist or holds no RDB file.
version_added: 0.1.0
author: CleanMateX DevOps
options:
  volume: {description: The data volume (<project>_redis_data)., type: str, required: true}
  image: {description: The Redis image the stack is about to run., type: str, required: true}
  container: {description: The stack's Redis container., type: str, default: ""}
  docker: {description: The docker CLI., type: str, default: docker}
notes:
  - Supports check mode (it only reads).
"""

EXAMPLES = r"""
- name: Refuse a Redis data volume the image cannot read
  cleanmatex.infra.cmx_redis_volume_check:
    volume: cmx_redis_data
    image: cmx/redis:7.0-0123456789ab
    container: cmx-redis
"""

RETURN = r"""
formats: {description: The RDB format of each RDB file found (file -> format)., returned: always, type: dict}
"""

from ansible_collections.cleanmatex.infra.plugins.module_utils.redis_volume import ARGUMENT_SPEC, task_result
from ansible_collections.cleanmatex.infra.plugins.module_utils.task_module import run_task_module


def main() -> None:
    run_task_module(ARGUMENT_SPEC, task_result)


if __name__ == "__main__":
    main()
