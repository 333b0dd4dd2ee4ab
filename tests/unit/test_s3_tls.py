"""S3 over https (managed S3) with a CA file, virtual-host addressing and buckets the keys may not create.

A real SeaweedFS (``weed mini``) on 127.0.0.1 serves the same S3 API over http and https (its certificate
signed by a throwaway CA) and virtual-host buckets under ``s3.cmx.test``. The https client is checked against
the plaintext port (what really exists), never against itself. ``<bucket>.s3.cmx.test`` is resolved to
127.0.0.1 by a resolver override in the test (the ``resolve`` fixture): the TLS handshake, Host header and
SigV4 signature are the real ones for the virtual host name.
"""

from __future__ import annotations

import datetime
import json
import os
import shutil
import socket
import subprocess
import sys
import urllib.error
import urllib.parse
import uuid

import pytest
from ansible_collections.cleanmatex.infra.plugins.module_utils import health_report, probes, s3sig
from ansible_collections.cleanmatex.infra.plugins.module_utils.s3_bucket import (
    CREATE_HINT,
    Endpoint,
    cors_differences,
    normalize_rules,
    parse_cors,
)
from ansible_collections.cleanmatex.infra.plugins.module_utils.s3_client import Client
from ansible_collections.cleanmatex.infra.plugins.modules import cmx_s3_bucket
from ansible_collections.cleanmatex.infra.tests.module_main import run_main
from tls_support import S3_ACCESS_KEY, S3_SECRET_KEY, TlsRedisServer, make_tls_material, tls_seaweed

DOMAIN = "s3.cmx.test"
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RULE = {
    "allowed_origins": ["https://admin.example.com"],
    "allowed_methods": ["GET", "PUT"],
    "allowed_headers": ["*"],
    "expose_headers": ["ETag"],
    "max_age_seconds": 3000,
}


@pytest.fixture(scope="module")
def tls(tmp_path_factory):
    return make_tls_material(
        tmp_path_factory.mktemp("s3-tls"), names=("127.0.0.1", "localhost", DOMAIN, f"*.{DOMAIN}")
    )


@pytest.fixture(scope="module")
def s3(tmp_path_factory, tls):
    yield from tls_seaweed(tmp_path_factory.mktemp("seaweedfs-tls"), tls, DOMAIN)


