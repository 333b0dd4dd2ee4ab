"""One signed (AWS SigV4) S3 request, standard library only: run inside the app host with
`python3 - METHOD URL QUERY REGION CA_FILE` and the keys in S3_ACCESS_KEY / S3_SECRET_KEY; prints
{"status": ..., "body": ...}. The tests pipe this file in: the app host has Python but no S3 client."""

from __future__ import annotations

import datetime
import hashlib
import hmac
import json
import os
import ssl
import sys
import urllib.error
import urllib.request
from urllib.parse import urlsplit


def sign(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


def main(method: str, url: str, query: str, region: str, ca_file: str) -> None:
    access, secret = os.environ["S3_ACCESS_KEY"], os.environ["S3_SECRET_KEY"]
    parts = urlsplit(url)
    now = datetime.datetime.now(datetime.UTC)
    stamp, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
    payload = hashlib.sha256(b"").hexdigest()
    headers = {"host": parts.netloc, "x-amz-content-sha256": payload, "x-amz-date": stamp}
    signed = ";".join(sorted(headers))
    lines = [f"{name}:{headers[name]}" for name in sorted(headers)]
    canonical = "\n".join([method, parts.path or "/", query, *lines, "", signed, payload])
    scope = f"{day}/{region}/s3/aws4_request"
    to_sign = "\n".join(["AWS4-HMAC-SHA256", stamp, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    key = sign(sign(sign(sign(f"AWS4{secret}".encode(), day), region), "s3"), "aws4_request")
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    headers["authorization"] = (
        f"AWS4-HMAC-SHA256 Credential={access}/{scope}, SignedHeaders={signed}, Signature={signature}"
    )
    request = urllib.request.Request(f"{url}?{query}" if query else url, method=method, headers=headers)
    context = ssl.create_default_context(cafile=ca_file)
    try:
        with urllib.request.urlopen(request, timeout=15, context=context) as answer:
            status, body = answer.status, answer.read()
    except urllib.error.HTTPError as error:
        status, body = error.code, error.read()
    print(json.dumps({"status": status, "body": body.decode(errors="replace")}))


if __name__ == "__main__":
    main(*sys.argv[1:6])
