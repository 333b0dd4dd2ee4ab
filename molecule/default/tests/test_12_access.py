"""Access (issue 17, items 1 and 2): nothing of the storage answers without credentials except the S3 API with
valid signatures and its health endpoint, from the host or from the project network; the storage runs as a
non-root user; the S3 console and Redis Commander ask for a login and refuse foreign Host headers."""

from __future__ import annotations

import json
import re
import subprocess

import pytest
import requests
from botocore.exceptions import ClientError
from conftest import container, docker, inspect, s3_client

# SeaweedFS's own ports inside the container: master, volume, filer, their gRPC ports, the S3 gateway's
# internal port, S3 gRPC, WebDAV, the admin UI's internal port and its gRPC, Iceberg, Lance.
INTERNAL_PORTS = [9333, 19333, 9340, 19340, 8888, 18888, 8333, 18333, 7333, 23647, 33647, 8181, 9101]

# Run inside the health container (Python, on <project>-network): what each storage port answers.
PROBE = r"""
import http.client, json, socket, sys
out = {}
for port in json.loads(sys.argv[1]):
    try:
        conn = http.client.HTTPConnection("storage", port, timeout=3)
        conn.request("GET", sys.argv[2], headers={"Host": sys.argv[3]} if sys.argv[3] else {})
        response = conn.getresponse()
        out[port] = [response.status, response.read(300).decode("latin-1")]
    except (OSError, http.client.HTTPException) as exc:
        out[port] = ["error", type(exc).__name__]
print(json.dumps(out))
"""


def probe_from_network(ports: list[int], path: str = "/", host: str = "") -> dict:
    result = docker("exec", container("health"), "python3", "-c", PROBE, json.dumps(ports), path, host)
    return {int(port): answer for port, answer in json.loads(result.stdout).items()}


def console(inv: dict, path: str = "/") -> str:
    return f"http://127.0.0.1:{inv['cmx_s3_console_port']}{path}"


def console_login(inv: dict, password: str) -> requests.Session:
    session = requests.Session()
    page = session.get(console(inv, "/login"), timeout=10)
    assert page.status_code == 200, page.status_code
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    form = {"csrf_token": token, "username": inv["cmx_s3_console_user"], "password": password}
    session.post(console(inv, "/login"), data=form, timeout=10, allow_redirects=False)
    return session


def test_internal_storage_ports_refuse_the_project_network(inv):
    answers = probe_from_network(INTERNAL_PORTS, "/")
    assert all(answer == ["error", "ConnectionRefusedError"] for answer in answers.values()), answers
    # The same probe reaches what is meant to be reachable: S3's health endpoint.
    assert probe_from_network([9000], "/healthz")[9000][0] == 200


def test_console_from_the_project_network_needs_a_known_host_and_a_login(inv):
    # The service name as Host (what a container on the network sends) is not a local host name.
    by_name = probe_from_network([23646], "/api/users")[23646]
    assert by_name[0] == 403 and inv["cmx_s3_secret_key"] not in by_name[1]
    # A client that claims to be localhost still meets the login.
    spoofed = probe_from_network([23646], "/api/users", host="localhost")[23646]
    assert spoofed[0] == 401 and inv["cmx_s3_secret_key"] not in spoofed[1]


def test_console_from_the_host_requires_the_login(inv):
    for path in ("/api/users", "/object-store/users", "/files"):
        response = requests.get(console(inv, path), timeout=10, allow_redirects=False)
        assert response.status_code in (303, 307, 401), (path, response.status_code)
        assert inv["cmx_s3_secret_key"] not in response.text
    wrong = console_login(inv, inv["cmx_s3_console_password"] + "-wrong")
    assert wrong.get(console(inv, "/api/users"), timeout=10).status_code == 401
    right = console_login(inv, inv["cmx_s3_console_password"])
    users = right.get(console(inv, "/api/users"), timeout=10)
    assert users.status_code == 200
    assert inv["cmx_s3_access_key"] in users.text


def test_console_refuses_a_foreign_host_header(inv):
    response = requests.get(console(inv, "/login"), headers={"Host": "rebind.example.com:9001"}, timeout=10)
    assert response.status_code == 403
    assert "csrf_token" not in response.text


