"""Type generation with no registry (issue 11, item 3): module_utils/supabase_types.py, the postgres-meta
build context of the images role, and the supabase role's `types` verb for real.

The real test runs ansible-playbook with the supabase role's tasks/types.yml against the throwaway
PostgreSQL (tests/pg_cluster.py) with the project's migrations applied: the images role builds the
postgres-meta image from npm (when missing) under the name the pinned CLI looks for, the real
`supabase gen types typescript --db-url` runs it, and the file it writes must name the CleanMateX tables
and compile with the pinned TypeScript compiler (`tsc --noEmit --strict`). Needs Docker, `npm ci` in the
repository root, the Debian base image or mmdebstrap, and npm on this machine. No container of the stack
(cmx-*) is touched: the CLI's one-off container has a random name and is removed by the CLI.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from ansible_collections.cleanmatex.infra.plugins.module_utils import migrations, supabase_types

REPO = Path(__file__).resolve().parents[2]
SUPABASE_CLI = REPO / "node_modules" / ".bin" / "supabase"
TSC = REPO / "node_modules" / ".bin" / "tsc"
ANSIBLE_PLAYBOOK = REPO / ".venv" / "bin" / "ansible-playbook"
CONTEXT = REPO / "roles" / "images" / "files" / "postgres_meta"
IMAGES_ARTIFACTS = REPO / "roles" / "images" / "files" / "images_artifacts.py"

# `supabase services` of the pinned CLI 2.117.0, captured by running it in the repository root (the
# hand-written supabase/config.toml, major_version = 15), byte for byte (blank lines and trailing blanks).
SERVICES_2_117_0 = (
    "\n"
    "  \n"
    "   SERVICE IMAGE          | LOCAL                  | LINKED \n"
    "  ------------------------|------------------------|--------\n"
    "   supabase/postgres      | 15.8.1.085             | -      \n"
    "   supabase/gotrue        | v2.196.0               | -      \n"
    "   postgrest/postgrest    | v16.2                  | -      \n"
    "   supabase/realtime      | v2.130.0               | -      \n"
    "   supabase/storage-api   | v1.72.1                | -      \n"
    "   supabase/edge-runtime  | v1.74.3                | -      \n"
    "   supabase/studio        | 2026.08.24-sha-8ec45b2 | -      \n"
    "   supabase/postgres-meta | v0.99.0                | -      \n"
    "   supabase/logflare      | 1.50.6                 | -      \n"
    "   supabase/supavisor     | 2.9.12                 | -      \n"
    "\n"
)

# Tables of supabase/migrations (public schema).
CLEANMATEX_TABLES = (
    "tenants",
    "branches",
    "users",
    "customers",
    "services",
    "price_lists",
    "price_list_items",
    "orders",
    "order_items",
    "order_status_events",
)


def cli_services(workdir: Path) -> str:
    result = subprocess.run(
        [str(SUPABASE_CLI), "services", "--workdir", str(workdir)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return result.stdout


needs_cli = pytest.mark.skipif(
    not SUPABASE_CLI.exists(), reason="Supabase CLI not installed: run `npm ci` in the repository root"
)


# --- parser and helpers ---------------------------------------------------------------------------------


def test_services_table_is_parsed():
    images = supabase_types.services_images(SERVICES_2_117_0)
    assert images["supabase/postgres-meta"] == "v0.99.0"
    assert images["supabase/postgres"] == "15.8.1.085"
    assert images["postgrest/postgrest"] == "v16.2"
    assert len(images) == 10
    assert "SERVICE IMAGE" not in images
    assert supabase_types.postgres_meta_tag(SERVICES_2_117_0) == "v0.99.0"
    assert supabase_types.npm_version("v0.99.0") == "0.99.0"


def test_services_with_colours_and_without_the_row():
    coloured = SERVICES_2_117_0.replace("supabase/postgres-meta", "\x1b[1msupabase/postgres-meta\x1b[0m")
    assert supabase_types.postgres_meta_tag(coloured) == "v0.99.0"
    without = SERVICES_2_117_0.replace("supabase/postgres-meta", "supabase/other-thing")
    with pytest.raises(supabase_types.SupabaseTypesError, match=r"did not list supabase/postgres-meta"):
        supabase_types.postgres_meta_tag(without)
    with pytest.raises(supabase_types.SupabaseTypesError, match="no image rows"):
        supabase_types.postgres_meta_tag("Cannot connect to the Docker daemon")


@needs_cli
def test_parser_reads_the_pinned_cli_itself(tmp_path):
    """The live output of the pinned CLI parses to the same version (no config.toml needed for that row)."""
    live = cli_services(REPO)
    assert supabase_types.postgres_meta_tag(live) == supabase_types.postgres_meta_tag(SERVICES_2_117_0)
    assert supabase_types.postgres_meta_tag(cli_services(tmp_path)) == "v0.99.0"


@needs_cli
def test_committed_lockfile_pins_the_version_the_cli_runs():
    """The image's lockfile is generated from the CLI's version: a CLI bump without a new lock fails here."""
    lock = (CONTEXT / "package-lock.json").read_text(encoding="utf-8")
    wanted = supabase_types.npm_version(supabase_types.postgres_meta_tag(cli_services(REPO)))
    assert supabase_types.lock_version(lock) == wanted
    package = json.loads((CONTEXT / "package.json").read_text(encoding="utf-8"))
    assert package["dependencies"] == {"@supabase/postgres-meta": wanted}
    assert all("resolved" not in entry for entry in json.loads(lock)["packages"].values())


def test_cli_image_names():
    assert (
        supabase_types.cli_image_ref("v0.99.0") == "public.ecr.aws/supabase/postgres-meta:v0.99.0"
    )  # the CLI's default registry
    assert supabase_types.cli_image_ref("v0.99.0", "docker.io") == "supabase/postgres-meta:v0.99.0"
    assert supabase_types.cli_image_ref("v0.99.0", "GHCR.io") == "ghcr.io/supabase/postgres-meta:v0.99.0"


def test_db_url():
    url = supabase_types.db_url("127.0.0.1", 5432, "cmx_migrator", "p@ss/w:rd", "cmx_db")
    assert url == "postgresql://cmx_migrator:p%40ss%2Fw%3Ard@127.0.0.1:5432/cmx_db?sslmode=disable"
    # No password: user only.
    assert (
        supabase_types.db_url("127.0.0.1", "5433", "u", "", "d")
        == "postgresql://u@127.0.0.1:5433/d?sslmode=disable"
    )
    tls = supabase_types.db_url("::1", 5432, "u", "", "d", "verify-full", "/srv/cmx/secrets/tls/ca.crt")
    assert (
        tls
        == "postgresql://u@[::1]:5432/d?sslmode=verify-full&sslrootcert=%2Fsrv%2Fcmx%2Fsecrets%2Ftls%2Fca.crt"
    )
    with pytest.raises(supabase_types.SupabaseTypesError, match="unknown sslmode"):
        supabase_types.db_url("h", 1, "u", "", "d", "sometimes")
    with pytest.raises(supabase_types.SupabaseTypesError, match="no host"):
        supabase_types.db_url("", 1, "u", "", "d")


def test_postgres_meta_artifact_refuses_a_lock_of_another_version(tmp_path):
    import importlib.util

    spec = importlib.util.spec_from_file_location("images_artifacts", IMAGES_ARTIFACTS)
    artifacts = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(artifacts)
    with pytest.raises(
        artifacts.ArtifactError, match=r"runs @supabase/postgres-meta 9\.9\.9, .* pins 0\.99\.0"
    ):
        artifacts.postgres_meta(str(tmp_path), str(CONTEXT), "9.9.9", npm="/nonexistent/npm")
    assert not list(tmp_path.iterdir())


# --- the types verb for real ----------------------------------------------------------------------------


def docker_ok() -> bool:
    if shutil.which("docker") is None:
        return False
    return subprocess.run(["docker", "info"], capture_output=True, check=False, timeout=30).returncode == 0


PLAY = """\
- name: Supabase types
  hosts: all
  gather_facts: false
  tasks:
    - name: Generate the types
      ansible.builtin.include_role:
        name: cleanmatex.infra.supabase
        tasks_from: types
