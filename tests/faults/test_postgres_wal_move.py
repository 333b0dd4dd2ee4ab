"""A cluster from before the WAL had its own volume, started with the stack's new settings (the built image).

The entrypoint moves $PGDATA/pg_wal into POSTGRES_INITDB_WALDIR once, before the server starts, and links it
(docker-entrypoint.sh, move_wal_out). Checked here against the real image: every committed row is there, the
WAL is on the WAL volume, a second start changes nothing; a start killed at any step of the move (the state
it leaves is laid out on the volumes by hand, as the steps leave it: a kill cannot be timed into a copy that
takes milliseconds) is finished by the next start with every row; and a kept WAL volume whose data volume was
removed is refused before initdb.
"""

from __future__ import annotations

import uuid

import pytest
from conftest import docker, logs, project_image, running, wait_until

DATA = "/var/lib/postgresql/data"
WALDIR = "/var/lib/postgresql/wal/pg_wal"
ROWS = 20000


@pytest.fixture
def postgres_image():
    return project_image("cmx/postgres")


def psql(container: str, sql: str) -> str:
    done = docker(
        "exec", container, "psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-U", "cmx", "-d", "cmx",
        "-c", sql, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def ready(container: str) -> bool:
    done = docker("exec", container, "pg_isready", "-q", "-h", "127.0.0.1", "-U", "cmx", check=False)
    return done.returncode == 0 and psql(container, "SELECT 1") == "1"


def rows(container: str) -> str:
    return psql(container, "SELECT count(*) || ' ' || md5(string_agg(v, ',' ORDER BY id)) FROM kept")


class Cluster:
    """A data volume and a WAL volume, each kept mounted by a holder (/v), and the PostgreSQL containers."""

    def __init__(self, lab, image: str):
        self.lab, self.image = lab, image
        self.data = lab.volume("pg-data", size="256m")
        self.wal = lab.volume("pg-wal", size="256m")
        hold = {"service": "postgres", "user": "postgres"}
        self.data_holder = lab.holder(image, self.data, role="data-holder", **hold)
        self.wal_holder = lab.holder(image, self.wal, role="wal-holder", **hold)
        self.secret = lab.tmp / "postgres_password"
        self.secret.write_text(uuid.uuid4().hex)
        self.secret.chmod(0o644)
        self.starts = 0

    def start(self, with_wal_volume: bool) -> str:
        """A new container on the volumes: the old compose settings, or the new ones (WAL volume, WALDIR)."""
        self.starts += 1
        env = {
            "POSTGRES_USER": "cmx",
            "POSTGRES_DB": "cmx",
            "POSTGRES_PASSWORD_FILE": "/run/secrets/postgres_password",
            "POSTGRES_INITDB_ARGS": "--data-checksums --auth-host=scram-sha-256 --auth-local=trust",
        }
        mounts = [f"{self.data}:{DATA}", f"{self.secret}:/run/secrets/postgres_password:ro"]
        if with_wal_volume:
            env["POSTGRES_INITDB_WALDIR"] = WALDIR
            mounts.append(f"{self.wal}:/var/lib/postgresql/wal")
        return self.lab.run(
            f"postgres-{self.starts}", self.image, "postgres", user="postgres", service="postgres",
            tmpfs=("/tmp", "/var/run/postgresql"), mounts=tuple(mounts), env=env,
        )  # fmt: skip

    def sh(self, holder: str, script: str) -> str:
        return docker("exec", holder, "sh", "-c", script).stdout.strip()

    def layout(self) -> dict:
        """Where the WAL is: the data directory's pg_wal (link or folder), leftovers, the segment in use."""
        return {
            "link": self.sh(self.data_holder, "readlink /v/pg_wal || echo not-a-link"),
            "data_entries": self.sh(self.data_holder, "ls -A /v | grep -c '^pg_wal' || true"),
            "wal_entries": self.sh(self.wal_holder, "ls -A /v"),
        }


def stop(name: str) -> None:
    docker("stop", name)
    assert not running(name)


def test_an_old_cluster_gets_its_wal_moved_once_with_every_row(lab, postgres_image):
    cluster = Cluster(lab, postgres_image)
    old = cluster.start(with_wal_volume=False)
    wait_until(lambda: ready(old), 60, "PostgreSQL (old settings) ready")
    psql(old, "CREATE TABLE kept (id int PRIMARY KEY, v text)")
    psql(old, f"INSERT INTO kept SELECT g, md5(g::text) FROM generate_series(1, {ROWS}) g")
    psql(old, "SELECT pg_switch_wal()")
    psql(old, "INSERT INTO kept VALUES (0, 'in the last segment')")
    expected = rows(old)
    segments = cluster.sh(cluster.data_holder, "ls /v/pg_wal | grep -c '^[0-9A-F]\\{24\\}$'")
    assert cluster.layout()["link"] == "not-a-link"
    stop(old)

    new = cluster.start(with_wal_volume=True)
    wait_until(lambda: ready(new), 60, "PostgreSQL (new settings) ready")
    text = logs(new)
    assert f"moving the WAL of {DATA} from {DATA}/pg_wal to {WALDIR}" in text, text
    assert rows(new) == expected
    layout = cluster.layout()
    assert layout == {"link": WALDIR, "data_entries": "1", "wal_entries": "pg_wal"}, layout
    current = psql(new, "SELECT pg_walfile_name(pg_current_wal_lsn())")
    assert cluster.sh(cluster.wal_holder, f"test -f /v/pg_wal/{current} && echo there") == "there"
    moved = cluster.sh(cluster.wal_holder, "ls /v/pg_wal | grep -c '^[0-9A-F]\\{24\\}$'")
    assert int(moved) >= int(segments) > 0
    print(f"{segments} segment(s) moved; in use now: {current}")

    # Writes go on; the next start of the same settings finds the link and moves nothing.
    psql(new, f"INSERT INTO kept SELECT g, 'after the move' FROM generate_series({ROWS + 1}, {ROWS + 100}) g")
    expected = rows(new)
    stop(new)
    again = cluster.start(with_wal_volume=True)
    wait_until(lambda: ready(again), 60, "PostgreSQL ready again")
    assert "moving the WAL" not in logs(again)
    assert rows(again) == expected


# A start killed at each step of move_wal_out leaves one of these states; each is laid out by this shell from
# the old layout ($PGDATA = /d with pg_wal a folder, the WAL volume's root = /w, empty).
INTERRUPTED = {
    "killed while copying": "mkdir /w/pg_wal.cmx-partial && cp -a /d/pg_wal/. /w/pg_wal.cmx-partial/"
    ' && rm -f "$(ls -d /w/pg_wal.cmx-partial/0* | tail -n 1)"',
    "killed after the copy was renamed, before the link": "cp -a /d/pg_wal /w/pg_wal",
    "killed between moving pg_wal aside and linking": "cp -a /d/pg_wal /w/pg_wal"
    " && mv /d/pg_wal /d/pg_wal.cmx-moved",
    "killed before deleting the old folder": "cp -a /d/pg_wal /w/pg_wal && mv /d/pg_wal /d/pg_wal.cmx-moved"
    f" && ln -s {WALDIR} /d/pg_wal",
}


def test_a_move_killed_at_any_step_is_finished_by_the_next_start(lab, postgres_image):
    cluster = Cluster(lab, postgres_image)
    old = cluster.start(with_wal_volume=False)
    wait_until(lambda: ready(old), 60, "PostgreSQL (old settings) ready")
    psql(old, "CREATE TABLE kept (id int PRIMARY KEY, v text)")
    psql(old, f"INSERT INTO kept SELECT g, md5(g::text) FROM generate_series(1, {ROWS}) g")
    stop(old)
    # One container sees both volumes as the entrypoint does (/d = $PGDATA, /w = the WAL volume's root).
    both = lab.run(
        "both", postgres_image, "sleep", "infinity", user="postgres", service="postgres", entrypoint="",
        mounts=(f"{cluster.data}:/d", f"{cluster.wal}:/w"),
    )  # fmt: skip
    for n, (state, script) in enumerate(INTERRUPTED.items()):
        docker("exec", both, "sh", "-c", script)
        name = cluster.start(with_wal_volume=True)
        wait_until(lambda name=name: ready(name), 60, f"PostgreSQL ready after a start {state}")
        assert rows(name).startswith(f"{ROWS + n} "), state
        layout = cluster.layout()
        assert layout == {"link": WALDIR, "data_entries": "1", "wal_entries": "pg_wal"}, (state, layout)
        psql(name, f"INSERT INTO kept VALUES ({ROWS + n + 1}, 'after: {state}')")
        expected = rows(name)
        stop(name)
        # Undo the move for the next state: the WAL back into $PGDATA, the WAL volume empty again.
        docker(
            "exec", both, "sh", "-c", "rm /d/pg_wal && cp -a /w/pg_wal /d/pg_wal && rm -rf /w/pg_wal",
        )  # fmt: skip
        print(f"{state}: finished, {expected.split()[0]} rows")


def test_a_kept_wal_volume_without_its_data_volume_is_refused(lab, postgres_image):
    cluster = Cluster(lab, postgres_image)
    first = cluster.start(with_wal_volume=True)
    wait_until(lambda: ready(first), 60, "PostgreSQL ready")
    stop(first)
    # The data volume "removed" (emptied), the WAL volume kept.
    docker("exec", cluster.data_holder, "sh", "-c", "rm -rf /v/* /v/.[!.]* 2>/dev/null; ls -A /v | wc -l")
    name = cluster.start(with_wal_volume=True)
    wait_until(lambda: not running(name), 60, "the entrypoint refusing")
    text = logs(name)
    refusal = f"refusing to initialise {DATA}: its WAL folder {WALDIR} (POSTGRES_INITDB_WALDIR) is not empty"
    assert refusal in text, text
    assert cluster.sh(cluster.data_holder, "ls -A /v | wc -l") == "0", "something was written to PGDATA"


def test_a_wal_volume_the_postgres_user_cannot_write_is_refused_before_anything_changes(lab, postgres_image):
    # A volume whose root belongs to root and that is not empty (a mounted disk's lost+found), so Docker does
    # not give it the image's folder owner (postgres) on first use, as it does for an empty one.
    cluster = Cluster(lab, postgres_image)
    cluster.wal = lab.volume("pg-wal-root")
    docker(
        "run", "--rm", "--network", "none", "--user", "0", "--entrypoint", "sh",
        "--mount", f"type=volume,source={cluster.wal},target=/w", postgres_image,
        "-c", "mkdir /w/lost+found && chown 0:0 /w && chmod 0755 /w",
    )  # fmt: skip
    name = cluster.start(with_wal_volume=True)
    wait_until(lambda: not running(name), 60, "the entrypoint refusing")
    text = logs(name)
    assert (
        f"cannot write the WAL folder {WALDIR} (POSTGRES_INITDB_WALDIR): /var/lib/postgresql/wal" in text
    ), text
    assert "belongs to root:root and is not writable by postgres" in text, text
    assert cluster.sh(cluster.data_holder, "ls -A /v | wc -l") == "0", "something was written to PGDATA"
