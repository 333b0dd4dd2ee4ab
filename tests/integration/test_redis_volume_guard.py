"""The Redis side of the upgrade guard against the real engine and the stack's Redis image: a data volume
holding an RDB file newer than that Redis reads (Redis 8's format 12 under the stack's Redis 7.0) is refused
before anything starts, with the files and the ways forward in the message, and left as it was; the image's
own files, an empty volume and no volume pass."""

from __future__ import annotations

import subprocess
import uuid

import pytest
from ansible_collections.cleanmatex.infra.plugins.module_utils import redis_volume

pytestmark = pytest.mark.skipif(
    subprocess.run(["docker", "info"], capture_output=True).returncode != 0, reason="needs a Docker engine"
)


def _docker(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=120)
    if check:
        assert done.returncode == 0, done.stderr
    return done


@pytest.fixture(scope="module")
def image() -> str:
    """The newest Redis 7 image the images role built (a converge ran before the integration tests)."""
    tags = _docker("images", "cmx/redis", "--format", "{{.Tag}}").stdout.split()
    refs = [f"cmx/redis:{tag}" for tag in tags if tag.startswith("7.")]
    if not refs:
        pytest.skip("no cmx/redis:7.* image: converge first (bin/cmx up)")
    return refs[0]


@pytest.fixture
def volume():
    name = f"cmxtest-rguard-{uuid.uuid4().hex[:8]}_redis_data"
    _docker("volume", "create", name)
    yield name
    _docker("rm", "-f", *_docker("ps", "-aq", "--filter", f"volume={name}").stdout.split(), check=False)
    _docker("volume", "rm", "-f", name, check=False)


def _params(volume: str, image: str) -> dict:
    return {"volume": volume, "image": image, "container": "", "docker": "docker"}


def _sh(volume: str, image: str, script: str) -> str:
    return _docker(
        "run", "--rm", "--network", "none", "--user", "0", "--entrypoint", "sh",
        "--mount", f"type=volume,source={volume},target=/data", image, "-c", script,
    ).stdout  # fmt: skip


def test_a_volume_written_by_a_newer_redis_is_refused_and_left_untouched(volume, image):
    # The header Redis 8.0 writes (REDIS0012), as the AOF's RDB base: what a Redis 8 dev stack leaves behind.
    _sh(volume, image, "mkdir -p /data/appendonlydir && cd /data/appendonlydir "
                       "&& printf 'REDIS0012\\372\\011redis-ver' > appendonly.aof.1.base.rdb "
                       "&& : > appendonly.aof.1.incr.aof "
                       "&& printf 'file appendonly.aof.1.base.rdb seq 1 type b\\n"
                       "file appendonly.aof.1.incr.aof seq 1 type i\\n' "
                       "> appendonly.aof.manifest")  # fmt: skip
    before = _sh(volume, image, "sha256sum /data/appendonlydir/*")
    result = redis_volume.task_result(_params(volume, image), check_mode=False)
    assert result["failed"] and result["formats"] == {"appendonlydir/appendonly.aof.1.base.rdb": 12}
    assert "appendonlydir/appendonly.aof.1.base.rdb (format 12)" in result["msg"]
    assert "newer than Redis 7.0" in result["msg"] and "(format 10 at most)" in result["msg"]
    assert "Nothing was started and the volume is untouched" in result["msg"]
    assert f"docker volume rm {volume}" in result["msg"]
    assert _sh(volume, image, "sha256sum /data/appendonlydir/*") == before
    assert _docker("ps", "-aq", "--filter", f"volume={volume}").stdout.strip() == ""
    # And the refusal is right: that Redis really cannot load such a file.
    name = f"{volume}-load"
    try:
        loaded = _docker(
            "run", "--name", name, "--network", "none",
            "--mount", f"type=volume,source={volume},target=/data",
            image, "redis-server", "--appendonly", "yes", check=False,
        )  # fmt: skip
    finally:
        _docker("rm", "-f", name, check=False)
    assert loaded.returncode != 0 and "Can't handle RDB format version 12" in loaded.stdout + loaded.stderr


def test_the_images_own_files_an_empty_volume_and_no_volume_pass(volume, image):
    assert redis_volume.task_result(_params(volume, image), check_mode=False)["formats"] == {}
    # Files written by this very Redis (a key, then SAVE and an AOF rewrite).
    _sh(volume, image, "redis-server --appendonly yes --daemonize yes --dir /data; "
                       "until redis-cli ping >/dev/null 2>&1; do sleep 0.1; done; "
                       "redis-cli set k v && redis-cli save && redis-cli shutdown")  # fmt: skip
    result = redis_volume.task_result(_params(volume, image), check_mode=False)
    assert not result.get("failed"), result
    assert result["formats"]["dump.rdb"] == 10 and set(result["formats"].values()) == {10}, result
    missing = redis_volume.task_result(_params(f"{volume}-missing", image), check_mode=False)
    assert not missing.get("failed") and missing["formats"] == {}
