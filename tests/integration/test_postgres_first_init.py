"""The PostgreSQL image's entrypoint never starts a data directory whose first initialisation did not
finish (issue 16): initdb writes PG_VERSION first, so a kill, OOM or reboot during initdb used to leave a
cluster that started without the application database or the init scripts' objects, possibly "healthy".

Runs the entrypoint of this checkout (roles/images/files/postgres/docker-entrypoint.sh) in the image the
images role built (label org.cleanmatex.service=postgres; CMX_TEST_POSTGRES_IMAGE overrides it): a
one-layer image with the current entrypoint is built on top, so no network is needed. Containers and
volumes are named <CMX_TEST_DOCKER_PREFIX><pid>-... (default prefix cmx-test-pginit-), removed afterwards.
Without Docker or the image the tests skip, except with CI=true, where they fail.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ENTRYPOINT = ROOT / "roles" / "images" / "files" / "postgres" / "docker-entrypoint.sh"
PGDATA = "/var/lib/postgresql/data"
SENTINEL = f"{PGDATA}/cmx-initdb-complete"
PREFIX = f"{os.environ.get('CMX_TEST_DOCKER_PREFIX', 'cmx-test-pginit-')}{os.getpid()}-"
APP_DB = "appdb"
ENV = ["-e", "POSTGRES_PASSWORD=cmx-test-init-pw", "-e", "POSTGRES_USER=cmx", "-e", f"POSTGRES_DB={APP_DB}"]
_names = itertools.count(1)


def unavailable(reason: str):
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: this test must run, not skip)")
    pytest.skip(reason)


def docker(*args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)} failed: {result.stderr or result.stdout}")
    return result


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    """The built postgres image with this checkout's entrypoint."""
    if shutil.which("docker") is None or docker("info", check=False).returncode != 0:
        unavailable("needs a running Docker engine")
    base = os.environ.get("CMX_TEST_POSTGRES_IMAGE") or next(
        iter(
            docker(
                "images", "--filter", "label=org.cleanmatex.service=postgres", "--format", "{{.ID}}"
            ).stdout.split()
        ),
        None,
    )
    if not base:
        unavailable(
            "no image labelled org.cleanmatex.service=postgres: build the stack's images first "
            "(dev.yml, or Molecule with the ci inventory), or set CMX_TEST_POSTGRES_IMAGE"
        )
    context = tmp_path_factory.mktemp("pg-entrypoint")
    shutil.copy2(ENTRYPOINT, context / "docker-entrypoint.sh")
    (context / "Dockerfile").write_text(
        f"FROM {base}\nCOPY docker-entrypoint.sh /usr/local/bin/docker-entrypoint.sh\n", encoding="utf-8"
    )
    digest = hashlib.sha256(ENTRYPOINT.read_bytes() + base.encode()).hexdigest()[:12]
    tag = f"cmx-test/postgres-entrypoint:{digest}"
    docker("build", "-q", "-t", tag, str(context), timeout=300)
    yield tag
    docker("rmi", tag, check=False)


@pytest.fixture
def volume():
    name = f"{PREFIX}vol-{next(_names)}"
    docker("volume", "create", name)
    containers = []
    yield name, containers
    for container in containers:
        docker("rm", "-f", container, check=False)
    docker("volume", "rm", "-f", name, check=False)


def container_name(containers: list) -> str:
    name = f"{PREFIX}{next(_names)}"
    containers.append(name)
    return name


def run_once(image: str, volume, *args: str) -> subprocess.CompletedProcess:
    """The entrypoint in the foreground on the volume (for starts that must refuse)."""
    name, containers = volume
    return docker(
        "run", "--name", container_name(containers), "-v", f"{name}:{PGDATA}", *ENV, *args, image, check=False
    )


def start(image: str, volume, *args: str) -> str:
    """A container on the volume, once PostgreSQL answers on TCP (only after any initialisation)."""
    name, containers = volume
    container = container_name(containers)
    docker("run", "-d", "--name", container, "-v", f"{name}:{PGDATA}", *ENV, *args, image)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if docker("exec", container, "pg_isready", "-q", "-h", "127.0.0.1", check=False).returncode == 0:
            return container
        if docker("inspect", "-f", "{{.State.Running}}", container).stdout.strip() != "true":
            break
        time.sleep(0.3)
    raise AssertionError(f"{container} did not become ready:\n{docker('logs', container).stderr}")


def stop(container: str):
    docker("stop", "-t", "60", container)