"""


def run_types(tmp_path: Path, db, out: Path) -> tuple[subprocess.CompletedProcess, float]:
    play = tmp_path / "play.yml"
    play.write_text(PLAY, encoding="utf-8")
    workdir = tmp_path / "project"
    workdir.mkdir(exist_ok=True)
    extra = {
        "ansible_connection": "local",
        "ansible_python_interpreter": sys.executable,
        "cmx_project_dir": str(tmp_path / "project"),
        "supabase_workdir": str(workdir),
        "cmx_postgres_port": db.port,
        # The superuser of the throwaway cluster stands in for the migration role.
        "cmx_postgres_migration_user": db.user,
        "cmx_postgres_migration_password": db.password,
        "cmx_postgres_db": db.name,
        "cmx_supabase_types_path": str(out),
    }
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0")
    env["PATH"] = f"{ANSIBLE_PLAYBOOK.parent}:{env.get('PATH', '/usr/bin:/bin')}"
    started = time.monotonic()
    result = subprocess.run(
        [str(ANSIBLE_PLAYBOOK), "-i", "localhost,", str(play), "-e", json.dumps(extra)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=1500,
    )
    (tmp_path / f"ansible-{time.time_ns()}.log").write_text(result.stdout + result.stderr, encoding="utf-8")
    return result, time.monotonic() - started


def recap(result) -> dict:
    match = re.search(r"ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", result.stdout)
    assert match, result.stdout + result.stderr
    return dict(zip(("ok", "changed", "unreachable", "failed"), map(int, match.groups()), strict=True))


@needs_cli
@pytest.mark.skipif(not TSC.exists(), reason="TypeScript not installed: run `npm ci` in the repository root")
@pytest.mark.skipif(not ANSIBLE_PLAYBOOK.exists(), reason="needs the repository's .venv (./bootstrap.sh)")
@pytest.mark.skipif(
    not docker_ok(), reason="needs a Docker engine (the CLI runs postgres-meta in a container)"
)
def test_types_verb_generates_compiling_types_of_the_cleanmatex_schema(tmp_path, fresh_db):
    connection = migrations.connect(fresh_db.params)
    try:
        result = migrations.migrate(connection, str(REPO / "supabase" / "migrations"))
    finally:
        connection.close()
    assert not result.failed, result.msg

    out = tmp_path / "types" / "database.types.ts"
    first, first_seconds = run_types(tmp_path, fresh_db, out)
    assert first.returncode == 0, first.stdout[-6000:] + first.stderr[-3000:]
    assert recap(first)["changed"] >= 1
    text = out.read_text(encoding="utf-8")
    assert "export type Database" in text
    public = text[text.index("public: {") :]
    for table in CLEANMATEX_TABLES:
        assert re.search(rf"^\s+{table}: {{\n\s+Row: {{", public, re.M), (
            f"table {table} missing from the types"
        )
    # The password is in --db-url (the CLI reads it only there): the task is no_log, it never shows.
    assert fresh_db.password not in first.stdout

    # The image the CLI ran is ours, under the name the CLI looks for.
    tag = supabase_types.postgres_meta_tag(cli_services(tmp_path))
    ref = supabase_types.cli_image_ref(tag)
    labels = json.loads(
        subprocess.run(
            ["docker", "image", "inspect", "--format", "{{json .Config.Labels}}", ref],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    assert labels.get("org.cleanmatex.service") == "postgres_meta", labels

    # Compiles with the pinned compiler, strict, from a file that uses it.
    check = tmp_path / "check"
    check.mkdir()
    shutil.copy(out, check / "database.types.ts")
    (check / "use.ts").write_text(
        'import type { Database, Tables } from "./database.types"\n'
        'type Order = Database["public"]["Tables"]["orders"]["Row"]\n'
        'export const tenantOf = (order: Order): Order["tenant_id"] => order.tenant_id\n'
        'export type Customer = Tables<"customers">\n',
        encoding="utf-8",
    )
    tsc = subprocess.run(
        [
            str(TSC),
            "--noEmit",
            "--strict",
            "--target",
            "es2022",
            "--module",
            "esnext",
            "--moduleResolution",
            "bundler",
            "use.ts",
        ],
        cwd=check,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert tsc.returncode == 0, tsc.stdout + tsc.stderr

    # Second run: image present, same schema -> nothing changed.
    second, second_seconds = run_types(tmp_path, fresh_db, out)
    assert second.returncode == 0, second.stdout[-6000:] + second.stderr[-3000:]
    assert recap(second)["changed"] == 0, second.stdout[-4000:]
    print(f"types verb: first run {first_seconds:.1f}s, second run {second_seconds:.1f}s")
