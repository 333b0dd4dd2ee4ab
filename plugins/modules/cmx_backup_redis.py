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
  - Without O(container) (an external Redis such as ElastiCache - no container, no BGSAVE, no SYNC) the
    module talks to O(host):O(port) over the network (TLS with O(tls)). O(action=dump) writes every key of
    every database that has keys (SCAN, then PTTL and DUMP of each, pipelined) into
    C(<folder>/redis/keys.bin),
    with its absolute expiry; the manifest section's C(format) is C(keys) (C(rdb) for a snapshot). It is not
    a point-in-time snapshot - each key is copied as it was when it was read.
  - O(action=restore) of a C(keys) backup (into an external Redis, or a container's over O(host):O(port),
    its published port) first checks the file against the manifest's key counts and that the server
    accepts the backup's DUMP payloads (one is restored under a probe key and deleted) - a failure there
    changes nothing. Then every database the backup or the server has keys in is flushed (FLUSHDB) and
    each key RESTOREd with C(REPLACE) and its absolute expiry (C(ABSTTL); keys already expired are
    skipped); each RESTORE must answer OK and each database must then hold at least the backup's keys
    without a TTL. A failure after the first FLUSHDB says so (PARTIAL) - running the restore again redoes
    it. An C(rdb) backup cannot be restored into an external Redis (nothing is changed, the module fails).
  - The password reaches redis-cli by environment (C(REDISCLI_AUTH)), never on a command line; over the
    network it is sent with AUTH.
version_added: 0.1.0
author: CleanMateX DevOps
options:
  action:
    description: Snapshot, restore or report.
    type: str
    required: true
    choices: [dump, restore, info]
  container:
    description: The Redis container; empty for an external Redis (reached at O(host):O(port)).
    type: str
    default: cmx-redis
  host:
    description: Where Redis listens, for an external Redis and for restoring a C(keys) backup.
    type: str
    default: ""
  port:
    description: Its port.
    type: int
    default: 6379
  tls:
    description: Connect over TLS (C(rediss://), ElastiCache in-transit encryption).
    type: bool
    default: false
  ca_file:
    description: PEM CA file that verifies the server's certificate (empty - the system's trusted CAs).
    type: path
  section:
    description: The manifest's C(redis) section (O(action=restore)); empty - read from the folder's manifest.
    type: dict
    default: {}
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
      - Over the network (C(keys) format), seconds each network operation may take.
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
  description:
    - The manifest's redis section - format (C(rdb) or C(keys)), version, aof_enabled, keys per database,
      snapshot_file (rdb) or keys_file and expiring (keys with a TTL per database; keys).
  returned: dump
  type: dict
format:
  description: Format of the restored backup (C(rdb) or C(keys)).
  returned: restore
  type: str
expired:
  description: Keys per database skipped because their expiry had passed (C(keys) format).
  returned: restore
  type: dict
loaded:
  description: Keys per database the snapshot held (as the one-off server loaded them), or the keys RESTOREd.
  returned: restore
  type: dict
checked:
  description:
    - Keys per database a server started from the rebuilt append-only file alone held (C(rdb)); the
      database sizes right after the RESTOREs (C(keys)).
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
            "host": {"type": "str", "default": ""},
            "port": {"type": "int", "default": 6379},
            "tls": {"type": "bool", "default": False},
            "ca_file": {"type": "path"},
            "section": {"type": "dict", "default": {}},
            "password": {"type": "str", "default": "", "no_log": True},
            "folder": {"type": "path"},
            "timeout": {"type": "float", "default": 600},
        },
        required_if=[("action", "dump", ("folder",)), ("action", "restore", ("folder",))],
        supports_check_mode=True,
    )
    params = module.params
    docker = module.get_bin_path("docker", required=bool(params["container"]))
    network = {
        "password": params["password"],
        "tls": params["tls"],
        "ca_file": params["ca_file"] or "",
        "timeout": params["timeout"],
    }
    if not params["container"] and not params["host"]:
        module.fail_json(msg="container or host is required (host: an external Redis)")
    try:
        if params["action"] == "info":
            if params["container"]:
                server = backup_redis.info(params["container"], params["password"], docker)
                server.pop("raw")
            else:
                server = backup_redis.network_info(params["host"], params["port"], **network)
            module.exit_json(changed=False, **server)
        if module.check_mode:
            module.exit_json(changed=True)
        if params["action"] == "restore":
            section = params["section"] or backup.load_manifest(params["folder"]).get("redis") or {}
            if section.get("format", "rdb") == "keys":
                if not params["host"]:
                    module.fail_json(msg="restoring a keys backup needs host (and port) to reach Redis at")
                result = backup_redis.restore_keys(
                    params["host"], params["port"], params["folder"], section, **network
                )
            elif not params["container"]:
                module.fail_json(
                    msg="this backup holds a Redis RDB snapshot (taken from the stack's Redis container); an "
                    "external Redis cannot load one: nothing was changed. Restore it with "
                    "cmx_redis_mode: container, or restore a backup taken from the external Redis"
                )
            else:
                result = backup_redis.restore(
                    params["container"], params["folder"], params["password"], docker, params["timeout"]
                )
                result["format"] = "rdb"
            module.exit_json(changed=True, **result)
        if params["container"]:
            result = backup_redis.dump(
                params["container"], params["folder"], params["password"], docker, params["timeout"]
            )
        else:
            result = backup_redis.dump_keys(params["host"], params["port"], params["folder"], **network)
        module.exit_json(changed=True, **result)
    except (backup.BackupError, ExecError) as exc:
        module.fail_json(msg=str(exc))
    except OSError as exc:
        module.fail_json(msg=f"Redis {params['action']} failed: {exc}")


if __name__ == "__main__":
    main()
