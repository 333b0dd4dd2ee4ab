"""Shipping images to a host without a registry, against the real Docker engine: archives are written once and
reused, a damaged archive is refused before anything is loaded, a loaded image carries the control machine's
image ID, and every archive is removed from the host afterwards."""

from __future__ import annotations

import os
import subprocess
import uuid
from pathlib import Path

import pytest
from ansible_collections.cleanmatex.infra.plugins.module_utils import image_transfer as transfer

pytestmark = pytest.mark.skipif(
    subprocess.run(["docker", "info"], capture_output=True).returncode != 0,
    reason="needs a Docker engine",
)


def docker(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=True, **kwargs)


@pytest.fixture
def image(tmp_path):
    """A tiny image of our own (FROM scratch, one file), removed afterwards."""
    repository = f"cmx-test/transfer-{uuid.uuid4().hex[:8]}"
    refs = []

    def build(tag: str, content: str) -> str:
        context = tmp_path / f"context-{tag}"
        context.mkdir()
        (context / "payload").write_text(content)
        (context / "Dockerfile").write_text("FROM scratch\nCOPY payload /payload\n")
        ref = f"{repository}:{tag}"
        docker("build", "--quiet", "--tag", ref, str(context), env={**os.environ, "DOCKER_BUILDKIT": "0"})
        refs.append(ref)
        return ref

    yield build
    subprocess.run(["docker", "image", "rm", "--force", *refs], capture_output=True, check=False)


def test_an_archive_is_written_once_and_reused(image, tmp_path):
    ref = image("v1", "one")
    record, written = transfer.save_archive(ref, str(tmp_path / "cache"))
    assert written is True
    assert record["id"] == transfer.image_id(ref)
    assert record["sha256"] == transfer.file_sha256(record["file"])
    assert oct(os.stat(record["file"]).st_mode & 0o777) == "0o600"
    again, written = transfer.save_archive(ref, str(tmp_path / "cache"))
    assert written is False and again == record
    # A damaged cached archive is not reused.
    with open(record["file"], "r+b") as handle:
        handle.seek(20)
        handle.write(b"\0\0\0\0")
    repaired, written = transfer.save_archive(ref, str(tmp_path / "cache"))
    assert written is True and transfer.file_sha256(repaired["file"]) == repaired["sha256"]


def test_a_rebuilt_image_supersedes_the_older_archive(image, tmp_path):
    cache = str(tmp_path / "cache")
    old, _ = transfer.save_archive(image("v1", "one"), cache)
    new, _ = transfer.save_archive(image("v2", "two"), cache)
    assert sorted(os.listdir(cache)) == sorted(
        [os.path.basename(new["file"]), os.path.basename(new["file"]) + ".json"]
    )
    assert not os.path.exists(old["file"])


def test_loading_brings_back_the_same_image_and_removes_the_archive(image, tmp_path):
    ref = image("v1", "one")
    record, _ = transfer.save_archive(ref, str(tmp_path / "cache"))
    shipped = tmp_path / "host" / os.path.basename(record["file"])
    shipped.parent.mkdir()
    shipped.write_bytes(Path(record["file"]).read_bytes())
    docker("image", "rm", ref)
    assert transfer.image_id(ref) is None
    result = transfer.load_result({"archives": [record], "directory": str(shipped.parent)}, check_mode=False)
    assert result == {"changed": True, "loaded": [ref]}
    assert transfer.image_id(ref) == record["id"]
    assert not shipped.exists()
    # The host has it now: a second shipment loads nothing (and still cleans up).
    shipped.write_bytes(Path(record["file"]).read_bytes())
    assert (
        transfer.load_result({"archives": [record], "directory": str(shipped.parent)}, False)["loaded"] == []
    )
    assert not shipped.exists()


def test_a_damaged_archive_is_refused_before_anything_is_loaded(image, tmp_path):
    ref = image("v1", "one")
    record, _ = transfer.save_archive(ref, str(tmp_path / "cache"))
    docker("image", "rm", ref)
    damaged = tmp_path / "host.tar.gz"
    data = bytearray(Path(record["file"]).read_bytes())
    data[len(data) // 2] ^= 0xFF
    damaged.write_bytes(bytes(data))
    result = transfer.load_result({"archives": [{**record, "file": str(damaged)}], "directory": None}, False)
    assert result["failed"] is True and result["loaded"] == []
    assert "damaged on the way; nothing was loaded" in result["msg"] and ref in result["msg"]
    assert transfer.image_id(ref) is None
    assert not damaged.exists()


def test_missing_refs_reads_the_hosts_list_or_asks_the_engine(image):
    ref = image("v1", "one")
    absent = f"cmx-test/absent-{uuid.uuid4().hex[:8]}:x"
    assert transfer.missing_refs([ref, absent], [ref]) == [absent]
    assert transfer.missing_refs([ref, absent], None) == [absent]
    assert transfer.archive_name("cmx/postgres:17-abc") == "cmx_postgres_17-abc.tar.gz"


def test_the_archive_module_reports_no_host_change_and_names_a_missing_image(tmp_path):
    result = transfer.archive_result({"images": ["cmx-test/absent:never"], "cache_dir": str(tmp_path)}, False)
    assert result["failed"] is True
    assert "cmx-test/absent:never: the control machine has no such image to ship" in result["msg"]