def on_volume(image: str, volume, script: str) -> subprocess.CompletedProcess:
    """A root shell on the volume (to set up or inspect the data directory)."""
    return docker("run", "--rm", "-v", f"{volume[0]}:{PGDATA}", "--entrypoint", "bash", image, "-c", script)


def has_sentinel(image: str, volume) -> bool:
    return on_volume(image, volume, f"test -e {SENTINEL} && echo yes || echo no").stdout.strip() == "yes"


def app_db_exists(container: str) -> bool:
    query = f"select 1 from pg_database where datname = '{APP_DB}'"
    out = docker(
        "exec", "-u", "postgres", container, "psql", "-tA", "-U", "cmx", "-d", "postgres", "-c", query
    )
    return out.stdout.strip() == "1"


def assert_refused(result: subprocess.CompletedProcess, volume_name: str, reason: str):
    assert result.returncode != 0, result.stderr
    assert "refusing to start" in result.stderr and reason in result.stderr, result.stderr
    assert f"remove the data volume {volume_name}" in result.stderr, result.stderr
    assert "bin/cmx down -e cmx_down_remove_volumes=true" in result.stderr
    assert "database system is ready to accept connections" not in result.stderr


def test_a_data_directory_left_by_an_interrupted_initdb_is_refused(image, volume):
    # What a kill right after initdb leaves: PG_VERSION and a whole cluster, but not the app database,
    # no init scripts run, no incomplete marker yet. The old entrypoint started it as if initialised.
    on_volume(
        image,
        volume,
        f"chown postgres:postgres {PGDATA} && setpriv --reuid=postgres --regid=postgres --init-groups "
        f"initdb -D {PGDATA} -U cmx >/dev/null && test -s {PGDATA}/PG_VERSION",
    )
    assert_refused(run_once(image, volume), volume[0], "never finished")
    # Refused every time, and nothing was written to it.
    assert_refused(run_once(image, volume), volume[0], "never finished")
    assert not has_sentinel(image, volume)


def test_a_container_killed_during_its_first_init_is_refused_on_the_next_start(image, volume, tmp_path):
    # A slow init script keeps the first initialisation unfinished; the kill lands as soon as initdb has
    # written PG_VERSION, during initdb or just after it.
    init_dir = tmp_path / "initdb"
    init_dir.mkdir()
    (init_dir / "001-slow.sh").write_text("sleep 120\n")
    name, containers = volume
    first = container_name(containers)
    mount = ["-v", f"{init_dir}:/docker-entrypoint-initdb.d:ro"]
    docker("run", "-d", "--name", first, "-v", f"{name}:{PGDATA}", *mount, *ENV, image)
    deadline = time.monotonic() + 120
    while docker("exec", first, "test", "-s", f"{PGDATA}/PG_VERSION", check=False).returncode != 0:
        assert time.monotonic() < deadline, docker("logs", first).stderr
    docker("kill", first)

    result = run_once(image, volume)
    assert result.returncode != 0, result.stderr
    assert "refusing to start" in result.stderr and f"remove the data volume {name}" in result.stderr
    assert not has_sentinel(image, volume)


def test_a_complete_first_init_writes_the_sentinel_and_starts_again(image, volume):
    container = start(image, volume)
    assert app_db_exists(container)
    stop(container)
    assert has_sentinel(image, volume)

    again = start(image, volume)
    assert app_db_exists(again)
    assert "initialising" not in docker("logs", again).stderr


def test_a_data_directory_initialised_before_the_sentinel_existed_is_adopted(image, volume):
    # A complete init by the previous entrypoint: its configuration and no incomplete marker, no sentinel.
    stop(start(image, volume))
    on_volume(image, volume, f"rm {SENTINEL}")

    container = start(image, volume)
    assert app_db_exists(container)
    assert "initialised completely by an earlier version" in docker("logs", container).stderr
    stop(container)
    assert has_sentinel(image, volume)


def test_a_failed_init_script_leaves_the_marker_and_is_refused(image, volume, tmp_path):
    init_dir = tmp_path / "initdb"
    init_dir.mkdir()
    (init_dir / "001-broken.sql").write_text("select no_such_function();\n")
    mount = ["-v", f"{init_dir}:/docker-entrypoint-initdb.d:ro"]
    first = run_once(image, volume, *mount)
    assert first.returncode != 0 and "no_such_function" in first.stderr
    assert_refused(run_once(image, volume, *mount), volume[0], "did not finish (marker")
    assert not has_sentinel(image, volume)
