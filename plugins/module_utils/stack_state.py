"""Is the running stack exactly what the last full converge left, and is every service healthy?

A full converge records a fingerprint of everything it was given (the inventory's values and the
collection's code) in `<project_dir>/.converged`, with the summary it printed. When a re-run brings the
same fingerprint and every container of the project is running and healthy, there is nothing to change:
the playbook can stop early and print the recorded summary (same inputs, same summary). Any difference,
a stopped or unhealthy container, or a missing stamp means a full converge.
"""

from __future__ import annotations

import http.client
import json
import os
import subprocess
from urllib.parse import quote

from ansible_collections.cleanmatex.infra.plugins.module_utils import early_start
from ansible_collections.cleanmatex.infra.plugins.module_utils.docker_host import (
    DEFAULT_DOCKER_HOST,
    _UnixHTTPConnection,
)
from ansible_collections.cleanmatex.infra.plugins.module_utils.files import SyncResult, write_file

STAMP = ".converged"
# The collection's code a converge reads (its fingerprint hashes these folders; bin/cmx up's instant no-op,
# launch_state.py, reads them too, with the inventories).
CODE_TREES = ("roles", "plugins", "playbooks", "supabase")
# 0600: the fingerprint hashes the inventory's values, secrets included; only the converging user reads it.
STAMP_MODE = "0600"

# Shared by the cmx_stack_state module and its action plugin (which runs it on the controller when the
# host is the controller itself).
ARGUMENT_SPEC = {
    "project_dir": {"type": "path", "required": True},
    "fingerprint": {"type": "str", "default": ""},
    "containers": {"type": "list", "elements": "str", "default": []},
    "record": {"type": "bool", "default": False},
    "forget": {"type": "bool", "default": False},
    "summary": {"type": "list", "elements": "str", "default": []},
    "start": {"type": "dict", "default": {}},
    "early_start": {"type": "bool", "default": False},
    "timeout": {"type": "int", "default": 300},
}


def read_stamp(project_dir: str) -> dict:
    """The recorded {"fingerprint": ..., "summary": [...]}; {} when there is no readable record."""
    try:
        with open(os.path.join(project_dir, STAMP), encoding="utf-8") as handle:
            stamp = json.load(handle)
    except (OSError, ValueError):
        return {}
    return stamp if isinstance(stamp, dict) else {}


def stamp_content(
    fingerprint: str, summary: list[str] | None = None, start: dict | None = None, rendered: str = ""
) -> str:
    """The record: the fingerprint and summary; with a start recipe, also the digest of the rendered files
    it starts (early_start.py)."""
    stamp = {"fingerprint": fingerprint, "summary": summary or []}
    if start:
        stamp.update(start=start, rendered=rendered)
    return json.dumps(stamp, indent=2) + "\n"


def _current_context(environ) -> str:
    if environ.get("DOCKER_CONTEXT"):
        return environ["DOCKER_CONTEXT"]
    config_dir = environ.get("DOCKER_CONFIG") or os.path.join(environ.get("HOME", "/"), ".docker")
    try:
        with open(os.path.join(config_dir, "config.json"), encoding="utf-8") as handle:
            return json.load(handle).get("currentContext") or "default"
    except (OSError, ValueError, AttributeError):
        return "default"


def docker_socket_path(environ=None) -> str | None:
    """The engine's unix socket the CLI would use; None when the CLI must decide (tcp/ssh DOCKER_HOST, or a
    Docker context other than the default one, e.g. Docker Desktop's)."""
    environ = os.environ if environ is None else environ
    host = environ.get("DOCKER_HOST", "")
    if not host and _current_context(environ) != "default":
        return None
    host = host or DEFAULT_DOCKER_HOST
    return host[len("unix://") :] if host.startswith("unix://") else None


