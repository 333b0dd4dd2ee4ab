#!/usr/bin/python
# Copyright: CleanMateX DevOps
# Apache-2.0 (see galaxy.yml)

DOCUMENTATION = r"""
---
module: cmx_backup
short_description: Back up the CleanMateX stack (PostgreSQL, Redis, storage bucket) into a timestamped folder
description:
  - Creates C(<root>/<YYYYMMDDTHHMMSSZ>) (UTC start time, mode 0700) and fills it, three parts side by side.
  - PostgreSQL - C(pg_dump --format=custom) of the database and C(pg_dumpall --globals-only), both run inside
    the server's container (its own major version) and streamed into C(postgres/). Without a container (an
    external, managed server) they run in a one-off container of the stack's PostgreSQL image on the host
    network (C(docker run --rm --network host)), and the roles are C(pg_dumpall --roles-only), with
    C(--no-role-passwords) when the login is not a superuser (recorded in the manifest). The dump uses a
    snapshot exported by a REPEATABLE READ transaction that counts every table's rows meanwhile, so the
    counts in the manifest are exactly those of the dump.
  - Redis - a fresh snapshot (C(BGSAVE SCHEDULE), waited for), streamed out as C(redis/dump.rdb). Without a
    container (an external Redis - no BGSAVE, no file access) every key of every database over the network
    (SCAN, PTTL, DUMP) into C(redis/keys.bin); the manifest's C(redis.format) says which (C(rdb), C(keys)).
  - Storage - every object of the bucket (ListObjectsV2, GET), stored by sha256 under C(objects/); each body
    checked against its Content-Length and single-part ETag, transient faults retried. An object deleted
    between the listing and its GET is recorded in the manifest's C(storage.skipped_deleted) (and warned
    about), not an error.
  - Then C(manifest.json), written last and atomically - every file with its size and sha256, server
    versions, per-table row counts, Redis key counts, the objects (key, size, sha256, headers, metadata),
    timestamps, environment, seconds per part. A failure removes the folder; a folder without a manifest
    is never restored.
  - Last, the retention keeps the O(keep) newest complete backups (only folders named like backups).
  - The backup and its retention hold an exclusive lock, C(<root>/.cmx-backup.lock) (C(flock), removed at
    the end); a second backup or prune waits up to 60 s, then fails naming the lock file and its holder.
  - Passwords reach containers by environment (C(docker exec -e NAME)), never on a command line.
version_added: 0.1.0
author: CleanMateX DevOps
options:
  root:
    description: Folder holding the backups (the inventory's C(cmx_backup_dir)); created when missing.
    type: path
    required: true
  keep:
    description: How many complete backups to keep; 0 keeps all.
    type: int
    default: 7
  environment:
    description: Environment name recorded in the manifest.
    type: str
    default: ""
  project:
    description: Compose project name recorded in the manifest.
    type: str
    default: ""
  postgres:
    description: The PostgreSQL part.
    type: dict
    required: true
    suboptions:
      container:
        description: The PostgreSQL container; empty for an external server (tools from O(postgres.image)).
        type: str
        default: cmx-postgres
      image:
        description:
          - Image whose client tools dump an external server (the stack's PostgreSQL image) when
            O(postgres.container) is empty. Empty - C(CMX_POSTGRES_IMAGE) of O(postgres.env_file).
        type: str
        default: ""
      env_file:
        description: The stack's rendered compose C(.env), read for C(CMX_POSTGRES_IMAGE) without an image.
        type: path
      compression:
        description: C(pg_dump --compress) value (C(gzip), C(zstd:3) ...); empty - C(lz4) with pg_dump 16+.
        type: str
        default: ""
      connection:
        description: How to reach the server from the host (snapshot export and row counts).
        type: dict
        required: true
        suboptions:
          host: {description: Host., type: str, default: 127.0.0.1}
          port: {description: Port., type: int, default: 5432}
          user: {description: Role (the stack's owner role)., type: str, required: true}
          password: {description: Its password., type: str, no_log: true}
          dbname: {description: The application database., type: str, required: true}
          sslmode:
            description: libpq sslmode.
            type: str
            default: disable
            choices: [disable, allow, prefer, require, verify-ca, verify-full]
          sslrootcert:
            description: CA file that verifies the server (the stack's CA when cmx_tls_enabled).
            type: path
  redis:
    description: The Redis part.
    type: dict
    default: {}
    suboptions:
      container:
        description: The Redis container (an RDB snapshot); empty for an external Redis (keys by network).
        type: str
        default: cmx-redis
      host: {description: Redis host when O(redis.container) is empty., type: str, default: ""}
      port: {description: Its port., type: int, default: 6379}
      tls: {description: Connect over TLS (C(rediss://))., type: bool, default: false}
      ca_file: {description: PEM CA file that verifies the server (empty - the system's CAs)., type: path}
      password: {description: Redis password (empty without AUTH)., type: str, default: "", no_log: true}
      timeout:
        description: Seconds the snapshot may take (RDB); seconds each network operation may take (keys).
        type: float
        default: 600
  storage:
    description: The S3 part.
    type: dict
    required: true
    suboptions:
      endpoint_url: {description: S3 API base URL., type: str, required: true}
      access_key: {description: Access key., type: str, required: true, no_log: true}
      secret_key: {description: Secret key., type: str, required: true, no_log: true}
      region: {description: Signing region., type: str, default: us-east-1}
      bucket: {description: Bucket name., type: str, required: true}
      engine: {description: Storage engine recorded in the manifest., type: str, default: ""}
      workers: {description: Parallel downloads., type: int, default: 8}
      ca_file: {description: PEM CA file that verifies an https endpoint (empty - system CAs)., type: path}
      addressing:
        description: C(path) or C(virtual) (bucket in the host name) requests.
        type: str
        default: path
        choices: [path, virtual]
requirements:
  - psycopg2 on the target, the docker CLI
"""

