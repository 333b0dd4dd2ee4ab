# Copyright: CleanMateX DevOps
# Apache License 2.0 (see galaxy.yml)
"""`bin/cmx up`'s instant no-op: when nothing it could read has changed since its last successful run and
every container of the stack is running and healthy, it prints the recorded summary without starting
Ansible.

"Nothing it could read" is, as bytes: the inventories, the collection's code (roles, plugins, playbooks,
the supabase folder), dev.yml, ansible.cfg and galaxy.yml, and the environment variables a converge may
read (ANSIBLE_*, CMX_*, DOCKER_*, HOME, USER, XDG_CACHE_HOME). Any difference, a container that is not
healthy, a converge run since by other means (the stack's `.converged` stamp changed), or a stack whose
inventory turns the fast re-run off (a `cmx_fast_rerun: false` line in its files) means ansible-
playbook runs as usual. Only a plain `bin/cmx up` (no arguments, the dev inventory of ansible.cfg, the
default folder) takes this path."""

from __future__ import annotations

import hashlib
import json
import os
import re

from ansible_collections.cleanmatex.infra.plugins.filter.images import images_tree_hash
from ansible_collections.cleanmatex.infra.plugins.module_utils.files import SyncResult, write_file
from ansible_collections.cleanmatex.infra.plugins.module_utils.stack_state import (
    CODE_TREES,
    STAMP,
    container_states,
)

RECORD = ".launched"
TREES = ("inventories", *CODE_TREES)
FILES = ("dev.yml", "ansible.cfg", "galaxy.yml")
ENV_PREFIXES = ("ANSIBLE_", "CMX_", "DOCKER_")
ENV_NAMES = ("HOME", "USER", "XDG_CACHE_HOME")
INVENTORY = "inventories/dev"  # ansible.cfg's: the one a plain bin/cmx up converges
FAST_RERUN_OFF = re.compile(r"^\s*cmx_fast_rerun:\s*[\"']?(false|no|off)\b", re.IGNORECASE | re.MULTILINE)


def fingerprint(root: str, environ: dict) -> str:
    digest = hashlib.sha256()
    for tree in TREES:
        path = os.path.join(root, tree)
        digest.update(f"{tree}\0{images_tree_hash(path) if os.path.isdir(path) else '-'}\0".encode())
    for name in FILES:
        try:
            with open(os.path.join(root, name), "rb") as handle:
                digest.update(hashlib.sha256(handle.read()).hexdigest().encode())
        except OSError:
            digest.update(b"-")
        digest.update(b"\0")
    env = {k: v for k, v in environ.items() if k.startswith(ENV_PREFIXES) or k in ENV_NAMES}
    digest.update(json.dumps(env, sort_keys=True).encode())
    return digest.hexdigest()


def fast_rerun_off(root: str) -> bool:
    """Whether the dev inventory sets cmx_fast_rerun to false (bin/cmx up then always converges)."""
    for folder, _, files in os.walk(os.path.join(root, INVENTORY)):
        for name in files:
            try:
                with open(os.path.join(folder, name), encoding="utf-8", errors="replace") as handle:
                    if FAST_RERUN_OFF.search(handle.read()):
                        return True
            except OSError:
                continue
    return False


def _stamp(project_dir: str) -> tuple[str, dict]:
    """(sha256 of the converge's stamp, the stamp) or ('', {}) when there is none."""
    try:
        with open(os.path.join(project_dir, STAMP), "rb") as handle:
            raw = handle.read()
        return hashlib.sha256(raw).hexdigest(), json.loads(raw)
    except (OSError, ValueError):
        return "", {}


def project_containers(project_dir: str) -> list[str]:
    """The stack's containers as the rendered compose file names them (container_name)."""
    names = []
    try:
        with open(os.path.join(project_dir, "docker-compose.yml"), encoding="utf-8") as handle:
            for line in handle:
                stripped = line.strip()
                if stripped.startswith("container_name:"):
                    names.append(stripped.split(":", 1)[1].strip().strip("\"'"))
    except OSError:
        return []
    return sorted(names)


def why_not(root: str, project_dir: str, environ: dict, states=None) -> list[str]:
    """Reasons to run ansible-playbook; empty when the stack is as `bin/cmx up` last left it."""
    try:
        with open(os.path.join(project_dir, RECORD), encoding="utf-8") as handle:
            record = json.load(handle)
    except (OSError, ValueError):
        return [f"no record of a plain bin/cmx up in {project_dir}"]
    stamp_hash, _ = _stamp(project_dir)
    reasons = []
    if not stamp_hash or stamp_hash != record.get("converged"):
        reasons.append("a converge ran since by other means, or none completed")
    if fast_rerun_off(root):
        reasons.append("the inventory turns the fast re-run off (cmx_fast_rerun)")
    if record.get("fingerprint") != fingerprint(root, environ):
        reasons.append("the inventory, the collection or the environment changed")
    if reasons:
        return reasons
    containers = record.get("containers") or []
    states = container_states(containers) if states is None else states
    for name in containers:
        state, health = states.get(name, ("missing", "none"))
        if state != "running" or health not in ("healthy", "none"):
            reasons.append(f"{name} is {health if state == 'running' else state}")
    return reasons


def summary(project_dir: str) -> list[str]:
    return list(_stamp(project_dir)[1].get("summary") or [])


def record(root: str, project_dir: str, environ: dict, states=None) -> bool:
    """After a successful plain `bin/cmx up`: remember what it read. False when there is no converge stamp."""
    stamp_hash, _ = _stamp(project_dir)
    if not stamp_hash:
        return False
    names = project_containers(project_dir)
    states = container_states(names) if states is None else states
    content = json.dumps(
        {
            "fingerprint": fingerprint(root, environ),
            "converged": stamp_hash,
            # Those running now: a service of a profile that is off (e.g. no Redis Commander) is not expected.
            "containers": [name for name in names if states.get(name, ("missing", ""))[0] == "running"],
        },
        indent=2,
    )
    write_file(os.path.join(project_dir, RECORD), content + "\n", "0600", False, SyncResult())
    return True
