#!/usr/bin/python
"""Ansible module: an S3 bucket with its CORS rules on any S3-compatible server."""

from __future__ import annotations

DOCUMENTATION = r"""
module: cmx_s3_bucket
short_description: Make sure an S3 bucket exists and has exactly the given CORS rules
description:
  - Creates the bucket when missing and sets its CORS configuration when it differs, with requests
    signed with AWS SigV4 by the Python standard library (no boto3), so a converge with nothing to change
    is fast.
  - Works with SeaweedFS, MinIO, AWS S3 and other S3-compatible servers; path-style or virtual-hosted
    addressing, https verified against O(ca_file) or the system's trusted CAs.
  - With O(create=false) (credentials that may not create buckets) nothing is written; the bucket must exist
    and have exactly O(cors_rules), else the module fails saying what is missing or different.
version_added: 0.1.0
author: CleanMateX DevOps
options:
  endpoint_url:
    description: S3 API base URL, e.g. C(http://127.0.0.1:9000) or C(https://s3.eu-west-1.amazonaws.com).
    type: str
    required: true
  access_key: {description: Access key., type: str, required: true, no_log: true}
  secret_key: {description: Secret key., type: str, required: true, no_log: true}
  region: {description: Signing region., type: str, default: us-east-1}
  name: {description: Bucket name., type: str, required: true}
  cors_rules:
    description: CORS rules; an empty list removes the CORS configuration.
    type: list
    elements: dict
    default: []
    suboptions:
      allowed_origins: {description: Origins., type: list, elements: str, required: true}
      allowed_methods: {description: HTTP methods., type: list, elements: str, required: true}
      allowed_headers: {description: Request headers., type: list, elements: str, default: []}
      expose_headers:
        {description: Response headers the browser may read., type: list, elements: str, default: []}
      max_age_seconds: {description: Preflight cache time., type: int}
  timeout: {description: Seconds per request., type: float, default: 10}
  ca_file:
    description:
      - PEM CA file an https O(endpoint_url) is verified against (chain and host name); unset uses the
        system's trusted CAs.
    type: path
  addressing:
    description:
      - V(path) sends C(<endpoint_url>/<name>); V(virtual) sends C(https://<name>.<endpoint host>/)
        (virtual-hosted style), signed for that host.
    type: str
    default: path
    choices: [path, virtual]
  create:
    description:
      - V(false) when the credentials may not create buckets (C(cmx_s3_create_bucket=false)). The module then
        never creates the bucket or sets its CORS rules, and fails unless the bucket exists with exactly
        O(cors_rules). RV(created) and RV(cors_changed) are then always false.
    type: bool
    default: true
notes:
  - Supports check mode.
"""

EXAMPLES = r"""
- name: Create the bucket and let the web admin call it
  cleanmatex.infra.cmx_s3_bucket:
    endpoint_url: http://127.0.0.1:9000
    access_key: "{{ cmx_s3_access_key }}"
    secret_key: "{{ cmx_s3_secret_key }}"
    name: cleanmatex-dev
    cors_rules:
      - allowed_origins: [http://localhost:3000]
        allowed_methods: [GET, PUT]
        allowed_headers: ["*"]

- name: Verify a managed bucket the deploy keys may not create (AWS S3, virtual-hosted)
  cleanmatex.infra.cmx_s3_bucket:
    endpoint_url: https://s3.eu-west-1.amazonaws.com
    region: eu-west-1
    addressing: virtual
    create: false
    access_key: "{{ cmx_s3_access_key }}"
    secret_key: "{{ cmx_s3_secret_key }}"
    name: cleanmatex-prod
    cors_rules:
      - allowed_origins: [https://admin.example.com]
        allowed_methods: [GET, PUT]
"""

RETURN = r"""
created:
  description: Whether the bucket was created.
  returned: always
  type: bool
cors_changed:
  description: Whether the CORS configuration was changed.
  returned: always
  type: bool
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.cleanmatex.infra.plugins.module_utils.probes import describe_error
from ansible_collections.cleanmatex.infra.plugins.module_utils.s3_bucket import (
    Endpoint,
    S3Error,
    ensure_bucket,
    ensure_cors,
    verify_bucket,
)


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "endpoint_url": {"type": "str", "required": True},
            "access_key": {"type": "str", "required": True, "no_log": True},
            "secret_key": {"type": "str", "required": True, "no_log": True},
            "region": {"type": "str", "default": "us-east-1"},
            "name": {"type": "str", "required": True},
            "cors_rules": {
                "type": "list",
                "elements": "dict",
                "default": [],
                "options": {
                    "allowed_origins": {"type": "list", "elements": "str", "required": True},
                    "allowed_methods": {"type": "list", "elements": "str", "required": True},
                    "allowed_headers": {"type": "list", "elements": "str", "default": []},
                    "expose_headers": {"type": "list", "elements": "str", "default": []},
                    "max_age_seconds": {"type": "int"},
                },
            },
            "timeout": {"type": "float", "default": 10},
            "ca_file": {"type": "path"},
            "addressing": {"type": "str", "default": "path", "choices": ["path", "virtual"]},
            "create": {"type": "bool", "default": True},
        },
        supports_check_mode=True,
    )
    p = module.params
    where = f"S3 at {p['endpoint_url']}"
    try:
        endpoint = Endpoint(
            p["endpoint_url"],
            p["access_key"],
            p["secret_key"],
            p["region"],
            p["timeout"],
            ca_file=p["ca_file"],
            addressing=p["addressing"],
        )
    except (OSError, ValueError) as error:  # an unreadable or non-PEM CA file, a bad addressing
        detail = describe_error(error) if isinstance(error, OSError) else str(error)
        module.fail_json(msg=f"{where}: {detail}" + (f" (ca_file {p['ca_file']})" if p["ca_file"] else ""))
    created = cors_changed = False
    try:
        if not p["create"]:
            verify_bucket(endpoint, p["name"], p["cors_rules"])
        else:
            created = ensure_bucket(endpoint, p["name"], module.check_mode)
            if created and module.check_mode:
                cors_changed = bool(p["cors_rules"])
            else:
                cors_changed = ensure_cors(endpoint, p["name"], p["cors_rules"], module.check_mode)
    except S3Error as error:
        module.fail_json(msg=f"{where}: {error}")
    except ValueError as error:  # virtual addressing of an IP address endpoint
        module.fail_json(msg=f"{where}: {error}")
    except OSError as error:
        module.fail_json(msg=f"{where} did not answer: {describe_error(error)}")
    module.exit_json(changed=created or cors_changed, created=created, cors_changed=cors_changed)


if __name__ == "__main__":
    main()
