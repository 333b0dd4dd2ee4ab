# Copyright: CleanMateX DevOps
# Apache License 2.0 (see galaxy.yml)
"""The Redis side of the upgrade guard: a data volume whose files a Redis of the configured image cannot read
(an RDB format newer than it knows, e.g. Redis 8's format 12 under Redis 7.0) stops the converge before the
stack starts, instead of a container that crash-loops on `Can't handle RDB format version`."""

from __future__ import annotations

import re
import subprocess

from ansible_collections.cleanmatex.infra.plugins.module_utils.pg_volume import running_image

ARGUMENT_SPEC = {
    "volume": {"type": "str", "required": True},
    "image": {"type": "str", "required": True},
    "container": {"type": "str", "default": ""},
    "docker": {"type": "str", "default": "docker"},
}

# The newest RDB format each Redis release reads (its RDB_VERSION): 7.0 → 10, 7.2 → 11, 7.4 and 8.x → 12.
RDB_FORMATS = ((7, 0, 10), (7, 2, 11), (7, 4, 12), (8, 0, 12))
# Prints the server version and the header of every RDB file Redis would load (dump.rdb, the AOF's base).
SCRIPT = (
    "redis-server --version; "
    "for f in /d/dump.rdb /d/appendonlydir/*.base.rdb /d/appendonlydir/*.base.aof; do "
    '[ -f "$f" ] && printf "%s %s\\n" "$f" "$(head -c 9 "$f")"; done; true'
)


class VolumeError(Exception):
    pass


def readable_format(version: str) -> int | None:
    """The newest RDB format the Redis `version` (e.g. '7.0.15') reads; None when unknown (no check)."""
    match = re.match(r"(\d+)\.(\d+)", version)
    if not match:
        return None
    major, minor = int(match.group(1)), int(match.group(2))
    known = [fmt for (a, b, fmt) in RDB_FORMATS if (a, b) <= (major, minor)]
    return known[-1] if known else None


def parse(output: str) -> tuple[str, dict[str, int]]:
    """(server version, {file: RDB format}) from SCRIPT's output; files without an RDB header are left out."""
    version = ""
    formats: dict[str, int] = {}
    for line in output.splitlines():
        found = re.search(r"\bv=(\d+\.\d+\.\d+)", line)
        if found:
            version = found.group(1)
            continue
        parts = line.split(" ", 1)
        if len(parts) == 2 and re.fullmatch(r"REDIS\d{4}", parts[1]):
            formats[parts[0].removeprefix("/d/")] = int(parts[1][5:])
    return version, formats


def inspect(docker: str, volume: str, image: str) -> tuple[str, dict[str, int]]:
    if subprocess.run([docker, "volume", "inspect", volume], capture_output=True).returncode != 0:
        return "", {}
    done = subprocess.run(
        [docker, "run", "--rm", "--network", "none", "--log-driver", "none", "--pull", "never",
         "--entrypoint", "sh", "--mount", f"type=volume,source={volume},target=/d,readonly",
         image, "-c", SCRIPT],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    if done.returncode != 0:
        raise VolumeError(
            f"cannot read the Redis files of volume {volume} with {image}: {done.stderr.strip()[:300]}"
        )
    return parse(done.stdout)


def refusal(volume: str, version: str, newest: int, too_new: dict[str, int]) -> str:
    files = ", ".join(f"{name} (format {fmt})" for name, fmt in sorted(too_new.items()))
    return (
        f"The Redis data volume {volume} holds {files}, newer than Redis {version} of the stack's image "
        f"reads (format {newest} at most): written by a newer Redis (Redis 8, built here before the stack "
        "moved to Redis 7). Nothing was started and the volume is untouched. Either drop the Redis data (a "
        f"dev cache: bin/cmx down, then docker volume rm {volume}, then bin/cmx up), or keep running the "
        "newer Redis for now: set cmx_redis_image to its image (docker image ls cmx/redis) with "
        "cmx_image_source: auto."
    )


def task_result(params: dict, check_mode: bool) -> dict:
    """cmx_redis_volume_check: fail when the volume holds an RDB format the image's Redis cannot read."""
    docker = params["docker"]
    if running_image(docker, params["container"]) == params["image"]:
        return {"changed": False, "formats": {}, "msg": "the running container already uses this image"}
    try:
        version, formats = inspect(docker, params["volume"], params["image"])
    except (VolumeError, OSError, subprocess.TimeoutExpired) as error:
        return {"failed": True, "msg": str(error)}
    newest = readable_format(version)
    too_new = {name: fmt for name, fmt in formats.items() if newest is not None and fmt > newest}
    if too_new:
        return {
            "failed": True,
            "formats": formats,
            "msg": refusal(params["volume"], version, newest, too_new),
        }
    return {
        "changed": False,
        "formats": formats,
        "msg": f"volume {params['volume']}: {formats or 'no RDB files'}",
    }
