"""`supabase start` where no registry answers: one clear message, quickly, and nothing else touched.

Runs the real pinned CLI (node_modules/.bin/supabase, `npm ci`) through cmx_supabase_start in a temporary
workdir (`supabase init`, a throwaway project_id, every port moved to 3xxxx-free ones), never against a stack
of this project. Unbounded, the CLI itself gave up after 76 s here (3 attempts x 3 registries per image, one
~2,000-character line each); the module's check finds the same in a few seconds.
"""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import time
import uuid
from pathlib import Path

import pytest
from ansible_collections.cleanmatex.infra.plugins.module_utils import supabase_status as sb
from ansible_collections.cleanmatex.infra.plugins.modules import cmx_supabase_start, cmx_supabase_status
from ansible_collections.cleanmatex.infra.tests.module_main import run_main

REPO = Path(__file__).resolve().parents[2]
CLI = REPO / "node_modules" / ".bin" / "supabase"
LABEL = "com.supabase.cli.project"


def _docker_ok() -> bool:
    return (
        shutil.which("docker") is not None
        and subprocess.run(["docker", "info"], capture_output=True).returncode == 0
    )


pytestmark = [
    pytest.mark.skipif(
        not CLI.exists(), reason="Supabase CLI not installed: run `npm ci` in the repository root"
    ),
    pytest.mark.skipif(not _docker_ok(), reason="no Docker engine"),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def workdir(tmp_path):
    """A CLI project of its own: supabase init, a throwaway project_id, ports nobody uses."""
    project = f"cmxtest{uuid.uuid4().hex[:8]}"
    done = subprocess.run(
        [str(CLI), "init", "--workdir", str(tmp_path)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    config = tmp_path / "supabase" / "config.toml"
    text = re.sub(r'(?m)^project_id = ".*"$', f'project_id = "{project}"', config.read_text())
    for old in ("54321", "54322", "54323", "54324", "54327", "54329", "54320"):
        text = re.sub(rf"(?m)^((?:shadow_)?port = ){old}$", rf"\g<1>{_free_port()}", text)
    config.write_text(text)
    (tmp_path / "supabase" / ".temp").mkdir(exist_ok=True)
    (tmp_path / "supabase" / ".temp" / "cli-latest").write_text("v2.117.0")
    yield tmp_path, project
    # Whatever the CLI created for the throwaway project, and only that.
    for kind, ls in (
        ("container", ["ps", "-aq"]),
        ("network", ["network", "ls", "-q"]),
        ("volume", ["volume", "ls", "-q"]),
    ):
        ids = subprocess.run(
            ["docker", *ls, "--filter", f"label={LABEL}={project}"], capture_output=True, text=True
        )
        for ident in ids.stdout.split():
            subprocess.run(["docker", kind, "rm", "-f", ident], capture_output=True)


def _snapshot() -> list[str]:
    """Every Supabase container, network and volume on the engine (any project's).

    CI converges the project's own stacks on this engine meanwhile, so their containers change state on their
    own; what this test owns is that nothing Supabase-side appears, and the module never runs a docker
    command that changes anything (docker version, docker image inspect, the CLI for its throwaway project).
    """
    found = []
    for ls in (["ps", "-a"], ["network", "ls"], ["volume", "ls"]):
        found += subprocess.run(
            [
                "docker",
                *ls,
                "--format",
                "{{.Names}}" if ls[0] == "ps" else "{{.Name}}",
                "--filter",
                f"label={LABEL}",
            ],
            capture_output=True,
            text=True,
        ).stdout.split()
    return sorted(found)


def _leftovers(project: str) -> str:
    found = []
    for ls in (["ps", "-a"], ["network", "ls"], ["volume", "ls"]):
        found += subprocess.run(
            ["docker", *ls, "-q", "--filter", f"label={LABEL}={project}"], capture_output=True, text=True
        ).stdout.split()
    return " ".join(found)


def _registries_unreachable() -> bool:
    return all(sb.probe_registries(sb.registries_to_try(), 3).values())


def test_no_registry_fails_quickly_with_one_message(workdir):
    path, project = workdir
    if not _registries_unreachable():
        pytest.skip("a registry answers here: supabase start would pull its images")
    before = _snapshot()
    began = time.monotonic()
    result = run_main(
        cmx_supabase_start,
        {
            "cli": str(CLI),
            "workdir": str(path),
            "exclude": ["logflare", "vector", "edge-runtime", "imgproxy"],
        },
    )
    seconds = time.monotonic() - began
    msg = result["msg"]
    assert result["failed"] is True
    assert seconds < 20, f"took {seconds:.1f} s"
    assert msg.startswith("Supabase did not start, checked before running supabase start: ")
    assert "public.ecr.aws/supabase/postgres:17.6.1.167" in msg
    assert "public.ecr.aws/supabase/gotrue:" in msg
    assert "logflare" not in msg  # excluded: not needed
    assert (
        "public.ecr.aws, ghcr.io, registry-1.docker.io: DNS lookup failed" in msg or "cannot" in msg.lower()
    )
    assert "Nothing of the CleanMateX stack was changed" in msg
    assert "\n" not in msg and len(msg) < 1500
    assert result["started"] is False
    assert _leftovers(project) == ""
    assert _snapshot() == before  # no Supabase container, network or volume appeared


def test_the_cli_itself_is_bounded_and_summarized(workdir):
    """With the check off the CLI runs and retries; the timeout kills it and the message still says why."""
    path, project = workdir
    if not _registries_unreachable():
        pytest.skip("a registry answers here: supabase start would pull its images")
    before = _snapshot()
    began = time.monotonic()
    result = run_main(
        cmx_supabase_start,
        {"cli": str(CLI), "workdir": str(path), "check_images": False, "timeout": 12},
    )
    seconds = time.monotonic() - began
    assert result["failed"] is True
    assert seconds < 40, f"took {seconds:.1f} s"
    assert "supabase start gave up" in result["msg"]
    assert "did not finish within 12 s (killed)" in result["msg"]
    # neither the npm wrapper nor the Go binary is left running
    assert subprocess.run(["pgrep", "-f", "--", f"workdir {path}"], capture_output=True).returncode == 1
    # the fixture removes what the killed CLI may have left for its own project; nothing else changed
    assert [c for c in _snapshot() if project not in c] == [c for c in before if project not in c]


def test_a_taken_port_is_named_before_starting(workdir):
    path, _ = workdir
    config = path / "supabase" / "config.toml"
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        text = re.sub(
            r"(?m)^(\[api\][^\[]*?^port = )\d+$", rf"\g<1>{port}", config.read_text(), count=1, flags=re.S
        )
        config.write_text(text)
        result = run_main(cmx_supabase_start, {"cli": str(CLI), "workdir": str(path), "check_images": False})
    assert result["failed"] is True
    assert f"port {port} (Supabase API (Kong)) on 0.0.0.0 is in use by pid" in result["msg"]
    assert "checked before running supabase start" in result["msg"]


def test_docker_too_old_is_named(workdir):
    path, _ = workdir
    result = run_main(
        cmx_supabase_start,
        {"cli": str(CLI), "workdir": str(path), "docker_min_version": "999.0", "check_images": False},
    )
    assert result["failed"] is True
    assert "the Docker engine is too old: " in result["msg"]
    assert "999.0 or newer" in result["msg"]


def test_status_of_a_project_that_does_not_run(workdir):
    path, project = workdir
    result = run_main(cmx_supabase_status, {"cli": str(CLI), "workdir": str(path)})
    assert result["running"] is False and result["changed"] is False
    assert f"supabase_db_{project}" in result["message"]
    result = run_main(cmx_supabase_status, {"cli": str(CLI), "workdir": str(path), "require_keys": True})
    assert result["failed"] is True
    assert result["msg"].startswith("Supabase is not running: ")


def test_real_services_output_parses(workdir):
    path, _ = workdir
    done = subprocess.run(
        [str(CLI), "services", "-o", "json", "--workdir", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    services = dict(sb.parse_services(done.stdout))
    assert services["supabase/postgres"] == "17.6.1.167"
    assert services["supabase/postgres-meta"] == "v0.99.0"
    assert set(services) <= set(sb.SERVICE_IMAGES)


def test_run_bounded_kills_the_whole_group(tmp_path):
    marker = tmp_path / "child.pid"
    script = f"sleep 300 & echo $! > {marker}; wait"
    rc, _, _, seconds = sb.run_bounded(["bash", "-c", script], timeout=1)
    assert rc is None and seconds < 15
    child = int(marker.read_text())
    time.sleep(0.2)
    assert not Path(f"/proc/{child}").exists() or "Z" in Path(f"/proc/{child}/stat").read_text().split()[2]
