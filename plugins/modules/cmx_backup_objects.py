#!/usr/bin/python
# Copyright: CleanMateX DevOps
# Apache-2.0 (see galaxy.yml)

DOCUMENTATION = r"""
---
module: cmx_backup_objects
short_description: Copy every object of the CleanMateX bucket into a backup folder, or back into the bucket
description:
  - O(action=download) lists the bucket (ListObjectsV2, every page) and GETs each object into
    C(<folder>/objects/<ab>/<sha256>), computing sha256 while it streams. Returns one entry per key
    (size, sha256, file, Content-Type and user metadata) for the manifest. A body must match its
    Content-Length and single-part ETag (md5); transient faults are retried a few times. An object deleted
    between the listing and its GET (404 NoSuchKey) is listed in C(storage.skipped_deleted), not an error.
  - O(action=upload) PUTs every object of O(objects) (the manifest's list) with its headers and
    metadata, signed with its sha256 so that the server rejects a body that differs, then lists the
    bucket to check that every key is there. Objects in the bucket that the backup does not have are
    reported, not deleted.
  - Standard library only (SigV4 by module_utils/s3sig.py, path-style or virtual-host requests), so no boto3
    on the target.
version_added: 0.1.0
author: CleanMateX DevOps
options:
  action:
    description: Download from or upload to the bucket.
    type: str
    required: true
    choices: [download, upload]
  endpoint_url:
    description: S3 API base URL, for example C(http://127.0.0.1:9000).
    type: str
    required: true
  access_key:
    description: Access key.
    type: str
    required: true
    no_log: true
  secret_key:
    description: Secret key.
    type: str
    required: true
    no_log: true
  region:
    description: Signing region.
    type: str
    default: us-east-1
  bucket:
    description: Bucket name.
    type: str
    required: true
  folder:
    description: The backup folder.
    type: path
    required: true
  objects:
    description: The manifest's C(storage.objects) list (O(action=upload)).
    type: list
    elements: dict
    default: []
  workers:
    description: Parallel transfers.
    type: int
    default: 8
  timeout:
    description: Seconds per request.
    type: float
    default: 60
  ca_file:
    description: PEM CA file that verifies an https endpoint (empty - the system's trusted CAs).
    type: path
  addressing:
    description: C(path) (C(<endpoint>/<bucket>/<key>)) or C(virtual) (C(<bucket>.<endpoint host>/<key>)).
    type: str
    default: path
    choices: [path, virtual]
"""

EXAMPLES = r"""
- name: Copy the bucket into the backup folder
  cleanmatex.infra.cmx_backup_objects:
    action: download
    endpoint_url: http://127.0.0.1:9000
    access_key: "{{ cmx_s3_access_key }}"
    secret_key: "{{ cmx_s3_secret_key }}"
    bucket: cleanmatex-dev
    folder: /opt/cmx/backups/20250601T120000Z
  no_log: true
"""

RETURN = r"""
files:
  description: Files written (relative path to size and sha256).
  returned: download
  type: dict
storage:
  description: The manifest's storage section (bucket, object count, bytes, objects, skipped_deleted).
  returned: download
  type: dict
uploaded:
  description: Objects written to the bucket.
  returned: upload
  type: int
extra:
  description: Keys in the bucket that the backup does not have (left in place).
  returned: upload
  type: list
  elements: str
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.cleanmatex.infra.plugins.module_utils import backup, backup_s3


def main():
    module = AnsibleModule(
        argument_spec={
            "action": {"type": "str", "required": True, "choices": ["download", "upload"]},
            "endpoint_url": {"type": "str", "required": True},
            "access_key": {"type": "str", "required": True, "no_log": True},
            "secret_key": {"type": "str", "required": True, "no_log": True},
            "region": {"type": "str", "default": "us-east-1"},
            "bucket": {"type": "str", "required": True},
            "folder": {"type": "path", "required": True},
            "objects": {"type": "list", "elements": "dict", "default": []},
            "workers": {"type": "int", "default": 8},
            "timeout": {"type": "float", "default": 60},
            "ca_file": {"type": "path"},
            "addressing": {"type": "str", "default": "path", "choices": ["path", "virtual"]},
        },
        supports_check_mode=False,
    )
    params = module.params
    client = backup_s3.Client(
        params["endpoint_url"],
        params["access_key"],
        params["secret_key"],
        params["region"],
        params["timeout"],
        ca_file=params["ca_file"] or None,
        addressing=params["addressing"],
    )
    bucket = params["bucket"]
    try:
        if params["action"] == "download":
            result = backup_s3.backup_bucket(client, bucket, params["folder"], params["workers"])
            module.exit_json(
                changed=True,
                files=result["files"],
                storage={
                    "bucket": bucket,
                    "object_count": len(result["objects"]),
                    "bytes": result["bytes"],
                    "objects": result["objects"],
                    "skipped_deleted": result["skipped_deleted"],
                },
            )
        result = backup_s3.restore_bucket(
            client, bucket, params["folder"], params["objects"], params["workers"]
        )
        if result["extra"]:
            module.warn(
                f"{len(result['extra'])} object(s) in bucket {bucket} are not in the backup; left in place"
            )
        module.exit_json(changed=bool(params["objects"]), **result)
    except backup.BackupError as exc:
        module.fail_json(msg=str(exc))


if __name__ == "__main__":
    main()
