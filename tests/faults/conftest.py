"""Fault tests: the project's own images in one-off containers, on small volumes, with the stack's hardening.

Every container and volume these tests create is named ``cmxfault-<run id>-<role>`` and removed in teardown;
nothing named cmx-*, cmx-ci-*, cmx-staging-* or cmx-managed-* (the stacks) is ever touched. The images are the
newest ones the images role built (repository cmx/<service>, label org.cleanmatex.inputs-hash): run a converge
first (tests/run.sh runs these tests after Molecule, so they exist).

A size-limited volume is a tmpfs mounted by Docker's local driver (no privileges needed in the test). Docker
unmounts such a volume, and its files are gone, when the last container using it stops: a "holder" container
keeps it mounted while the service is stopped and started; the tests change files on the volume through it.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import uuid
from functools import partial
from pathlib import Path

import pytest
import yaml
from ansible_collections.cleanmatex.infra.tests import waiting

ROOT = Path(__file__).resolve().parents[2]
PREFIX = "cmxfault-"
LABEL = "org.cleanmatex.fault-test"
# Names of the project's stacks: these tests must never touch them.
FORBIDDEN = re.compile(r"^cmx(-ci|-staging|-managed)?[-_]")


def docker(*args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=check, timeout=timeout)


def _docker_answers() -> bool:
    if shutil.which("docker") is None:
        return False
    return subprocess.run(["docker", "info"], capture_output=True, timeout=30).returncode == 0


needs_docker = pytest.mark.skipif(not _docker_answers(), reason="needs a running Docker engine")


# The verify step's poll (tests/waiting.py), a little more often: these containers start in seconds.
wait_until = partial(waiting.wait_until, interval=0.2)


def project_image(repository: str) -> str:
    """The newest image of `repository` the images role built (it carries the inputs-hash label)."""
    listed = docker(
        "image", "ls", "--filter", f"reference={repository}", "--filter", "label=org.cleanmatex.inputs-hash",
        "--format", "{{.Repository}}:{{.Tag}}",
    ).stdout.split()  # fmt: skip
    if not listed:
        pytest.skip(
            f"no {repository} image built by the images role: converge first (ansible-playbook dev.yml)"
        )
    created = {ref: json.loads(docker("image", "inspect", ref).stdout)[0]["Created"] for ref in listed}
    return max(listed, key=lambda ref: created[ref])


def stack_limits(service: str) -> dict:
    """The stack's default memory/PIDs/CPU limits for `service` (roles/stack/defaults/main.yml)."""
    defaults = yaml.safe_load((ROOT / "roles" / "stack" / "defaults" / "main.yml").read_text())
    return defaults["stack_container_limits"][service]


def render_redis_conf(password: str) -> str:
    """roles/stack/templates/redis.conf.j2 as the stack renders it, for a Redis with `password`."""
    import jinja2
    from ansible.plugins.filter.core import comment
    from ansible_collections.cleanmatex.infra.plugins.filter.quoting import quote_for

    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    env.filters.update({"comment": comment, "cleanmatex.infra.quote_for": quote_for})
    template = env.from_string((ROOT / "roles" / "stack" / "templates" / "redis.conf.j2").read_text())
    return template.render(
        ansible_managed="fault test",
        cmx_bind_address="127.0.0.1",
        cmx_project_name="cmxfault",
        cmx_redis_password=password,
    )


class Lab:
    """Containers and volumes of one test, all named cmxfault-<id>-*, all removed by `cleanup`."""

    def __init__(self, tmp_path: Path):
        self.id = uuid.uuid4().hex[:8]
        self.tmp = tmp_path
        self.containers: list[str] = []
        self.volumes: list[str] = []

    def name(self, role: str) -> str:
        name = f"{PREFIX}{self.id}-{role}"
        assert not FORBIDDEN.match(name)
        return name

    def volume(self, role: str, size: str | None = None, uid: int = 999) -> str:
        """A named volume; with `size` a tmpfs of that size owned by `uid` (a disk that can fill up)."""
        name = self.name(role)
        options = []
        if size:
            options = ["--driver", "local", "--opt", "type=tmpfs", "--opt", "device=tmpfs"]
            options += ["--opt", f"o=size={size},uid={uid},gid={uid},mode=0700"]
        docker("volume", "create", "--label", LABEL, *options, name)
        self.volumes.append(name)
        return name

    def run(
        self,
        role: str,
        image: str,
        *command: str,
        user: str,
        service: str,
        tmpfs: tuple[str, ...] = ("/tmp",),
        mounts: tuple[str, ...] = (),
        env: dict | None = None,
        ports: tuple[int, ...] = (),
        entrypoint: str | None = None,
    ) -> str:
        """Start a container hardened like the stack's (docker-compose.yml.j2, macro `hardening`)."""
        name = self.name(role)
        limits = stack_limits(service)
        args = ["run", "-d", "--name", name, "--label", LABEL, "--user", user]
        args += ["--cap-drop", "ALL", "--security-opt", "no-new-privileges:true", "--read-only"]
        for folder in tmpfs:
            args += ["--tmpfs", folder]
        args += ["--memory", str(limits["memory"]), "--pids-limit", str(limits["pids"])]
        args += ["--cpu-shares", str(limits["cpu_shares"])]
        args += ["--log-driver", "json-file"]
        for mount in mounts:
            args += ["-v", mount]
        for key, value in (env or {}).items():
            args += ["-e", f"{key}={value}"]
        for port in ports:
            args += ["-p", f"127.0.0.1::{port}"]
        if entrypoint is not None:
            args += ["--entrypoint", entrypoint]
        self.containers.append(name)
        docker(*args, image, *command)
        return name

    def holder(self, image: str, volume: str, service: str, user: str, role: str = "holder") -> str:
        """A container that only keeps `volume` mounted (at /v) and lets the test change files on it."""
        return self.run(
            role, image, "sleep", "infinity", user=user, service=service, mounts=(f"{volume}:/v",),
            entrypoint="",
        )  # fmt: skip

    def cleanup(self) -> None:
        for name in reversed(self.containers):
            assert name.startswith(PREFIX)
            docker("rm", "-f", "-v", name, check=False)
        for name in self.volumes:
            assert name.startswith(PREFIX)
            docker("volume", "rm", "-f", name, check=False)


def host_port(container: str, port: int) -> int:
    return int(docker("port", container, f"{port}/tcp").stdout.split()[0].rsplit(":", 1)[1])


def logs(container: str, since: float | None = None) -> str:
    args = ["logs", *(["--since", f"{since:.3f}"] if since else []), container]
    done = docker(*args)
    return done.stdout + done.stderr


def running(container: str) -> bool:
    return json.loads(docker("inspect", container).stdout)[0]["State"]["Running"]


@pytest.fixture
def lab(tmp_path):
    if not _docker_answers():
        pytest.skip("needs a running Docker engine")
    made = Lab(tmp_path)
    try:
        yield made
    finally:
        made.cleanup()
