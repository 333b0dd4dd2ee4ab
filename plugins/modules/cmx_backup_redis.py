#!/usr/bin/python
# Copyright: CleanMateX DevOps
# Apache-2.0 (see galaxy.yml)

DOCUMENTATION = r"""
---
module: cmx_backup_redis
short_description: Snapshot the CleanMateX Redis into a backup folder, restore it, or read its key counts
description:
  - O(action=dump) asks the server for a fresh snapshot (C(BGSAVE SCHEDULE), waited for), then streams its
    RDB file out of O(container) into C(<folder>/redis/dump.rdb), computing sha256 on the way. Works
    whatever the persistence settings (RDB, AOF or both). The RDB header and end marker are checked.
  - O(action=restore) replaces the data of O(container) by C(<folder>/redis/dump.rdb) (verify the checksums
    first). With C(appendonly yes) Redis 7+ loads its append-only file at start and ignores C(dump.rdb),
    so the container is stopped and a one-off container (same image, no network) builds the new data
    beside the live files on the data volume - a temporary server loads the snapshot with
    C(--appendonly no) and writes a complete AOF with C(CONFIG SET appendonly yes); a second start from
    that AOF alone must hold the snapshot's keys - and only then swaps it in by renames. A failure, a
    stop or a timeout puts the previous data back; the container is started again only once the loader
    container is gone (never two servers on one volume), and waited for until it answers. The keys it
    serves then are reported, not compared (clients may write at once, keys may expire).
  - O(action=info) returns the server's version, whether AOF is on and its key count per database.
  - The password reaches redis-cli by environment (C(REDISCLI_AUTH)), never on a command line.
version_added: 0.1.0
author: CleanMateX DevOps
options:
  action:
    description: Snapshot, restore or report.
    type: str
    required: true
    choices: [dump, restore, info]
  container:
    description: The Redis container.
    type: str
    default: cmx-redis
  password:
    description: Redis password (empty when Redis has no AUTH).
    type: str
    default: ""
    no_log: true
  folder:
    description: The backup folder (O(action=dump) and O(action=restore)).
    type: path
  timeout:
    description:
      - Seconds the snapshot may take to be written (dump), or loaded, rewritten as AOF and checked (restore).
      - A restore's loader container still running a minute after that is stopped (the previous data is put
        back) and removed before the container starts again.
    type: float
    default: 600
requirements:
  - the docker CLI
"""

EXAMPLES = r"""
- name: Snapshot Redis
  cleanmatex.infra.cmx_backup_redis:
    action: dump
    password: "{{ cmx_redis_password }}"
    folder: /opt/cmx/backups/20250601T120000Z
  no_log: true
"""

RETURN = r"""
files:
  description: Files written (relative path to size and sha256).
  returned: dump
  type: dict
redis:
  description: The manifest's redis section (version, aof_enabled, keys per database, snapshot_file).
  returned: dump
  type: dict
loaded:
  description: Keys per database the snapshot held (as the one-off server loaded them).
  returned: restore
  type: dict
checked:
  description: Keys per database a server started from the rebuilt append-only file alone held.
  returned: restore
  type: dict
version:
  description: Redis server version.
  returned: info, restore
  type: str
aof_enabled:
  description: Whether the server persists with an append-only file.
  returned: info, restore
  type: bool
keys:
  description: Keys per database (C(db0), ...); empty databases are absent.
  returned: info, restore
  type: dict
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.cleanmatex.infra.plugins.module_utils import backup, backup_redis
from ansible_collections.cleanmatex.infra.plugins.module_utils.backup_exec import ExecError


def main():
    module = AnsibleModule(
        argument_spec={
            "action": {"type": "str", "required": True, "choices": ["dump", "restore", "info"]},
            "container": {"type": "str", "default": "cmx-redis"},
            "password": {"type": "str", "default": "", "no_log": True},
            "folder": {"type": "path"},
            "timeout": {"type": "float", "default": 600},
        },
        required_if=[("action", "dump", ("folder",)), ("action", "restore", ("folder",))],
        supports_check_mode=True,
    )
    params = module.params
    docker = module.get_bin_path("docker", required=True)
    try:
        if params["action"] == "info":
            server = backup_redis.info(params["container"], params["password"], docker)
            server.pop("raw")
            module.exit_json(changed=False, **server)
        if module.check_mode:
            module.exit_json(changed=True)
        if params["action"] == "restore":
            result = backup_redis.restore(
                params["container"], params["folder"], params["password"], docker, params["timeout"]
            )
            module.exit_json(changed=True, **result)
        result = backup_redis.dump(
            params["container"], params["folder"], params["password"], docker, params["timeout"]
        )
        module.exit_json(changed=True, **result)
    except (backup.BackupError, ExecError) as exc:
        module.fail_json(msg=str(exc))
    except OSError as exc:
        module.fail_json(msg=f"Redis {params['action']} failed: {exc}")


if __name__ == "__main__":
    main()
