"""CORS XML round trip and comparison rules of the stdlib S3 bucket module."""

from __future__ import annotations

from ansible_collections.cleanmatex.infra.plugins.module_utils.s3_bucket import (
    _fail,
    cors_xml,
    normalize_rules,
    parse_cors,
)

RULE = {
    "allowed_origins": ["http://localhost:3000"],
    "allowed_methods": ["put", "GET"],
    "allowed_headers": ["*"],
    "expose_headers": ["ETag"],
    "max_age_seconds": 3000,
}


def test_cors_xml_round_trips_to_the_normalized_rules():
    assert parse_cors(cors_xml([RULE])) == normalize_rules([RULE])
    assert normalize_rules([RULE])[0]["allowed_methods"] == ["GET", "PUT"]


def test_parse_accepts_namespaced_and_plain_documents():
    plain = (
        b'<?xml version="1.0"?><CORSConfiguration><CORSRule><AllowedMethod>GET</AllowedMethod>'
        b"<AllowedOrigin>http://x</AllowedOrigin><MaxAgeSeconds>0</MaxAgeSeconds></CORSRule></CORSConfiguration>"
    )
    namespaced = plain.replace(
        b"<CORSConfiguration>", b'<CORSConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
    )
    expected = normalize_rules([{"allowed_origins": ["http://x"], "allowed_methods": ["GET"]}])
    assert parse_cors(plain) == parse_cors(namespaced) == expected


def test_unset_and_zero_max_age_compare_equal_but_other_values_differ():
    base = {"allowed_origins": ["http://x"], "allowed_methods": ["GET"]}
    assert normalize_rules([base]) == normalize_rules([{**base, "max_age_seconds": 0}])
    assert normalize_rules([base]) != normalize_rules([{**base, "max_age_seconds": 60}])


def test_error_names_operation_status_code_and_hint():
    body = b"<Error><Code>SignatureDoesNotMatch</Code></Error>"
    assert str(_fail("get CORS of bucket b", 403, body)) == (
        "get CORS of bucket b: HTTP 403 SignatureDoesNotMatch (check the S3 access key and secret key)"
    )
    assert str(_fail("HEAD bucket b", 500, b"")) == "HEAD bucket b: HTTP 500"