EXAMPLES = r"""
- name: Back up the stack
  cleanmatex.infra.cmx_backup:
    root: /opt/cmx/backups
    keep: 7
    environment: production
    postgres:
      connection: {port: 5432, user: cmx_user, password: "{{ cmx_postgres_password }}", dbname: cmx_db}
    redis:
      password: "{{ cmx_redis_password }}"
    storage:
      endpoint_url: http://127.0.0.1:9000
      access_key: "{{ cmx_s3_access_key }}"
      secret_key: "{{ cmx_s3_secret_key }}"
      bucket: cleanmatex
  no_log: true
"""

RETURN = r"""
name:
  description: Folder name of the backup (UTC start time).
  returned: success
  type: str
  sample: 20250601T120000Z
path:
  description: Absolute path of the backup folder.
  returned: success
  type: str
manifest:
  description: The manifest written into the folder.
  returned: success
  type: dict
deleted:
  description: Older backup folders removed by the retention.
  returned: success
  type: list
  elements: str
"""

from ansible.module_utils.basic import AnsibleModule, missing_required_lib
from ansible_collections.cleanmatex.infra.plugins.module_utils import (
    backup,
    backup_exec,
    backup_postgres,
    backup_run,
)


def main():
    module = AnsibleModule(
        argument_spec={
            "root": {"type": "path", "required": True},
            "keep": {"type": "int", "default": 7},
            "environment": {"type": "str", "default": ""},
            "project": {"type": "str", "default": ""},
            "postgres": {
                "type": "dict",
                "required": True,
                "options": {
                    "container": {"type": "str", "default": "cmx-postgres"},
                    "image": {"type": "str", "default": ""},
                    "env_file": {"type": "path"},
                    "compression": {"type": "str", "default": ""},
                    "connection": {
                        "type": "dict",
                        "required": True,
                        "options": backup_postgres.CONNECTION_OPTIONS,
                    },
                },
            },
            "redis": {
                "type": "dict",
                "default": {},
                "options": {
                    "container": {"type": "str", "default": "cmx-redis"},
                    "host": {"type": "str", "default": ""},
                    "port": {"type": "int", "default": 6379},
                    "tls": {"type": "bool", "default": False},
                    "ca_file": {"type": "path"},
                    "password": {"type": "str", "default": "", "no_log": True},
                    "timeout": {"type": "float", "default": 600},
                },
            },
            "storage": {
                "type": "dict",
                "required": True,
                "options": {
                    "endpoint_url": {"type": "str", "required": True},
                    "access_key": {"type": "str", "required": True, "no_log": True},
                    "secret_key": {"type": "str", "required": True, "no_log": True},
                    "region": {"type": "str", "default": "us-east-1"},
                    "bucket": {"type": "str", "required": True},
                    "engine": {"type": "str", "default": ""},
                    "workers": {"type": "int", "default": 8},
                    "ca_file": {"type": "path"},
                    "addressing": {"type": "str", "default": "path", "choices": ["path", "virtual"]},
                },
            },
        },
        supports_check_mode=False,
    )
    if backup_postgres.psycopg2 is None:
        module.fail_json(msg=missing_required_lib("psycopg2"))
    params = module.params
    if params["keep"] < 0:
        module.fail_json(msg="keep must be 0 (keep all) or more")
    try:
        postgres = params["postgres"]
        if not postgres["container"]:
            postgres = {**postgres, "image": backup_exec.image_of(postgres["image"], postgres["env_file"])}
        result = backup_run.run_backup(
            root=params["root"],
            postgres=postgres,
            redis=params["redis"],
            storage=params["storage"],
            environment=params["environment"],
            project=params["project"],
            keep=params["keep"],
            docker=module.get_bin_path("docker", required=True),
        )
    except backup.BackupError as exc:
        module.fail_json(msg=f"backup failed, nothing kept: {exc}")
    except OSError as exc:
        module.fail_json(msg=f"backup failed, nothing kept: {exc}")
    skipped = result["manifest"]["storage"].get("skipped_deleted") or []
    if skipped:
        module.warn(
            f"{len(skipped)} object(s) deleted from the bucket during the backup, not in it: "
            + ", ".join(skipped[:20])
        )
    module.exit_json(changed=True, **result)


if __name__ == "__main__":
    main()
