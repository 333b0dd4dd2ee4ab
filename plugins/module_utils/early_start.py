# Copyright: CleanMateX DevOps
# Apache License 2.0 (see galaxy.yml)
"""Early start: a stack whose inputs and rendered files are exactly those of the last full converge starts
at once, before the converge's checks (after `bin/cmx down`, with or without its volumes).

The last full converge recorded, beside its fingerprint (stack_state.py), a digest of the files it rendered
and how it started the stack (the recipe: compose profiles and images, host ports, the volume guards'
arguments). When the fingerprint and the digest are unchanged, every check of that converge would give the
same answer, so the same files start the same way: the images must exist, the host ports be free (or the
project's own), the volume guards pass (a volume of another major is refused here exactly as in the stack
role), then `docker compose up --wait`. The converge then runs every step as usual (its own `up` finds
nothing to change; roles, migrations, health); anything the early start could not do, those steps do or
report. Starting first and checking after costs the same wall time on a 2-core machine (the checks and the
services' start-up compete for the same cores) and gets the services healthy seconds sooner.
"""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess
from concurrent.futures import ThreadPoolExecutor

from ansible_collections.cleanmatex.infra.plugins.module_utils import pg_volume, ports, redis_volume

# Not rendered by the stack role: the converge records, the apps' env files, the image build contexts, the
# backups.
NOT_RENDERED = frozenset({".converged", ".launched", "app", "build", "backups"})


def rendered_digest(project_dir: str) -> str:
    """sha256 over the relative path, mode and content of every file the stack starts from."""
    digest = hashlib.sha256()
    for root, dirs, files in os.walk(project_dir):
        top = os.path.samefile(root, project_dir)
        dirs[:] = sorted(d for d in dirs if not (top and d in NOT_RENDERED))
        for name in sorted(f for f in files if not (top and f in NOT_RENDERED)):
            path = os.path.join(root, name)
            info = os.lstat(path)
            digest.update(f"{os.path.relpath(path, project_dir)}\0{info.st_mode:o}\0".encode())
            if stat.S_ISLNK(info.st_mode):
                digest.update(os.readlink(path).encode())
            elif stat.S_ISREG(info.st_mode):
                with open(path, "rb") as handle:
                    digest.update(hashlib.sha256(handle.read()).digest())
    return digest.hexdigest()


def why_not(stamp: dict, fingerprint: str, project_dir: str) -> str:
    """Why the recorded recipe may not start the stack now; empty when it may."""
    if not stamp.get("start"):
        return "the last converge recorded no start recipe"
    if stamp.get("fingerprint") != fingerprint:
        return "the inventory or the collection changed"
    if stamp.get("rendered") != rendered_digest(project_dir):
        return f"the files in {project_dir} differ from those the last converge rendered"
    return ""


def _docker_ok(docker: str, *args: str) -> bool:
    done = subprocess.run([docker, *args], capture_output=True, timeout=60, check=False)
    return done.returncode == 0


def _guards(recipe: dict, docker: str) -> list[str]:
    """The volume guards of the stack role, side by side; the refusals (empty: every volume may start)."""
    checks = []
    if recipe.get("postgres"):
        postgres = recipe["postgres"]
        checks.append((pg_volume.task_result, {**postgres, "major": int(postgres["major"])}))
    if recipe.get("redis"):
        checks.append((redis_volume.task_result, recipe["redis"]))
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(lambda check: check[0]({**check[1], "docker": docker}, False), checks))
    return [result["msg"] for result in results if result.get("failed")]


def start(project_dir: str, recipe: dict, timeout: int, docker: str = "docker") -> dict:
    """Start the recorded stack and wait until it is healthy: {"started": bool, "msg", "warnings"?}; "failed"
    with the guard's refusal when a volume may not be opened (nothing started)."""
    images = recipe.get("images") or []
    if images and not _docker_ok(docker, "image", "inspect", "--format", "{{.Id}}", *images):
        return {"started": False, "msg": "not started early: an image of the last converge is gone"}
    wal = recipe.get("wal_volume")
    if wal and not _docker_ok(docker, "volume", "inspect", wal):
        return {"started": False, "msg": f"not started early: {wal} is prepared by the converge first"}
    if recipe.get("ports"):
        specs = [
            {key: port[key] for key in ("service", "port", "bind_address", "variable")}
            for port in recipe["ports"]
        ]
        statuses, _ = ports.check_ports(specs, project=recipe.get("project"))
        if any(status.status in ("conflict", "error") for status in statuses):
            return {"started": False, "msg": "not started early: a host port is taken (see the preflight)"}
    refusals = _guards(recipe, docker)
    if refusals:
        return {"started": False, "failed": True, "msg": " ".join(refusals)}
    profiles = [arg for profile in recipe.get("profiles") or [] for arg in ("--profile", profile)]
    command = [docker, "compose", "--project-directory", project_dir, *profiles, "up", "--detach", "--wait"]
    command += ["--wait-timeout", str(timeout), "--remove-orphans", "--pull", "never"]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout + 60, check=False)
    except subprocess.TimeoutExpired:
        done = subprocess.CompletedProcess(command, 124, "", f"no answer within {timeout + 60} s")
    if done.returncode != 0:
        output = (done.stderr or done.stdout).strip()[-600:]
        return {
            "started": False,
            "msg": "the early start failed; the converge starts the stack itself",
            "warnings": [f"the early start (docker compose up) failed, the converge goes on: {output}"],
        }
    return {"started": True, "msg": "started the stack of the last converge before its checks; all healthy"}
