"""Create an S3 bucket and set its CORS rules idempotently, with the standard library only.

Path-style requests signed with SigV4 (module_utils/s3sig.py), so it runs wherever Python does:
no boto3 import on the converge path. plugins/modules/cmx_s3_bucket.py wraps it.
"""

from __future__ import annotations

import base64
import hashlib
import xml.etree.ElementTree as ET

from ansible_collections.cleanmatex.infra.plugins.module_utils.s3_client import (
    Client,
    error_message,
    strip_namespaces,
)

S3_NS = "http://s3.amazonaws.com/doc/2006-03-01/"


class S3Error(Exception):
    """The server refused a request; the message names the operation, status and S3 error code."""


class Endpoint(Client):
    """A Client with bucket-level calls: request(method, bucket, sub-resource, body)."""

    def bucket_request(
        self, method: str, bucket: str, query: str = "", body: bytes = b""
    ) -> tuple[int, bytes]:
        headers = {}
        if body:
            headers["Content-MD5"] = base64.b64encode(hashlib.md5(body).digest()).decode()  # S3 requires it
            headers["Content-Type"] = "application/xml"
        return self.request(method, f"/{bucket}", [(query, "")] if query else None, headers, body)


def _fail(operation: str, status: int, body: bytes) -> S3Error:
    return S3Error(error_message(operation, status, body))


def ensure_bucket(endpoint: Endpoint, bucket: str, check_mode: bool = False) -> bool:
    """Create the bucket when it is missing. Returns True when it was (or would be) created."""
    status, body = endpoint.bucket_request("HEAD", bucket)
    if status == 200:
        return False
    if status != 404:
        raise _fail(f"HEAD bucket {bucket}", status, body)
    if check_mode:
        return True
    status, body = endpoint.bucket_request("PUT", bucket)
    if status not in (200, 409):  # 409: created meanwhile by someone else (BucketAlreadyOwnedByYou)
        raise _fail(f"create bucket {bucket}", status, body)
    return True


def normalize_rules(rules: list[dict]) -> list[dict]:
    """Rules as comparable dicts: list fields sorted, absent fields empty, max age an int or None."""
    out = []
    for rule in rules:
        out.append(
            {
                "allowed_origins": sorted(rule.get("allowed_origins") or []),
                "allowed_methods": sorted(m.upper() for m in rule.get("allowed_methods") or []),
                "allowed_headers": sorted(rule.get("allowed_headers") or []),
                "expose_headers": sorted(rule.get("expose_headers") or []),
                # Servers differ in echoing an unset max age as absent or 0: both mean "not set" here.
                "max_age_seconds": int(rule.get("max_age_seconds") or 0) or None,
            }
        )
    return out


_FIELDS = [
    ("allowed_origins", "AllowedOrigin"),
    ("allowed_methods", "AllowedMethod"),
    ("allowed_headers", "AllowedHeader"),
    ("expose_headers", "ExposeHeader"),
]


def cors_xml(rules: list[dict]) -> bytes:
    root = ET.Element("CORSConfiguration", xmlns=S3_NS)
    for rule in normalize_rules(rules):
        node = ET.SubElement(root, "CORSRule")
        for key, tag in _FIELDS:
            for value in rule[key]:
                ET.SubElement(node, tag).text = value
        if rule["max_age_seconds"] is not None:
            ET.SubElement(node, "MaxAgeSeconds").text = str(rule["max_age_seconds"])
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)


def parse_cors(body: bytes) -> list[dict]:
    root = strip_namespaces(ET.fromstring(body))
    rules = []
    for node in root.findall("CORSRule"):
        rule: dict = {key: [e.text or "" for e in node.findall(tag)] for key, tag in _FIELDS}
        age = node.find("MaxAgeSeconds")
        rule["max_age_seconds"] = int(age.text) if age is not None and age.text else None
        rules.append(rule)
    return normalize_rules(rules)


def ensure_cors(endpoint: Endpoint, bucket: str, rules: list[dict], check_mode: bool = False) -> bool:
    """Make the bucket's CORS configuration equal `rules`. Returns True when it changed (or would)."""
    status, body = endpoint.bucket_request("GET", bucket, "cors")
    if status == 200:
        current = parse_cors(body)
    elif status == 404:  # NoSuchCORSConfiguration
        current = []
    else:
        raise _fail(f"get CORS of bucket {bucket}", status, body)
    wanted = normalize_rules(rules)
    if current == wanted:
        return False
    if check_mode:
        return True
    if wanted:
        status, body = endpoint.bucket_request("PUT", bucket, "cors", cors_xml(wanted))
    else:
        status, body = endpoint.bucket_request("DELETE", bucket, "cors")
    if status not in (200, 204):
        raise _fail(f"set CORS of bucket {bucket}", status, body)
    return True