def _states_from_api(path: str, names: list[str], timeout: float) -> dict[str, tuple[str, str]]:
    """Ask the engine's API directly (one connection, a few milliseconds; the CLI takes ~60 ms to start)."""
    states = {}
    connection = _UnixHTTPConnection(path, timeout)
    try:
        for name in names:
            connection.request("GET", f"/containers/{quote(name)}/json")
            response = connection.getresponse()
            body = response.read()
            if response.status == 404:
                continue
            if response.status != 200:
                raise OSError(f"Docker API answered {response.status} for {name}")
            state = json.loads(body).get("State") or {}
            states[name] = (state.get("Status", "unknown"), (state.get("Health") or {}).get("Status", "none"))
    finally:
        connection.close()
    return states


def _states_from_cli(names: list[str], timeout: float) -> dict[str, tuple[str, str]]:
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


def container_states(names: list[str], timeout: float = 15) -> dict[str, tuple[str, str]]:
    """{name: (state, health)} for the containers that exist; missing ones are left out.

    Through the engine's unix socket when there is one; otherwise (tcp/ssh DOCKER_HOST, a Docker context,
    a socket that does not answer) through `docker inspect`, which knows every way to reach an engine."""
    if not names:
        return {}
    path = docker_socket_path()
    if path and os.path.exists(path):
        try:
            return _states_from_api(path, names, timeout)
        except (OSError, ValueError, http.client.HTTPException):
            pass
    return _states_from_cli(names, timeout)


def why_not_up_to_date(
    project_dir: str,
    fingerprint: str,
    containers: list[str],
    states: dict[str, tuple[str, str]] | None = None,
) -> list[str]:
    """Reasons a full converge is needed; empty when the stack is as the last converge left it."""
    recorded = read_stamp(project_dir).get("fingerprint")
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


def _record(params: dict, check_mode: bool) -> dict:
    result = SyncResult()
    project_dir = params["project_dir"]
    start = params.get("start") or {}
    rendered = early_start.rendered_digest(project_dir) if start else ""
    content = stamp_content(params["fingerprint"], params["summary"], start, rendered)
    write_file(os.path.join(project_dir, STAMP), content, STAMP_MODE, check_mode, result)
    return {
        "changed": result.any_changed,
        "up_to_date": True,
        "reasons": [],
        "summary": params["summary"],
        "fingerprint": params["fingerprint"],
    }


def _forget(project_dir: str, check_mode: bool) -> dict:
    """Remove the record: the next converge runs every step (restore and reset change the database)."""
    path = os.path.join(project_dir, STAMP)
    exists = os.path.lexists(path)
    if exists and not check_mode:
        os.unlink(path)
    return {"changed": exists, "up_to_date": False, "reasons": ["the record was removed"], "summary": []}


def task_result(params: dict, check_mode: bool) -> dict:
    """The module's result: with forget, remove the stamp; with record, write it; otherwise say whether the
    stack is up to date (and, when it is, the summary the last converge printed), and with early_start start
    an unchanged stack that is not running at once."""
    if params.get("forget"):
        return _forget(params["project_dir"], check_mode)
    if not params["fingerprint"]:
        return {"failed": True, "msg": "missing required arguments: fingerprint (to compare or record)"}
    if params["record"]:
        return _record(params, check_mode)
    project_dir = params["project_dir"]
    stamp = read_stamp(project_dir)
    reasons = why_not_up_to_date(project_dir, params["fingerprint"], params["containers"])
    result = {
        "changed": False,
        "up_to_date": not reasons,
        "reasons": reasons,
        "summary": stamp.get("summary", []) if not reasons else [],
        "fingerprint": params["fingerprint"],
        "early_started": False,
    }
    if reasons and params.get("early_start") and not check_mode:
        refusal = early_start.why_not(stamp, params["fingerprint"], project_dir)
        started = (
            {"msg": f"not started early: {refusal}"}
            if refusal
            else early_start.start(project_dir, stamp["start"], params.get("timeout", 300))
        )
        result.update(
            early_started=bool(started.get("started")),
            changed=bool(started.get("started")),
            early_start=started["msg"],
        )
        result["warnings"] = started.get("warnings", [])
        if started.get("failed"):
            result.update(failed=True, msg=started["msg"])
    return result
