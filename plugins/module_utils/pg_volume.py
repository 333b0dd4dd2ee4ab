# Copyright: CleanMateX DevOps
# Apache License 2.0 (see galaxy.yml)
"""The upgrade guard: which PostgreSQL major wrote a data volume (its PG_VERSION file), checked before the
stack starts, so a server of another major never gets a volume it cannot open (no crash loop, the volume
untouched)."""

from __future__ import annotations

import json
import subprocess

ARGUMENT_SPEC = {
    "volume": {"type": "str", "required": True},
    "image": {"type": "str", "required": True},
    "major": {"type": "int", "required": True},
    "container": {"type": "str", "default": ""},
    "docker": {"type": "str", "default": "docker"},
}


class VolumeError(Exception):
    pass


def _docker(docker: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([docker, *args], capture_output=True, text=True, timeout=timeout)


def running_image(docker: str, container: str) -> str | None:
    """The image reference a running container was created from, or None (absent or stopped)."""
    if not container:
        return None
    done = _docker(docker, "container", "inspect", container)
    if done.returncode != 0:
        return None
    info = json.loads(done.stdout)[0]
    return info["Config"]["Image"] if info["State"].get("Running") else None


def volume_major(docker: str, volume: str, image: str) -> str | None:
    """The major in the volume's PG_VERSION, or None when there is no such volume or no cluster in it yet.

    Read by a one-off container of the stack's own image with no network, the volume mounted read-only."""
    if _docker(docker, "volume", "inspect", volume).returncode != 0:
        return None
    done = _docker(
        docker, "run", "--rm", "--network", "none", "--log-driver", "none", "--pull", "never",
        "--entrypoint", "cat", "--mount", f"type=volume,source={volume},target=/cmx-data,readonly",
        image, "/cmx-data/PG_VERSION",
    )  # fmt: skip
    if done.returncode == 0:
        return done.stdout.strip() or None
    if "No such file" in done.stderr:
        return None
    raise VolumeError(
        f"cannot read PG_VERSION from volume {volume} with {image}: {done.stderr.strip()[:300]}"
    )


def refusal(volume: str, found: str, major: int) -> str:
    return (
        f"The PostgreSQL data volume {volume} was written by PostgreSQL {found}, and the stack is set to run "
        f"{major} (cmx_postgres_major): a server cannot open another major's data. Nothing was started and "
        f"the volume is untouched. Either keep {found} (set cmx_postgres_major: {found}), or move the data "
        f"to {major}: bin/cmx upgrade (a verified dump and restore; the old volume is kept for a rollback; "
        "docs/database.md)."
    )


def task_result(params: dict, check_mode: bool) -> dict:
    """cmx_pg_volume_check: fail when the volume holds another major than params['major']."""
    docker = params["docker"]
    if running_image(docker, params["container"]) == params["image"]:
        return {"changed": False, "found": None, "msg": "the running container already uses this image"}
    try:
        found = volume_major(docker, params["volume"], params["image"])
    except (VolumeError, OSError, subprocess.TimeoutExpired) as error:
        return {"failed": True, "msg": str(error)}
    if found is not None and found != str(params["major"]):
        return {"failed": True, "found": found, "msg": refusal(params["volume"], found, params["major"])}
    return {
        "changed": False,
        "found": found,
        "msg": f"volume {params['volume']}: {found or 'no cluster yet'}",
    }
