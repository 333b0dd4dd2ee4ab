"""SeaweedFS (the stack's image, user, hardening and command: `front` forwarding S3 from 9000 to
`weed mini` on the container's loopback) on a 128 MiB volume that fills up."""

from __future__ import annotations

import hashlib
import json
import os
import time
import uuid

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from conftest import docker, host_port, logs, project_image, wait_until

BUCKET = "faults"


@pytest.fixture
def storage_image():
    return project_image("cmx/seaweedfs")


def start_storage(lab, image: str, volume: str) -> tuple[str, dict]:
    keys = {"accessKey": f"fault{uuid.uuid4().hex[:12]}", "secretKey": uuid.uuid4().hex}
    identities = lab.tmp / "s3_identities.json"
    identities.write_text(
        json.dumps(
            {
                "identities": [
                    {"name": "cmx", "credentials": [keys], "actions": ["Admin", "Read", "Write", "List"]}
                ]
            }
        )
    )
    identities.chmod(0o644)
    name = lab.run(
        "storage", image,
        "front", "--forward=0.0.0.0:9000=127.0.0.1:8333", "--",
        "mini", "-dir=/data", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", "-s3.port=8333",
        "-s3.config=/run/secrets/s3_identities.json", "-s3.port.iceberg=0", "-s3.port.lance=0",
        "-webdav=false", "-master.telemetry=false", f"-bucket={BUCKET}", "-admin.port=23647",
        user="seaweed", service="storage",
        mounts=(f"{volume}:/data", f"{identities}:/run/secrets/s3_identities.json:ro"), ports=(9000,),
    )  # fmt: skip
    return name, keys


def s3_client(container: str, keys: dict):
    return boto3.client(
        "s3",
        endpoint_url=f"http://127.0.0.1:{host_port(container, 9000)}",
        aws_access_key_id=keys["accessKey"],
        aws_secret_access_key=keys["secretKey"],
        region_name="us-east-1",
        config=Config(
            s3={"addressing_style": "path"}, retries={"max_attempts": 1}, connect_timeout=5, read_timeout=20
        ),
    )


def serving(container: str, keys: dict, probe: str | None = None):
    """A client once S3 answers for the bucket (with `probe`: reads that object, the volume server is in)."""

    def check():
        s3 = s3_client(container, keys)
        s3.head_bucket(Bucket=BUCKET)
        if probe:
            s3.get_object(Bucket=BUCKET, Key=probe)["Body"].read()
        return s3

    return wait_until(check, 45, "SeaweedFS serving S3")


def test_a_full_volume_fails_puts_keeps_gets_and_recovers(lab, storage_image):
    volume = lab.volume("storage-data", size="128m", uid=1000)
    holder = lab.holder(storage_image, volume, service="storage", user="seaweed")
    name, keys = start_storage(lab, storage_image, volume)
    s3 = serving(name, keys)
    stored: dict[str, str] = {}

    def put(key: str, size: int) -> None:
        body = os.urandom(size)
        s3.put_object(Bucket=BUCKET, Key=key, Body=body)
        stored[key] = hashlib.sha256(body).hexdigest()

    for i in range(5):
        put(f"before/{i}", 100_000)
    free = int(docker("exec", holder, "df", "-B1", "--output=avail", "/v").stdout.split()[-1])
    docker("exec", holder, "fallocate", "-l", str(free - 2 * 1024 * 1024), "/v/ballast")

    refusal = None
    for i in range(100):  # 20 MB at most: far more than the 2 MiB left
        try:
            put(f"during/{i}", 200_000)
        except ClientError as error:
            refusal = error.response
            break
    assert refusal is not None, "SeaweedFS accepted 20 MB on a volume with 2 MiB free"
    assert refusal["ResponseMetadata"]["HTTPStatusCode"] == 500
    assert refusal["Error"]["Code"] == "InternalError", refusal["Error"]
    assert "no space left on device" in logs(name)
    print(
        refusal["Error"], *[line for line in logs(name).splitlines() if "no space left" in line][:1], sep="\n"
    )

    def contents(client) -> dict[str, str]:
        return {
            key: hashlib.sha256(client.get_object(Bucket=BUCKET, Key=key)["Body"].read()).hexdigest()
            for key in stored
        }

    assert contents(s3) == stored  # GETs of everything acknowledged keep working

    docker("exec", holder, "rm", "/v/ballast")
    wait_until(lambda: put("after", 200_000) or True, 30, "SeaweedFS accepting PUTs after space was freed")
    docker("stop", name)
    started = time.time()
    docker("start", name)
    s3 = serving(name, keys, probe="after")
    assert contents(s3) == stored, logs(name, since=started)[-3000:]
