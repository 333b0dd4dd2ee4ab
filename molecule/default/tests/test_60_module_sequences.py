"""Our modules against the running stack, in order: check mode, real run, both again, changed input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

from conftest import s3_client

ROOT = Path(__file__).resolve().parents[3]


def module(name: str, args: dict, check: bool = False) -> dict:
    """Run one module with `ansible localhost -m` and return its JSON result (the json stdout callback)."""
    bin_dir = Path(sys.executable).parent
    env = {
        **os.environ,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "ANSIBLE_LOAD_CALLBACK_PLUGINS": "1",
        "ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json",
        "ANSIBLE_NOCOLOR": "1",
    }
    argv = [
        str(bin_dir / "ansible"),
        "localhost",
        "-c",
        "local",
        "-e",
        f"ansible_python_interpreter={sys.executable}",
        "-m",
        f"cleanmatex.infra.{name}",
        "-a",
        json.dumps(args),
    ]
    done = subprocess.run(
        [*argv, *(["--check"] if check else [])],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    result = json.loads(done.stdout)["plays"][0]["tasks"][0]["hosts"]["localhost"]
    assert not result.get("failed"), result.get("msg")
    return result


def sequence(name: str, args: dict, changed_args: dict) -> list[bool]:
    return [
        module(name, args, check=True)["changed"],
        module(name, args)["changed"],
        module(name, args, check=True)["changed"],
        module(name, args)["changed"],
        module(name, changed_args)["changed"],
    ]


def test_cmx_s3_bucket_sequence(inv):
    bucket = f"seq-{uuid.uuid4().hex[:10]}"
    base = {
        "endpoint_url": f"http://127.0.0.1:{inv['cmx_s3_port']}",
        "access_key": inv["cmx_s3_access_key"],
        "secret_key": inv["cmx_s3_secret_key"],
        "name": bucket,
        "cors_rules": [{"allowed_origins": ["http://a.test"], "allowed_methods": ["GET"]}],
    }
    changed = {
        **base,
        "cors_rules": [{"allowed_origins": ["http://b.test"], "allowed_methods": ["GET", "PUT"]}],
    }
    client = s3_client(inv)
    try:
        assert sequence("cmx_s3_bucket", base, changed) == [True, True, False, False, True]
        rules = client.get_bucket_cors(Bucket=bucket)["CORSRules"]
        assert rules[0]["AllowedOrigins"] == ["http://b.test"]
    finally:
        client.delete_bucket(Bucket=bucket)


def test_cmx_files_sequence(tmp_path):
    target = tmp_path / "out" / "file.txt"
    base = {
        "directories": [{"path": str(tmp_path / "out"), "mode": "0700"}],
        "files": [{"path": str(target), "content": "one\n", "mode": "0600"}],
    }
    changed = {**base, "files": [{"path": str(target), "content": "two\n", "mode": "0600"}]}
    assert sequence("cmx_files", base, changed) == [True, True, False, False, True]
    assert target.read_text() == "two\n"


def test_cmx_pgbouncer_userlist_sequence(inv, tmp_path):
    path = tmp_path / "userlist.txt"
    base = {
        "port": inv["cmx_postgres_port"],
        "user": inv["cmx_postgres_user"],
        "password": inv["cmx_postgres_password"],
        "dbname": inv["cmx_postgres_db"],
        "path": str(path),
        "mode": "0644",
    }
    changed = {**base, "mode": "0600"}
    assert sequence("cmx_pgbouncer_userlist", base, changed) == [True, True, False, False, True]
    assert path.read_text().startswith(f'"{inv["cmx_postgres_user"]}" "SCRAM-SHA-256$')