def test_s3_still_needs_valid_signatures(inv):
    s3 = s3_client(inv)
    s3.put_object(Bucket=inv["cmx_s3_bucket"], Key="access/probe.txt", Body=b"signed")
    assert s3.get_object(Bucket=inv["cmx_s3_bucket"], Key="access/probe.txt")["Body"].read() == b"signed"
    with pytest.raises(ClientError) as refused:
        s3_client(inv, secret=inv["cmx_s3_secret_key"] + "x").get_object(
            Bucket=inv["cmx_s3_bucket"], Key="access/probe.txt"
        )
    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    anonymous = requests.get(
        f"http://127.0.0.1:{inv['cmx_s3_port']}/{inv['cmx_s3_bucket']}/access/probe.txt", timeout=10
    )
    assert anonymous.status_code == 403 and b"signed" not in anonymous.content


def test_storage_processes_do_not_run_as_root():
    rows = docker("top", container("storage"), "-o", "pid,uid,comm").stdout.splitlines()[1:]
    processes = [row.split(None, 2)[1:] for row in rows if row.strip()]
    assert any(name.strip() == "weed" for _, name in processes), rows
    assert all(uid != "0" for uid, _ in processes), rows


def test_gui_logins_are_not_in_the_container_config(inv):
    for service in ("storage", "redis-commander"):
        config = json.dumps(inspect(container(service))["Config"])
        assert inv["cmx_s3_console_password"] not in config, service
        assert inv["cmx_redis_commander_password"] not in config, service


def commander(inv: dict, path: str) -> str:
    return f"http://127.0.0.1:{inv['cmx_redis_commander_port']}{path}"


def test_redis_commander_requires_its_login_and_still_reaches_redis(inv):
    anonymous = requests.get(commander(inv, "/apiv2/server/info"), timeout=10)
    assert anonymous.status_code == 401
    assert "redis_version" not in anonymous.text.lower() and "Redis version" not in anonymous.text
    wrong = requests.post(
        commander(inv, "/signin"),
        data={
            "username": inv["cmx_redis_commander_user"],
            "password": inv["cmx_redis_commander_password"] + "x",
        },
        timeout=10,
    )
    assert wrong.json() == {"ok": False}
    signed_in = requests.post(
        commander(inv, "/signin"),
        data={"username": inv["cmx_redis_commander_user"], "password": inv["cmx_redis_commander_password"]},
        timeout=10,
    ).json()
    assert signed_in["ok"] is True
    info = requests.get(
        commander(inv, "/apiv2/server/info"),
        headers={"Authorization": f"Bearer {signed_in['bearerToken']}"},
        timeout=10,
    )
    assert info.status_code == 200
    assert "Redis version" in info.text


def test_redis_commander_refuses_a_foreign_host_header(inv):
    response = requests.get(commander(inv, "/"), headers={"Host": "rebind.example.com:8081"}, timeout=10)
    assert response.status_code == 403
    assert (
        requests.get(commander(inv, "/"), headers={"Host": "localhost:8081"}, timeout=10).status_code == 200
    )


def test_storage_upgrade_hands_root_owned_files_to_the_seaweed_user():
    """A volume written by the old root-run container: every file is given over before root is dropped."""
    image = inspect(container("storage"))["Config"]["Image"]
    volume = f"{container('storage').rsplit('-', 1)[0]}-access-upgrade-probe"
    docker("volume", "rm", "-f", volume, check=False)
    try:
        docker(
            "run",
            "--rm",
            "-v",
            f"{volume}:/data",
            "--entrypoint",
            "/bin/sh",
            image,
            "-c",
            "mkdir -p /data/sub && echo x > /data/sub/old.dat"
            " && chown -R 0:0 /data/sub && chown 1000:1000 /data",
        )
        result = docker(
            "run",
            "--rm",
            "-v",
            f"{volume}:/data",
            image,
            "sh",
            "-c",
            "id -u; find /data ! -user seaweed | wc -l; echo y >> /data/sub/old.dat && echo written",
        )
        uid, not_owned, written = result.stdout.split()
        assert uid == "1000" and not_owned == "0" and written == "written", result.stdout
        assert "giving /data to the seaweed user" in result.stderr
    finally:
        subprocess.run(["docker", "volume", "rm", "-f", volume], capture_output=True)
