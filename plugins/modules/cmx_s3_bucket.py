#!/usr/bin/python
"""Ansible module: an S3 bucket with its CORS rules on any S3-compatible server."""

from __future__ import annotations

DOCUMENTATION = r"""
module: cmx_s3_bucket
short_description: Make sure an S3 bucket exists and has exactly the given CORS rules
description:
  - Creates the bucket when missing and sets its CORS configuration when it differs, with path-style requests
    signed with AWS SigV4 by the Python standard library (no boto3), so a converge with nothing to change
    is fast.
  - Works with SeaweedFS, MinIO and other S3-compatible servers.
version_added: 0.1.0
author: CleanMateX DevOps
options:
  endpoint_url: {description: S3 API base URL, e.g. C(http://127.0.0.1:9000)., type: str, required: true}
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
from ansible_collections.cleanmatex.infra.plugins.module_utils.s3_bucket import (
    Endpoint,
    S3Error,
    ensure_bucket,
    ensure_cors,
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
        },
        supports_check_mode=True,
    )
    p = module.params
    endpoint = Endpoint(p["endpoint_url"], p["access_key"], p["secret_key"], p["region"], p["timeout"])
    try:
        created = ensure_bucket(endpoint, p["name"], module.check_mode)
        if created and module.check_mode:
            cors_changed = bool(p["cors_rules"])
        else:
            cors_changed = ensure_cors(endpoint, p["name"], p["cors_rules"], module.check_mode)
    except S3Error as error:
        module.fail_json(msg=f"S3 at {p['endpoint_url']}: {error}")
    except OSError as error:
        module.fail_json(msg=f"S3 at {p['endpoint_url']} did not answer: {error}")
    module.exit_json(changed=created or cors_changed, created=created, cors_changed=cors_changed)


if __name__ == "__main__":
    main()
