"""Is the running stack exactly what the last full converge left, and is every service healthy?

A full converge records a fingerprint of everything it was given (the inventory's values and the
collection's code) in `<project_dir>/.converged`. When a re-run brings the same fingerprint and every
container of the project is running and healthy, there is nothing to change: the playbook can stop
early. Any difference, a stopped or unhealthy container, or a missing stamp means a full converge.
"""

from __future__ import annotations

import json
import os
import subprocess

from ansible_collections.cleanmatex.infra.plugins.module_utils.files import SyncResult, write_file

STAMP = ".converged"
# 0600: the fingerprint hashes the inventory's values, secrets included; only the converging user reads it.
STAMP_MODE = "0600"

# Shared by the cmx_stack_state module and its action plugin (which runs it on the controller when the
# host is the controller itself).
ARGUMENT_SPEC = {
    "project_dir": {"type": "path", "required": True},
    "fingerprint": {"type": "str", "required": True},
    "containers": {"type": "list", "elements": "str", "default": []},
    "record": {"type": "bool", "default": False},
}


def read_stamp(project_dir: str) -> str | None:
    try:
        with open(os.path.join(project_dir, STAMP), encoding="utf-8") as handle:
            return json.load(handle).get("fingerprint")
    except (OSError, ValueError, AttributeError):
        return None


def stamp_content(fingerprint: str) -> str:
    return json.dumps({"fingerprint": fingerprint}, indent=2) + "\n"


def container_states(names: list[str], timeout: float = 15) -> dict[str, tuple[str, str]]:
    """{name: (state, health)} for the containers that exist; missing ones are left out."""
    if not names:
        return {}
    fmt = "{{.Name}} {{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}}"
    done = subprocess.run(
        ["docker", "inspect", "--format", fmt, *names],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    states = {}
    for line in done.stdout.splitlines():
        parts = line.split()
        if len(parts) == 3:
            states[parts[0].lstrip("/")] = (parts[1], parts[2])
    return states


def why_not_up_to_date(
    project_dir: str,
    fingerprint: str,
    containers: list[str],
    states: dict[str, tuple[str, str]] | None = None,
) -> list[str]:
    """Reasons a full converge is needed; empty when the stack is as the last converge left it."""
    recorded = read_stamp(project_dir)
    if recorded is None:
        return [f"no record of a completed converge in {project_dir}"]
    reasons = []
    if recorded != fingerprint:
        reasons.append("the inventory or the collection changed since the last converge")
    states = container_states(containers) if states is None else states
    for name in containers:
        state, health = states.get(name, ("missing", "none"))
        if state != "running":
            reasons.append(f"{name} is {state}")
        elif health not in ("healthy", "none"):
            reasons.append(f"{name} is {health}")
    return reasons


def task_result(params: dict, check_mode: bool) -> dict:
    """The module's result: with record, write the stamp; otherwise say whether the stack is up to date."""
    if params["record"]:
        result = SyncResult()
        path = os.path.join(params["project_dir"], STAMP)
        write_file(path, stamp_content(params["fingerprint"]), STAMP_MODE, check_mode, result)
        return {"changed": result.any_changed, "up_to_date": True, "reasons": []}
    reasons = why_not_up_to_date(params["project_dir"], params["fingerprint"], params["containers"])
    return {"changed": False, "up_to_date": not reasons, "reasons": reasons}