@pytest.fixture
def resolve(monkeypatch):
    """Resolve s3.cmx.test and every <bucket>.s3.cmx.test to 127.0.0.1 (no DNS server in the test); yields
    the names looked up, in order."""
    original = socket.getaddrinfo
    looked_up: list[str] = []

    def getaddrinfo(host, *args, **kwargs):
        if isinstance(host, str) and (host == DOMAIN or host.endswith("." + DOMAIN)):
            looked_up.append(host)
            host = "127.0.0.1"
        return original(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return looked_up


@pytest.fixture
def plain(s3) -> Client:
    """The same server over plaintext http, path-style: what really exists, whatever the https client says."""
    return Client(s3.http_url, S3_ACCESS_KEY, S3_SECRET_KEY, timeout=5)


def new_bucket() -> str:
    return f"cmx-tls-{uuid.uuid4().hex[:10]}"


def module_args(s3, tls, name, **extra) -> dict:
    return {
        "endpoint_url": s3.https_ip_url,
        "access_key": S3_ACCESS_KEY,
        "secret_key": S3_SECRET_KEY,
        "name": name,
        "ca_file": str(tls.ca),
        "timeout": 5,
        **extra,
    }


def current_cors(client: Client, bucket: str) -> list[dict]:
    status, body = client.request("GET", f"/{bucket}", [("cors", "")])
    return parse_cors(body) if status == 200 else []


# --------------------------------------------------------------------------- the client over https


def test_client_over_https_with_the_ca_creates_and_reads(s3, tls, plain):
    client = Client(s3.https_ip_url, S3_ACCESS_KEY, S3_SECRET_KEY, timeout=5, ca_file=str(tls.ca))
    bucket = new_bucket()
    assert plain.request("HEAD", f"/{bucket}")[0] == 404
    assert client.request("PUT", f"/{bucket}")[0] == 200
    assert client.request("PUT", f"/{bucket}/dir/a b?.txt", body=b"over tls")[0] == 200
    assert plain.request("HEAD", f"/{bucket}")[0] == 200
    assert plain.request("GET", f"/{bucket}/dir/a b?.txt") == (200, b"over tls")


@pytest.mark.parametrize("which", ["system CAs", "another CA"])
def test_client_over_https_without_the_ca_fails_clearly_and_sends_nothing(s3, tls, plain, which):
    ca_file = None if which == "system CAs" else str(tls.other_ca)
    client = Client(s3.https_ip_url, S3_ACCESS_KEY, S3_SECRET_KEY, timeout=5, ca_file=ca_file)
    bucket = new_bucket()
    with pytest.raises(urllib.error.URLError) as raised:
        client.request("PUT", f"/{bucket}")
    assert probes.describe_error(raised.value) == (
        "TLS: certificate verify failed (unable to get local issuer certificate)"
    )
    assert plain.request("HEAD", f"/{bucket}")[0] == 404  # the PUT never reached the server


def test_client_refuses_an_unreadable_ca_file(s3, tmp_path):
    with pytest.raises(OSError):
        Client(s3.https_ip_url, S3_ACCESS_KEY, S3_SECRET_KEY, ca_file=str(tmp_path / "missing.crt"))


def test_existing_call_sites_keep_path_addressing_and_plain_http(s3, plain):
    client = Client(s3.http_url, S3_ACCESS_KEY, S3_SECRET_KEY, "us-east-1", 5)  # positional, as before
    assert (client.ca_file, client.addressing) == (None, "path")
    url, headers = client.build("HEAD", "/bkt")
    assert url == f"{s3.http_url}/bkt"
    assert headers["Host"] == urllib.parse.urlsplit(s3.http_url).netloc


# --------------------------------------------------------------------------- virtual-host addressing


def s3_signature_ok(method: str, url: str, headers: dict, secret_key: str = S3_SECRET_KEY) -> bool:
    """botocore's S3 SigV4 (an independent implementation) over ``url`` gives the signature we sent."""
    from botocore.auth import S3SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    request = AWSRequest(method=method, url=url, data=b"")
    for key in ("Host", "X-Amz-Date", "X-Amz-Content-Sha256"):
        request.headers[key] = headers[key]
    request.context["timestamp"] = headers["X-Amz-Date"]
    auth = S3SigV4Auth(Credentials(S3_ACCESS_KEY, secret_key), "s3", "us-east-1")
    signature = auth.signature(auth.string_to_sign(request, auth.canonical_request(request)), request)
    return headers["Authorization"].endswith(f"Signature={signature}")


def test_virtual_request_puts_the_bucket_in_the_host_and_signs_that_host_and_path():
    pytest.importorskip("botocore")
    client = Client(f"https://{DOMAIN}:8443", S3_ACCESS_KEY, S3_SECRET_KEY, addressing="virtual")
    url, headers = client.build("GET", "/bkt/dir/a b?.txt", [("versionId", "1")])
    assert url == f"https://bkt.{DOMAIN}:8443/dir/a%20b%3F.txt?versionId=1"
    assert headers["Host"] == f"bkt.{DOMAIN}:8443"
    assert s3_signature_ok("GET", url, headers)
    # The same signature does not hold for the path-style form of the request: it is bound to the host.
    assert not s3_signature_ok("GET", f"https://{DOMAIN}:8443/bkt/dir/a%20b%3F.txt?versionId=1", headers)
    bucket_url, bucket_headers = client.build("HEAD", "/bkt")
    assert bucket_url == f"https://bkt.{DOMAIN}:8443/"
    assert s3_signature_ok("HEAD", bucket_url, bucket_headers)
    # Listing buckets has no bucket: it goes to the endpoint itself.
    assert client.build("GET", "/")[0] == f"https://{DOMAIN}:8443/"


def test_virtual_addressing_needs_a_host_name():
    with pytest.raises(ValueError, match="use path addressing"):
        Client("https://127.0.0.1:9000", "a", "s", addressing="virtual").build("HEAD", "/bkt")
    with pytest.raises(ValueError, match="path or virtual"):
        Client("https://s3.example.com", "a", "s", addressing="vhost")
    assert s3sig.bucket_base("https://s3.example.com/base/", "b", "virtual") == (
        "https://b.s3.example.com/base",
        "",
    )
    assert s3sig.bucket_base("https://s3.example.com", "b", "path") == ("https://s3.example.com", "/b")


def test_virtual_addressing_against_the_real_server(s3, tls, plain, resolve):
    client = Client(
        s3.https_name_url, S3_ACCESS_KEY, S3_SECRET_KEY, timeout=5, ca_file=str(tls.ca), addressing="virtual"
    )
    bucket = new_bucket()
    assert client.request("PUT", f"/{bucket}")[0] == 200
    assert client.request("PUT", f"/{bucket}/key #1.txt", body=b"virtual")[0] == 200
    assert resolve == [f"{bucket}.{DOMAIN}"] * 2  # connected to the bucket's own host name
    # Stored in that bucket under that key: read back path-style over plaintext.
    assert plain.request("GET", f"/{bucket}/key #1.txt") == (200, b"virtual")
    assert client.request("GET", f"/{bucket}/key #1.txt") == (200, b"virtual")
    wrong = Client(
        s3.https_name_url, S3_ACCESS_KEY, "x" * 22, timeout=5, ca_file=str(tls.ca), addressing="virtual"
    )
    assert wrong.request("GET", f"/{bucket}/key #1.txt")[0] == 403  # the server checks the signature


def test_probe_s3_virtual_without_health_endpoint(s3, tls, plain, resolve):
    bucket = new_bucket()
    assert plain.request("PUT", f"/{bucket}")[0] == 200
    args = dict(access_key=S3_ACCESS_KEY, secret_key=S3_SECRET_KEY, ca_file=str(tls.ca), timeout=5)
    up = probes.probe_s3(s3.https_name_url, bucket, health_path=None, addressing="virtual", **args)
    assert up.up, up
    assert resolve == [f"{bucket}.{DOMAIN}"]  # no health endpoint asked for, the bucket HEAD virtual-hosted
    missing = probes.probe_s3(s3.https_name_url, "cmx-no-such", health_path="", addressing="virtual", **args)
    assert missing.status == "down" and missing.error == "bucket 'cmx-no-such' does not exist"
    # Through the module suboptions: health_path "" = bucket HEAD only, addressing and ca_file passed on.
    spec = {
        "name": "storage",
        "type": "s3",
        "url": s3.https_name_url,
        "health_path": "",
        "addressing": "virtual",
        "ca_file": str(tls.ca),
        "bucket": bucket,
        "access_key": S3_ACCESS_KEY,
        "secret_key": S3_SECRET_KEY,
    }
    assert probes.module_probe(spec)(5).up
    assert DOMAIN not in resolve  # the endpoint's own host (where /healthz is) was never asked


# --------------------------------------------------------------------------- probes over https


def test_probe_s3_over_https_with_and_without_the_ca(s3, tls, plain):
    bucket = new_bucket()
    assert plain.request("PUT", f"/{bucket}")[0] == 200
    args = dict(bucket=bucket, access_key=S3_ACCESS_KEY, secret_key=S3_SECRET_KEY, timeout=5)
    assert probes.probe_s3(s3.https_ip_url, ca_file=str(tls.ca), **args).up  # /healthz, then HEAD
    assert probes.probe_s3(s3.https_ip_url, ca_file=str(tls.ca), health_path=None, **args).up
    down = probes.probe_s3(s3.https_ip_url, ca_file=str(tls.other_ca), health_path=None, **args)
    assert down.status == "down"
    assert down.error == (
        f"HEAD bucket {bucket!r} at {s3.https_ip_url}: "
        "TLS: certificate verify failed (unable to get local issuer certificate)"
    )
    health = probes.probe_s3(s3.https_ip_url, ca_file=str(tls.other_ca), **args)
    assert health.error == (
        f"health endpoint: GET {s3.https_ip_url}/healthz: "
        "TLS: certificate verify failed (unable to get local issuer certificate)"
    )
    assert S3_SECRET_KEY not in down.error + health.error


def test_probe_http_verifies_against_the_ca(s3, tls):
    assert probes.probe_http(f"{s3.https_ip_url}/healthz", ca_file=str(tls.ca), timeout=5).up
    res = probes.probe_http(
        f"https://localhost:{s3.https_port}/healthz", ca_file=str(tls.other_ca), timeout=5
    )
    assert res.status == "down" and "TLS: certificate verify failed" in res.error
    assert probes.http_request("GET", f"{s3.https_ip_url}/healthz", ca_file=str(tls.ca), timeout=5)[0] == 200


# --------------------------------------------------------------------------- cmx_s3_bucket over https


def test_module_creates_bucket_and_cors_over_https_then_changes_nothing(s3, tls, plain):
    bucket = new_bucket()
    first = run_main(cmx_s3_bucket, module_args(s3, tls, bucket, cors_rules=[RULE]))
    assert (first.get("failed"), first["changed"], first["created"], first["cors_changed"]) == (
        None,
        True,
        True,
        True,
    ), first
    assert plain.request("HEAD", f"/{bucket}")[0] == 200
    assert current_cors(plain, bucket) == normalize_rules([RULE])
    again = run_main(cmx_s3_bucket, module_args(s3, tls, bucket, cors_rules=[RULE]))
    assert (again["changed"], again["created"], again["cors_changed"]) == (False, False, False)


def test_module_over_https_without_the_ca_fails_clearly_and_creates_nothing(s3, tls, plain):
    bucket = new_bucket()
    result = run_main(cmx_s3_bucket, {**module_args(s3, tls, bucket), "ca_file": str(tls.other_ca)})
    assert result["failed"] is True
    assert result["msg"] == (
        f"S3 at {s3.https_ip_url} did not answer: "
        "TLS: certificate verify failed (unable to get local issuer certificate)"
    )
    assert plain.request("HEAD", f"/{bucket}")[0] == 404


def test_module_with_a_missing_ca_file_names_it(s3, tls, tmp_path):
    missing = tmp_path / "missing.crt"
    result = run_main(cmx_s3_bucket, {**module_args(s3, tls, new_bucket()), "ca_file": str(missing)})
    assert result["failed"] is True
    assert str(missing) in result["msg"] and "no such file" in result["msg"]


def test_module_virtual_addressing_over_https(s3, tls, plain, resolve):
    bucket = new_bucket()
    args = {**module_args(s3, tls, bucket, cors_rules=[RULE]), "endpoint_url": s3.https_name_url}
    result = run_main(cmx_s3_bucket, {**args, "addressing": "virtual"})
    assert (result.get("failed"), result["created"], result["cors_changed"]) == (None, True, True), result
    assert plain.request("HEAD", f"/{bucket}")[0] == 200
    assert current_cors(plain, bucket) == normalize_rules([RULE])
    assert set(resolve) == {f"{bucket}.{DOMAIN}"}


# --------------------------------------------------------------------------- create: false


def test_create_false_passes_on_an_existing_bucket_with_the_cors_rules(s3, tls, plain):
    bucket = new_bucket()
    endpoint = Endpoint(s3.http_url, S3_ACCESS_KEY, S3_SECRET_KEY, timeout=5)
    assert endpoint.bucket_request("PUT", bucket)[0] == 200
    from ansible_collections.cleanmatex.infra.plugins.module_utils.s3_bucket import ensure_cors

    assert ensure_cors(endpoint, bucket, [RULE]) is True
    result = run_main(cmx_s3_bucket, module_args(s3, tls, bucket, cors_rules=[RULE], create=False))
    assert result.get("failed") is None, result
    assert (result["changed"], result["created"], result["cors_changed"]) == (False, False, False)


def test_create_false_fails_on_a_missing_bucket_and_creates_nothing(s3, tls, plain):
    bucket = new_bucket()
    result = run_main(cmx_s3_bucket, module_args(s3, tls, bucket, cors_rules=[RULE], create=False))
    assert result["failed"] is True
    assert f"bucket {bucket} does not exist" in result["msg"]
    assert result["msg"].endswith(CREATE_HINT)
    assert CREATE_HINT == (
        "create it (and its CORS rules) with an account that may, or set cmx_s3_create_bucket: true"
    )
    assert result.get("changed") is not True
    assert plain.request("HEAD", f"/{bucket}")[0] == 404  # still no bucket


def test_create_false_fails_on_different_cors_and_changes_nothing(s3, tls, plain):
    bucket = new_bucket()
    assert plain.request("PUT", f"/{bucket}")[0] == 200
    endpoint = Endpoint(s3.http_url, S3_ACCESS_KEY, S3_SECRET_KEY, timeout=5)
    from ansible_collections.cleanmatex.infra.plugins.module_utils.s3_bucket import ensure_cors

    other = {**RULE, "allowed_origins": ["https://old.example.com"]}
    assert ensure_cors(endpoint, bucket, [other]) is True
    result = run_main(cmx_s3_bucket, module_args(s3, tls, bucket, cors_rules=[RULE], create=False))
    assert result["failed"] is True
    msg = result["msg"]
    assert f"bucket {bucket} exists but its CORS rules differ" in msg
    assert "CORS rule(s) missing: {origins https://admin.example.com; methods GET PUT;" in msg
    assert "CORS rule(s) not wanted: {origins https://old.example.com;" in msg
    assert msg.endswith(CREATE_HINT)
    assert current_cors(plain, bucket) == normalize_rules([other])  # untouched


def test_create_false_fails_on_a_bucket_without_cors_and_adds_none(s3, tls, plain):
    bucket = new_bucket()
    assert plain.request("PUT", f"/{bucket}")[0] == 200
    result = run_main(cmx_s3_bucket, module_args(s3, tls, bucket, cors_rules=[RULE], create=False))
    assert result["failed"] is True
    assert "it has no CORS rules; wanted {origins https://admin.example.com;" in result["msg"]
    assert plain.request("GET", f"/{bucket}", [("cors", "")])[0] == 404  # still none


def test_create_false_in_check_mode_reports_no_change(s3, tls, plain):
    bucket = new_bucket()
    assert plain.request("PUT", f"/{bucket}")[0] == 200
    result = run_main(
        cmx_s3_bucket, {**module_args(s3, tls, bucket, create=False), "_ansible_check_mode": True}
    )
    assert result.get("failed") is None, result
    assert result["changed"] is False


def test_cors_differences_name_each_problem():
    a, b = normalize_rules([RULE])[0], normalize_rules([{**RULE, "max_age_seconds": None}])[0]
    assert cors_differences([a], [a]) == []
    assert cors_differences([a, b], [b, a]) == [
        "CORS rules in another order: has "
        "{origins https://admin.example.com; methods GET PUT; headers *; expose ETag; max age 3000}, "
        "{origins https://admin.example.com; methods GET PUT; headers *; expose ETag}; wanted "
        "{origins https://admin.example.com; methods GET PUT; headers *; expose ETag}, "
        "{origins https://admin.example.com; methods GET PUT; headers *; expose ETag; max age 3000}"
    ]
    assert cors_differences([a], []) == [
        "CORS rule(s) not wanted: "
        "{origins https://admin.example.com; methods GET PUT; headers *; expose ETag; max age 3000}"
    ]


# --------------------------------------------------------------------------- the /health service


def health_env(s3, tls, redis, bucket, **extra) -> dict:
    return {
        "HEALTH_REDIS_URL": f"rediss://127.0.0.1:{redis.port}/0",
        "HEALTH_REDIS_PASSWORD": redis.password,
        "HEALTH_REDIS_CA_FILE": str(tls.ca),
        "HEALTH_S3_ENDPOINT": s3.https_ip_url,
        "HEALTH_S3_HEALTH_PATH": "",
        "HEALTH_S3_CA_FILE": str(tls.ca),
        "HEALTH_S3_BUCKET": bucket,
        "HEALTH_S3_ACCESS_KEY": S3_ACCESS_KEY,
        "HEALTH_S3_SECRET_KEY": S3_SECRET_KEY,
        "HEALTH_PROBE_TIMEOUT_MS": "5000",
        **extra,
    }


@pytest.fixture(scope="module")
def redis_tls(tls):
    with TlsRedisServer(tls, "cmx-health-tls-redis") as server:
        yield server


def test_health_config_reads_the_tls_settings(s3, tls, redis_tls):
    env = health_env(s3, tls, redis_tls, "bkt", HEALTH_S3_ADDRESSING="virtual")
    specs = health_report.config_from_env(env).specs
    assert specs["redis"]["ca_file"] == str(tls.ca) and specs["redis"]["url"].startswith("rediss://")
    assert specs["storage"]["health_path"] is None
    assert (specs["storage"]["ca_file"], specs["storage"]["addressing"]) == (str(tls.ca), "virtual")
    bad = health_report.config_from_env({**env, "HEALTH_S3_ADDRESSING": "vhost"}).specs["storage"]
    assert bad == {
        "name": "storage",
        "type": "down",
        "error": "HEALTH_S3_ADDRESSING='vhost' is not path or virtual",
    }


def test_health_report_with_tls_redis_and_virtual_https_s3(s3, tls, plain, redis_tls, resolve):
    bucket = new_bucket()
    assert plain.request("PUT", f"/{bucket}")[0] == 200
    env = health_env(
        s3, tls, redis_tls, bucket, HEALTH_S3_ENDPOINT=s3.https_name_url, HEALTH_S3_ADDRESSING="virtual"
    )
    config = health_report.config_from_env(env)
    results = health_report.collect(config)
    assert results["redis"].up, results["redis"]
    assert results["storage"].up, results["storage"]
    assert resolve == [f"{bucket}.{DOMAIN}"]
    report = health_report.build_report(results, "t")
    assert set(report) == {"status", "timestamp", "services", "version"}
    assert set(report["services"]) == {"database", "redis", "storage"}
    assert set(report["services"]["redis"]) == {"status", "latency"}
    wrong = health_report.collect(
        health_report.config_from_env(
            {**env, "HEALTH_REDIS_CA_FILE": str(tls.other_ca), "HEALTH_S3_CA_FILE": str(tls.other_ca)}
        )
    )
    assert wrong["redis"].error.startswith("TLS: certificate verify failed")
    assert "TLS: certificate verify failed" in wrong["storage"].error


def test_cmx_health_check_from_a_flat_copy_over_tls(s3, tls, plain, redis_tls, pg, tmp_path):
    """The health image's layout (module_utils copied flat next to bin/cmx-health), every service TLS
    except the test PostgreSQL: healthy with the CAs, unhealthy naming the TLS failure without them."""
    for name in ("health_report.py", "probes.py", "s3sig.py"):
        shutil.copy(os.path.join(REPO, "plugins", "module_utils", name), tmp_path / name)
    shutil.copy(os.path.join(REPO, "bin", "cmx-health"), tmp_path / "cmx-health")
    bucket = new_bucket()
    assert plain.request("PUT", f"/{bucket}")[0] == 200
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEALTH_") and k != "PYTHONPATH"}
    env.update(health_env(s3, tls, redis_tls, bucket))
    env["HEALTH_DATABASE_URL"] = (
        f"postgresql://{pg['user']}:{urllib.parse.quote(pg['password'], safe='')}@127.0.0.1:{pg['port']}"
        f"/{pg['dbname']}?sslmode=disable"
    )

    def check(**extra):
        return subprocess.run(
            [sys.executable, str(tmp_path / "cmx-health"), "check", "-v"],
            env={**env, **extra},
            cwd=str(tmp_path),
            capture_output=True,
            text=True,
            timeout=60,
        )

    good = check()
    assert good.returncode == 0, good.stdout + good.stderr
    report = json.loads(good.stdout)
    assert report["status"] == "healthy" and set(report) == {"status", "timestamp", "services", "version"}
    datetime.datetime.fromisoformat(report["timestamp"].replace("Z", "+00:00"))
    bad = check(HEALTH_REDIS_CA_FILE=str(tls.other_ca))
    assert bad.returncode == 2
    assert json.loads(bad.stdout)["services"]["redis"]["status"] == "down"
    assert (
        "redis: down - TLS: certificate verify failed (unable to get local issuer certificate)"
        f" at 127.0.0.1:{redis_tls.port}"
    ) in bad.stderr
    assert redis_tls.password not in bad.stderr and S3_SECRET_KEY not in bad.stderr
