"""The upgrade guard against the real engine: a PostgreSQL data volume written by another major is refused
before anything starts, with both majors in the message, and the volume is left exactly as it was."""

from __future__ import annotations

import subprocess
import uuid

import pytest
from ansible_collections.cleanmatex.infra.plugins.module_utils import pg_volume

pytestmark = pytest.mark.skipif(
    subprocess.run(["docker", "info"], capture_output=True).returncode != 0, reason="needs a Docker engine"
)


def _docker(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def image(built_postgres_image) -> str:
    return built_postgres_image


@pytest.fixture
def volume(image):
    name = f"cmxtest-guard-{uuid.uuid4().hex[:8]}_postgres_data"
    assert _docker("volume", "create", name).returncode == 0
    yield name
    _docker("volume", "rm", "-f", name)


def _write_pg_version(volume: str, image: str, text: str) -> None:
    done = _docker(
        "run", "--rm", "--network", "none", "--user", "root", "--entrypoint", "sh",
        "--mount", f"type=volume,source={volume},target=/d",
        image, "-c", f"printf '{text}\\n' > /d/PG_VERSION",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr


def _read_pg_version(volume: str, image: str) -> str:
    return pg_volume.volume_major("docker", volume, image)


def test_a_volume_of_another_major_is_refused_and_left_untouched(volume, image):
    _write_pg_version(volume, image, "16")
    params = {"volume": volume, "image": image, "major": 17, "container": "", "docker": "docker"}
    result = pg_volume.task_result(params, check_mode=False)
    assert result["failed"] and result["found"] == "16"
    assert "written by PostgreSQL 16" in result["msg"] and "set to run 17" in result["msg"]
    assert "Nothing was started and the volume is untouched" in result["msg"]
    assert _read_pg_version(volume, image) == "16"
    # Nothing was started: no container uses the volume.
    assert _docker("ps", "-aq", "--filter", f"volume={volume}").stdout.strip() == ""


def test_the_same_major_an_empty_volume_and_no_volume_pass(volume, image):
    params = {"volume": volume, "image": image, "major": 17, "container": "", "docker": "docker"}
    assert pg_volume.task_result(params, check_mode=False)["found"] is None  # empty: no cluster yet
    _write_pg_version(volume, image, "17")
    result = pg_volume.task_result(params, check_mode=False)
    assert not result.get("failed") and result["found"] == "17"
    missing = {**params, "volume": f"{volume}-missing"}
    assert pg_volume.task_result(missing, check_mode=False)["found"] is None
