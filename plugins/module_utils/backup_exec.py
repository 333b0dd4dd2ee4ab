# Copyright: CleanMateX DevOps
# Apache-2.0 (see galaxy.yml)
"""Run a program inside a container with ``docker exec`` (or in a one-off container of an image with
``docker run --rm``) and stream its output to a host file (or a host file into its input), hashing on the
way.

A :class:`Runner` says where the program runs: ``Runner(container=...)`` execs into a running container
(the stack's PostgreSQL); ``Runner(image=...)`` runs a one-off container of that image on the host's
network (``docker run --rm -i --network host --log-driver none --pull never``), for a server the stack
does not run itself (an external, managed PostgreSQL): the client tools then still have the server's major
version (the stack's image), whatever the host has. Host files the program needs (a CA file, an SQL file)
are bind-mounted read-only at the same path (``Runner.files``). Functions taking ``container`` accept a
container name (a str) or a Runner.

Why the docker CLI and not the Docker API modules: ``community.docker.docker_container_exec`` returns
stdout as text, which cannot carry a binary dump of gigabytes. Here the docker CLI writes the program's
stdout straight into the host file, as ``docker exec ... > file`` would (a thread hashes and flushes it
as it grows), or reads stdin straight from it.

Secrets go by environment, never by argument: ``docker exec -e PGPASSWORD`` (a name without ``=value``)
copies the value from the docker CLI's own environment, which only this process sets. The value never
appears in a command line (``ps``, audit logs, Ansible's output).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field

from ansible_collections.cleanmatex.infra.plugins.module_utils.backup import CHUNK_SIZE

STDERR_TAIL = 4000


class ExecError(Exception):
    """The program in the container failed; the message names it, its exit code and its error output."""

    def __init__(self, message: str, rc: int | None = None, stderr: str = ""):
        super().__init__(message)
        self.rc = rc
        self.stderr = stderr


@dataclass
class ExecResult:
    rc: int
    stderr: bytes
    seconds: float
    size: int = 0
    sha256: str = ""
    stdout: bytes = b""


def _mount_option(path: str) -> str:
    """``--mount`` value binding host ``path`` read-only at the same path (CSV: a comma needs quotes)."""
    value = f"type=bind,source={path},target={path},readonly"
    if any(char in path for char in ',"\n'):
        quoted = path.replace('"', '""')
        value = f'type=bind,"source={quoted}","target={quoted}",readonly'
    return value


@dataclass(frozen=True)
class Runner:
    """Where a program runs: exec'ed in ``container``, or (``container`` empty) in a one-off container of
    ``image`` on the host network, with the host ``files`` mounted read-only at the same paths."""

    container: str = ""
    image: str = ""
    files: tuple[str, ...] = field(default=())

    def __post_init__(self):
        if not (self.container or self.image):
            raise ValueError("a runner needs a container to exec into or an image to run")

    @property
    def description(self) -> str:
        if self.container:
            return f"container {self.container}"
        return f"a one-off container of {self.image}"

    def argv(self, docker: str, argv: list[str], env_names, interactive: bool = False) -> list[str]:
        """The docker command line; ``env_names`` are names only (values come from the environment)."""
        if self.container:
            return exec_argv(docker, self.container, argv, env_names, interactive)
        command = [docker, "run", "--rm", "--network", "host", "--log-driver", "none", "--pull", "never"]
        if interactive:
            command.append("-i")
        for name in sorted(env_names):
            command += ["-e", name]
        for path in self.files:
            command += ["--mount", _mount_option(path)]
        # The program itself is the entrypoint: the image's entrypoint script never runs.
        return [*command, "--entrypoint", argv[0], self.image, *argv[1:]]


def as_runner(target) -> Runner:
    """A Runner from a Runner or a container name."""
    return target if isinstance(target, Runner) else Runner(container=target)


def exec_argv(
    docker: str, container: str, argv: list[str], env_names, interactive: bool = False
) -> list[str]:
    """``docker exec [-i] -e NAME... container argv...``: names only, values come from the environment."""
    command = [docker, "exec"]
    if interactive:
        command.append("-i")
    for name in sorted(env_names):
        command += ["-e", name]
    return [*command, container, *argv]


def _environment(env: dict[str, str] | None) -> dict[str, str]:
    merged = dict(os.environ)
    merged.update({name: str(value) for name, value in (env or {}).items()})
    return merged


def _tail(data: bytes) -> str:
    text = data.decode("utf-8", errors="replace").strip()
    return text[-STDERR_TAIL:]


def _check(program: str, runner: Runner, rc: int, stderr: bytes) -> None:
    if rc != 0:
        detail = _tail(stderr) or "no error output"
        raise ExecError(f"{program} in {runner.description} failed (exit {rc}): {detail}", rc, _tail(stderr))


class _Follower(threading.Thread):
    """Hashes a file while another process appends to it, and pushes its pages to disk as it grows.

    The writer (the docker CLI) writes straight into the file; this thread reads what is new from the
    page cache every ``interval`` seconds and calls ``fdatasync``, so that at the end only the last
    moments are left to hash and flush instead of the whole dump.
    """

    def __init__(self, path: str, fd: int, interval: float = 0.5, sync: bool = True):
        super().__init__(name="cmx-backup-follower", daemon=True)
        self.path, self.fd, self.interval, self.sync = path, fd, interval, sync
        self.digest = hashlib.sha256()
        self.size = 0
        self.done = threading.Event()
        self.error: BaseException | None = None

    def _catch_up(self, source) -> None:
        while True:
            chunk = source.read(CHUNK_SIZE)
            if not chunk:
                return
            self.digest.update(chunk)
            self.size += len(chunk)

    def run(self) -> None:
        try:
            with open(self.path, "rb") as source:
                while not self.done.wait(self.interval):
                    self._catch_up(source)
                    if self.sync:
                        os.fdatasync(self.fd)
                self._catch_up(source)
        except BaseException as exc:  # reported by finish()
            self.error = exc

    def finish(self) -> tuple[int, str]:
        self.done.set()
        self.join()
        if self.error is not None:
            raise self.error
        return self.size, self.digest.hexdigest()


def exec_to_file(
    container: str | Runner,
    argv: list[str],
    dest: str,
    env: dict[str, str] | None = None,
    docker: str = "docker",
    mode: int = 0o600,
    fsync: bool = True,
) -> ExecResult:
    """Run ``argv`` in ``container``; its stdout becomes ``dest`` (created with ``mode``), then fsync'ed.

    The docker CLI writes straight into the file, as ``docker exec ... > file`` does (no copy through
    this process); a follower thread hashes and flushes the file as it grows.
    """
    runner = as_runner(container)
    started = time.monotonic()
    fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as target, tempfile.TemporaryFile() as errors:
        follower = _Follower(dest, target.fileno(), sync=fsync)
        follower.start()
        try:
            rc = subprocess.call(
                runner.argv(docker, argv, (env or {}).keys()),
                stdin=subprocess.DEVNULL,
                stdout=target,
                stderr=errors,
                env=_environment(env),
            )
        finally:
            size, sha = follower.finish()
        if fsync and rc == 0:
            os.fsync(target.fileno())
        errors.seek(0)
        stderr = errors.read()
    _check(argv[0], runner, rc, stderr)
    return ExecResult(rc, stderr, time.monotonic() - started, size, sha)


def exec_from_file(
    container: str | Runner,
    argv: list[str],
    source: str,
    env: dict[str, str] | None = None,
    docker: str = "docker",
) -> ExecResult:
    """Run ``argv`` in ``container`` with ``source`` as its stdin (passed as a file descriptor, no copy)."""
    runner = as_runner(container)
    started = time.monotonic()
    with open(source, "rb") as handle, tempfile.TemporaryFile() as output:
        rc = subprocess.call(
            runner.argv(docker, argv, (env or {}).keys(), interactive=True),
            stdin=handle,
            stdout=output,
            stderr=subprocess.STDOUT,
            env=_environment(env),
        )
        output.seek(0)
        text = output.read()
    _check(argv[0], runner, rc, text)
    return ExecResult(rc, text, time.monotonic() - started)


def exec_capture(
    container: str | Runner,
    argv: list[str],
    env: dict[str, str] | None = None,
    stdin: bytes | None = None,
    docker: str = "docker",
    check: bool = True,
    timeout: float | None = None,
) -> ExecResult:
    """Run ``argv`` in ``container`` and return its (small) output."""
    runner = as_runner(container)
    started = time.monotonic()
    completed = subprocess.run(
        runner.argv(docker, argv, (env or {}).keys(), interactive=stdin is not None),
        input=stdin,
        stdin=None if stdin is not None else subprocess.DEVNULL,
        capture_output=True,
        env=_environment(env),
        timeout=timeout,
        check=False,
    )
    if check:
        _check(argv[0], runner, completed.returncode, completed.stderr or completed.stdout)
    return ExecResult(
        completed.returncode, completed.stderr, time.monotonic() - started, stdout=completed.stdout
    )


IMAGE_VARIABLE = "CMX_POSTGRES_IMAGE"


def env_file_value(path: str, name: str) -> str:
    """``name``'s value in a Compose .env as the stack renders it (quoting.env: bare, '...' or "...")."""
    try:
        with open(path, encoding="utf-8") as handle:
            lines = handle.read().splitlines()
    except OSError as exc:
        raise ExecError(f"cannot read {path}: {exc}") from exc
    for line in lines:
        key, sep, value = line.partition("=")
        if not sep or key.strip() != name:
            continue
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] == "'":
            return value[1:-1]
        if len(value) >= 2 and value[0] == value[-1] == '"':
            escapes = {"n": "\n", "r": "\r"}
            out, chars = [], iter(value[1:-1])
            for char in chars:
                if char == "\\":
                    nxt = next(chars, "")
                    out.append(escapes.get(nxt, nxt))
                else:
                    out.append(char)
            return "".join(out)
        return value
    return ""


def image_of(image: str = "", env_file: str | None = None, name: str = IMAGE_VARIABLE) -> str:
    """The image to run client tools from: ``image``, else ``name`` of the stack's rendered .env."""
    if image:
        return image
    if not env_file:
        raise ExecError(f"no image given and no .env to read {name} from")
    found = env_file_value(env_file, name)
    if not found:
        raise ExecError(f"{env_file} has no {name}: run the converge first (it renders the stack's .env)")
    return found
