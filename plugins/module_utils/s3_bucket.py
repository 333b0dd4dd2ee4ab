"""Create an S3 bucket and set its CORS rules idempotently, with the standard library only.

Requests signed with SigV4 (module_utils/s3sig.py) through the collection's S3 client (path-style or
virtual-hosted, https verified against a CA file), so it runs wherever Python does: no boto3 import on the
converge path. plugins/modules/cmx_s3_bucket.py wraps it.

When the credentials may not create buckets (managed S3, ``create: false``), :func:`verify_bucket` only
reads: the bucket must exist and carry exactly the wanted CORS rules, else it says what is missing.
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


CREATE_HINT = "create it (and its CORS rules) with an account that may, or set cmx_s3_create_bucket: true"


def describe_rule(rule: dict) -> str:
    """One normalized CORS rule in a line: "origins a b; methods GET PUT; headers *; max age 3000"."""
    parts = [
        f"{label} {' '.join(rule[key])}"
        for key, label in (
            ("allowed_origins", "origins"),
            ("allowed_methods", "methods"),
            ("allowed_headers", "headers"),
            ("expose_headers", "expose"),
        )
        if rule[key]
    ]
    if rule["max_age_seconds"] is not None:
        parts.append(f"max age {rule['max_age_seconds']}")
    return "{" + "; ".join(parts) + "}"


def cors_differences(current: list[dict], wanted: list[dict]) -> list[str]:
    """What keeps the normalized ``current`` rules from equalling ``wanted``, one phrase per problem."""
    if current == wanted:
        return []
    if not current:
        return ["it has no CORS rules; wanted " + ", ".join(describe_rule(r) for r in wanted)]
    found = []
    rest = list(current)
    missing = []
    for rule in wanted:
        if rule in rest:
            rest.remove(rule)
        else:
            missing.append(rule)
    if missing:
        found.append("CORS rule(s) missing: " + ", ".join(describe_rule(r) for r in missing))
    if rest:
        found.append("CORS rule(s) not wanted: " + ", ".join(describe_rule(r) for r in rest))
    if not found:  # the same rules in another order: S3 applies the first that matches
        found.append(
            "CORS rules in another order: has "
            + ", ".join(describe_rule(r) for r in current)
            + "; wanted "
            + ", ".join(describe_rule(r) for r in wanted)
        )
    return found


def verify_bucket(endpoint: Endpoint, bucket: str, rules: list[dict]) -> None:
    """Read-only check for credentials that may not create buckets: the bucket exists and its CORS rules
    equal ``rules``. Never PUTs or DELETEs anything. Raises S3Error saying what is missing or different."""
    status, body = endpoint.bucket_request("HEAD", bucket)
    if status == 404:
        raise S3Error(
            f"bucket {bucket} does not exist and the converge may not create buckets"
            f" (cmx_s3_create_bucket: false): {CREATE_HINT}"
        )
    if status != 200:
        raise _fail(f"HEAD bucket {bucket}", status, body)
    status, body = endpoint.bucket_request("GET", bucket, "cors")
    if status == 200:
        current = parse_cors(body)
    elif status == 404:  # NoSuchCORSConfiguration
        current = []
    else:
        raise _fail(f"get CORS of bucket {bucket}", status, body)
    wanted = normalize_rules(rules)
    problems = cors_differences(current, wanted)
    if problems:
        raise S3Error(
            f"bucket {bucket} exists but its CORS rules differ and the converge may not change them"
            f" (cmx_s3_create_bucket: false): {'; '.join(problems)}; {CREATE_HINT}"
        )
