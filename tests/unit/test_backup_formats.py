"""Globals rewriting, Redis snapshot checks and INFO parsing, S3 listing and docker exec argv (no servers)."""

from __future__ import annotations

import os

import pytest
from ansible_collections.cleanmatex.infra.plugins.module_utils import backup, backup_exec, backup_s3

GLOBALS_PG17 = """--
-- PostgreSQL database cluster dump
--

\\restrict abc123

SET default_transaction_read_only = off;

SET client_encoding = 'UTF8';
SET standard_conforming_strings = on;

--
-- Roles
--

CREATE ROLE cmx_readonly;
ALTER ROLE cmx_readonly WITH NOSUPERUSER INHERIT NOCREATEROLE NOCREATEDB NOLOGIN NOREPLICATION NOBYPASSRLS;
CREATE ROLE cmx_user;
ALTER ROLE cmx_user WITH SUPERUSER LOGIN REPLICATION BYPASSRLS PASSWORD 'SCRAM-SHA-256$4096:old';
CREATE ROLE "Report Reader";
ALTER ROLE "Report Reader" WITH LOGIN PASSWORD 'SCRAM-SHA-256$4096:keep';
ALTER ROLE cmx_user SET statement_timeout TO '30s';

GRANT cmx_readonly TO "Report Reader" WITH INHERIT TRUE GRANTED BY cmx_user;

\\unrestrict abc123
"""


def test_globals_tolerate_existing_roles_and_keep_the_inventory_password():
    out = backup.prepare_globals_sql(GLOBALS_PG17, ["cmx_user"])
    assert "DO $cmx_restore$ BEGIN CREATE ROLE cmx_readonly; EXCEPTION WHEN duplicate_object" in out
    assert 'CREATE ROLE "Report Reader"; EXCEPTION' in out
    assert "SCRAM-SHA-256$4096:old" not in out  # managed role: password and attributes untouched
    assert "SCRAM-SHA-256$4096:keep" in out  # other roles get theirs back
    assert "ALTER ROLE cmx_user SET statement_timeout TO '30s';" in out  # per-role settings kept
    assert "\\restrict abc123" in out and "GRANT cmx_readonly TO" in out
    assert not any(line.startswith("CREATE ROLE") for line in out.splitlines())


def test_globals_match_quoted_managed_roles():
    sql = 'CREATE ROLE "App User";\nALTER ROLE "App User" WITH LOGIN PASSWORD \'x\';\n'
    out = backup.prepare_globals_sql(sql, ["App User"])
    assert "PASSWORD" not in out
    assert backup.quote_ident("cmx_user") == "cmx_user"
    assert backup.quote_ident('we"ird') == '"we""ird"'


def _rdb(tmp_path, data: bytes) -> str:
    path = tmp_path / "dump.rdb"
    path.write_bytes(data)
    return str(path)


def test_check_rdb_accepts_a_snapshot_and_rejects_garbage(tmp_path):
    good = b"REDIS0012" + b"\xfa\x09redis-ver\x058.0.2" + b"\xff" + b"\x00" * 8
    backup.check_rdb(_rdb(tmp_path, good))
    with pytest.raises(backup.BackupError, match="not an RDB snapshot"):
        backup.check_rdb(_rdb(tmp_path, b"-NOAUTH Authentication required.\r\n"))
    # Trailing bytes (a partial copy, a transfer marker): no end-of-file opcode 9 bytes from the end.
    with pytest.raises(backup.BackupError, match="truncated"):
        backup.check_rdb(_rdb(tmp_path, good + os.urandom(40)))


def test_parse_redis_info_and_key_counts():
    text = (
        "# Server\r\nredis_version:8.0.2\r\n# Persistence\r\naof_enabled:1\r\n"
        "# Keyspace\r\ndb0:keys=12,expires=2,avg_ttl=0,subexpiry=0\r\ndb3:keys=1,expires=0,avg_ttl=0\r\n"
    )
    info = backup.parse_redis_info(text)
    assert info["redis_version"] == "8.0.2" and info["aof_enabled"] == "1"
    assert info["keyspace"]["db0"] == {"keys": 12, "expires": 2}
    assert backup.redis_key_counts(info) == {"db0": 12, "db3": 1}
    assert backup.redis_key_counts(backup.parse_redis_info("# Keyspace\r\n")) == {}


