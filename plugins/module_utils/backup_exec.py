# Copyright: CleanMateX DevOps
# Apache-2.0 (see galaxy.yml)
"""Run a program inside a container with ``docker exec`` and stream its output to a host file (or a host
file into its input), hashing on the way.

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
from dataclasses import dataclass

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


def _check(program: str, container: str, rc: int, stderr: bytes) -> None:
    if rc != 0:
        detail = _tail(stderr) or "no error output"
        raise ExecError(f"{program} in container {container} failed (exit {rc}): {detail}", rc, _tail(stderr))


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
    container: str,
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
    started = time.monotonic()
    fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as target, tempfile.TemporaryFile() as errors:
        follower = _Follower(dest, target.fileno(), sync=fsync)
        follower.start()
        try:
            rc = subprocess.call(
                exec_argv(docker, container, argv, (env or {}).keys()),
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
    _check(argv[0], container, rc, stderr)
    return ExecResult(rc, stderr, time.monotonic() - started, size, sha)


def exec_from_file(
    container: str,
    argv: list[str],
    source: str,
    env: dict[str, str] | None = None,
    docker: str = "docker",
) -> ExecResult:
    """Run ``argv`` in ``container`` with ``source`` as its stdin (passed as a file descriptor, no copy)."""
    started = time.monotonic()
    with open(source, "rb") as handle, tempfile.TemporaryFile() as output:
        rc = subprocess.call(
            exec_argv(docker, container, argv, (env or {}).keys(), interactive=True),
            stdin=handle,
            stdout=output,
            stderr=subprocess.STDOUT,
            env=_environment(env),
        )
        output.seek(0)
        text = output.read()
    _check(argv[0], container, rc, text)
    return ExecResult(rc, text, time.monotonic() - started)


def exec_capture(
    container: str,
    argv: list[str],
    env: dict[str, str] | None = None,
    stdin: bytes | None = None,
    docker: str = "docker",
    check: bool = True,
    timeout: float | None = None,
) -> ExecResult:
    """Run ``argv`` in ``container`` and return its (small) output."""
    started = time.monotonic()
    completed = subprocess.run(
        exec_argv(docker, container, argv, (env or {}).keys(), interactive=stdin is not None),
        input=stdin,
        stdin=None if stdin is not None else subprocess.DEVNULL,
        capture_output=True,
        env=_environment(env),
        timeout=timeout,
        check=False,
    )
    if check:
        _check(argv[0], container, completed.returncode, completed.stderr or completed.stdout)
    return ExecResult(
        completed.returncode, completed.stderr, time.monotonic() - started, stdout=completed.stdout
    )
