"""SigV4 (s3sig) against AWS's published test vectors and an independent signer (botocore).

Expected values are copied from AWS documentation, not produced by our code:
- "Examples of how to derive a signing key for Signature Version 4" (IAM, 20120215);
- the Signature Version 4 test suite (aws-sig-v4-test-suite): get-vanilla and
  get-vanilla-query-order-key-case, credentials AKIDEXAMPLE, 20150830T123600Z,
  region us-east-1, service "service";
- Amazon S3 "Signature Calculations for the Authorization Header" example
  "GET Object" (examplebucket, Range bytes=0-9, 20130524T000000Z).
"""

from __future__ import annotations

import hashlib

import pytest
from ansible_collections.cleanmatex.infra.plugins.module_utils import s3sig

SUITE_ACCESS_KEY = "AKIDEXAMPLE"
SUITE_SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
SUITE_DATE = "20150830T123600Z"


def _signature(headers: dict) -> str:
    return headers["Authorization"].rsplit("Signature=", 1)[1]


def test_signing_key_matches_aws_derivation_example():
    key = s3sig.signing_key(SUITE_SECRET, "20120215", "us-east-1", "iam")
    assert key.hex() == "f4780e2d9f65fa895f9c67b32ce1baf0b0d8a43505a000a1a9e090d414db404d"


def test_suite_get_vanilla():
    headers = s3sig.sign(
        "GET",
        "https://example.amazonaws.com/",
        SUITE_ACCESS_KEY,
        SUITE_SECRET,
        region="us-east-1",
        service="service",
        now=SUITE_DATE,
    )
    assert headers["Host"] == "example.amazonaws.com"
    assert headers["X-Amz-Date"] == SUITE_DATE
    assert "X-Amz-Content-Sha256" not in headers  # only S3 sends it
    assert headers["Authorization"] == (
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, "
        "SignedHeaders=host;x-amz-date, "
        "Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
    )


def test_suite_get_vanilla_query_order_key_case():
    headers = s3sig.sign(
        "GET",
        "https://example.amazonaws.com/?Param2=value2&Param1=value1",
        SUITE_ACCESS_KEY,
        SUITE_SECRET,
        service="service",
        now=SUITE_DATE,
    )
    assert _signature(headers) == "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500"


def test_s3_documentation_get_object_example():
    headers = s3sig.sign(
        "GET",
        "https://examplebucket.s3.amazonaws.com/test.txt",
        "AKIAIOSFODNN7EXAMPLE",
        "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        region="us-east-1",
        headers={"Range": "bytes=0-9"},
        now="20130524T000000Z",
    )
    assert (
        headers["X-Amz-Content-Sha256"] == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    )
    assert "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date," in headers["Authorization"]
    assert _signature(headers) == "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"


def test_s3_documentation_get_object_intermediate_steps():
    # The documented canonical request and the hash that ends the documented StringToSign.
    creq, signed = s3sig.canonical_request(
        "GET",
        "/test.txt",
        "",
        {
            "Host": "examplebucket.s3.amazonaws.com",
            "Range": "bytes=0-9",
            "x-amz-content-sha256": s3sig.EMPTY_SHA256,
            "x-amz-date": "20130524T000000Z",
        },
        s3sig.EMPTY_SHA256,
    )
    assert creq == (
        "GET\n/test.txt\n\n"
        "host:examplebucket.s3.amazonaws.com\nrange:bytes=0-9\n"
        "x-amz-content-sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\n"
        "x-amz-date:20130524T000000Z\n\n"
        "host;range;x-amz-content-sha256;x-amz-date\n"
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    )
    assert signed == "host;range;x-amz-content-sha256;x-amz-date"
    sts = s3sig.string_to_sign(
        "20130524T000000Z", s3sig.credential_scope("20130524", "us-east-1", "s3"), creq
    )
    assert sts.splitlines() == [
        "AWS4-HMAC-SHA256",
        "20130524T000000Z",
        "20130524/us-east-1/s3/aws4_request",
        "7344ae5b7ee6c3e7e6b0fe0640412a37625d1fbfff95c48bbb2dc43964946972",
    ]


def test_empty_payload_hash_constant():
    assert hashlib.sha256(b"").hexdigest() == s3sig.EMPTY_SHA256


@pytest.mark.parametrize(
    ("raw", "encoded"),
    [("a b", "a%20b"), ("a/b", "a%2Fb"), ("~-_.", "~-_."), ("é", "%C3%A9"), ("a+b=c", "a%2Bb%3Dc")],
)
def test_uri_encode_is_rfc3986_uppercase(raw, encoded):
    assert s3sig.uri_encode(raw) == encoded


def test_canonical_query_sorts_by_encoded_name_then_value():
    assert s3sig.canonical_query("b=2&a=2&a=1&c") == "a=1&a=2&b=2&c="


def test_canonical_headers_trim_and_collapse():
    block, signed = s3sig.canonical_headers({"My-Header1": "  a   b  c ", "Host": "h"})
    assert block == "host:h\nmy-header1:a b c\n"
    assert signed == "host;my-header1"


@pytest.mark.parametrize(
    ("url", "host"),
    [
        ("http://127.0.0.1:9000/b", "127.0.0.1:9000"),
        ("http://s3.local/b", "s3.local"),
        ("https://s3.local:443/b", "s3.local"),
        ("http://[::1]:9000/b", "[::1]:9000"),
    ],
)
def test_host_header(url, host):
    assert s3sig.host_header(url) == host


@pytest.mark.parametrize("bucket", ["cleanmatex-dev", "cmx.bucket", "b_1"])
@pytest.mark.parametrize("region", ["us-east-1", "eu-west-1"])
def test_head_bucket_signature_matches_botocore(bucket, region):
    """Our HEAD-bucket signature equals botocore's (an independent SigV4 implementation)."""
    pytest.importorskip("botocore")
    from test_probes_support import botocore_signature_ok

    url = f"http://127.0.0.1:9000/{bucket}"
    headers = s3sig.sign("HEAD", url, "minioadmin", "minioadmin123", region=region)
    assert botocore_signature_ok("HEAD", url, headers, "minioadmin", "minioadmin123", region)
    # and a wrong secret does not verify
    assert not botocore_signature_ok("HEAD", url, headers, "minioadmin", "other-secret", region)