LIST_PAGE = b"""<?xml version="1.0" encoding="UTF-8"?>
<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
  <Name>cleanmatex-ci</Name><EncodingType>url</EncodingType><KeyCount>2</KeyCount>
  <IsTruncated>true</IsTruncated><NextContinuationToken>tok+/=</NextContinuationToken>
  <Contents><Key>docs/a%20b%2B%C3%BC+c.txt</Key><Size>5</Size><ETag>"abc"</ETag></Contents>
  <Contents><Key>empty</Key><Size>0</Size><ETag>"d41d8"</ETag></Contents>
</ListBucketResult>"""


def test_list_page_decodes_url_encoded_keys_and_continuation():
    objects, token = backup_s3.parse_list_page(LIST_PAGE)
    assert [o["key"] for o in objects] == ["docs/a b+ü c.txt", "empty"]
    assert objects[0] == {"key": "docs/a b+ü c.txt", "size": 5, "etag": "abc"}
    assert token == "tok+/="


def test_list_page_without_url_encoding_keeps_keys_and_ends():
    body = (
        b"<ListBucketResult><IsTruncated>false</IsTruncated>"
        b"<Contents><Key>a%20b</Key><Size>1</Size></Contents></ListBucketResult>"
    )
    objects, token = backup_s3.parse_list_page(body)
    assert objects[0]["key"] == "a%20b" and token is None
    with pytest.raises(backup_s3.S3BackupError, match="no continuation token"):
        backup_s3.parse_list_page(b"<ListBucketResult><IsTruncated>true</IsTruncated></ListBucketResult>")


def test_docker_exec_passes_secret_names_never_values():
    argv = backup_exec.exec_argv(
        "docker", "cmx-postgres", ["pg_dump", "-Fc"], {"PGPASSWORD": "s3cret"}.keys()
    )
    assert argv == ["docker", "exec", "-e", "PGPASSWORD", "cmx-postgres", "pg_dump", "-Fc"]
    assert "s3cret" not in " ".join(argv)
    assert backup_exec.exec_argv("docker", "c", ["x"], [], interactive=True)[:3] == ["docker", "exec", "-i"]


def test_exec_to_file_streams_hashes_and_reports_failures(tmp_path):
    """A stand-in `docker` script: proves the value travels by environment and stdout lands in the file."""
    fake = tmp_path / "docker"
    fake.write_text('#!/bin/sh\nprintf "%s" "$PGPASSWORD"\nprintf "err" >&2\nexit "${FAKE_RC:-0}"\n')
    fake.chmod(0o755)
    dest = tmp_path / "out.bin"
    result = backup_exec.exec_to_file("c", ["pg_dump"], str(dest), env={"PGPASSWORD": "pw"}, docker=str(fake))
    assert dest.read_bytes() == b"pw" and result.size == 2 and result.stderr == b"err"
    assert os.stat(dest).st_mode & 0o777 == 0o600
    with pytest.raises(backup_exec.ExecError, match=r"pg_dump in container c failed \(exit 3\): err"):
        backup_exec.exec_to_file(
            "c", ["pg_dump"], str(dest), env={"PGPASSWORD": "pw", "FAKE_RC": "3"}, docker=str(fake)
        )


def test_follower_hashes_a_file_while_it_grows(tmp_path):
    import hashlib
    import time

    path = tmp_path / "growing.bin"
    chunks = [os.urandom(300_000) for _ in range(5)]
    with open(path, "wb") as writer:
        follower = backup_exec._Follower(str(path), writer.fileno(), interval=0.01)
        follower.start()
        for chunk in chunks:
            writer.write(chunk)
            writer.flush()
            time.sleep(0.05)  # the follower catches up between writes
        size, sha = follower.finish()
    data = b"".join(chunks)
    assert (size, sha) == (len(data), hashlib.sha256(data).hexdigest())
