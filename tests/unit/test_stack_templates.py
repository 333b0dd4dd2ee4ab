"""The stack role's templates and rendered secret files with hostile inventory values, rendered by Ansible
itself (the role's defaults, vars and the quote_for filter), then read by their real consumers:
docker compose (compose file + .env), redis-server (redis.conf), JSON (Redis Commander), PostgreSQL
(init SQL) and PgBouncer's parser rules (pgbouncer.ini)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from test_env_support import REPO, ansible_env
from test_probes_support import _stop
from test_quoting import compose_config, needs_compose, redis_client, start_redis, unescape

pytestmark = pytest.mark.skipif(
    shutil.which("ansible-playbook", path=str(REPO / ".venv" / "bin")) is None,
    reason="needs the repository's .venv (./bootstrap.sh)",
)

HOSTILE = {
    "cmx_environment": "ci",
    "cmx_project_name": "cmx-quoting",
    "cmx_postgres_user": "cmx_user",
    "cmx_postgres_db": "cmx_db",
    "cmx_postgres_password": "pg pä$s'w\"o:r#d \\ ${HOME}",
    "cmx_postgres_app_user": "cmx_app",
    "cmx_postgres_app_password": "a'p\"p $X:#ä",
    "cmx_postgres_migration_user": "cmx_migrator",
    "cmx_postgres_migration_password": "m'i\"g $X:#ä",
    "cmx_postgres_health_user": "cmx_health",
    "cmx_postgres_health_password": "h'e\"alth $X:#ä\\",
    "cmx_pgbouncer_admin_user": "cmx_pgbouncer_admin",
    "cmx_pgbouncer_admin_password": "a'd\"min $X",
    "cmx_postgres_settings": {
        "search_path": '"$user", public',
        "application_name": "it's $HOME: #1 ä",
        "jit": False,
    },
    "cmx_redis_password": "rä$d'i\"s:#p w\\x ${X}",
    "cmx_s3_access_key": "h17-access$key",
    "cmx_s3_secret_key": "s3 $ecr'et\"#:ä",
    "cmx_s3_bucket": "cmx-quoting",
    "cmx_redis_commander_enabled": True,
    "cmx_s3_console_password": "co\"n's$ole #ä\\ ${X}",
    "cmx_s3_console_hosts": ["storage.cmx.test"],
    "cmx_redis_commander_password": "g'u\"i $X:#ä\\",
    "cmx_redis_commander_hosts": ["gui.cmx.test"],
    "cmx_images": {
        name: f"cmx/{name}:test"
        for name in ("postgres", "pgbouncer", "redis", "storage", "health", "redis_commander")
    },
}

PLAY = """\
- name: Render the stack's files only
  hosts: all
  gather_facts: false
  vars_files:
    - {repo}/roles/endpoints/defaults/main.yml
    - {repo}/roles/stack/defaults/main.yml
    - {repo}/roles/stack/vars/main.yml
  tasks:
    - name: Resolve where each service runs, as the endpoints role does
      ansible.builtin.import_tasks: {repo}/roles/endpoints/tasks/main.yml
    - name: Compute the labels' config digests as the role does
      cleanmatex.infra.cmx_config_digest:
        key_file: "{{{{ out }}}}/label_hmac.key"
        inputs: "{{{{ __stack_config_digest_inputs }}}}"
      register: __stack_config_digests
    - name: Render each template
      ansible.builtin.copy:
        dest: "{{{{ out }}}}/{{{{ item.dest }}}}"
        content: "{{{{ lookup('ansible.builtin.template', item.src) }}}}"
        mode: "0600"
      loop:
        - {{src: docker-compose.yml.j2, dest: docker-compose.yml}}
        - {{src: compose.env.j2, dest: .env}}
        - {{src: pgbouncer.ini.j2, dest: pgbouncer.ini}}
        - {{src: 001-init.sql.j2, dest: 001-init.sql}}
    - name: Write the secret files as the role renders them
      ansible.builtin.copy:
        dest: "{{{{ out }}}}/secrets/{{{{ item.path | basename }}}}"
        content: "{{{{ item.content }}}}"
        mode: "0600"
      loop: "{{{{ __stack_secret_files }}}}"
      no_log: true
"""


def render(tmp_path: Path, values: dict) -> subprocess.CompletedProcess:
    play = tmp_path / "play.yml"
    play.write_text(PLAY.format(repo=REPO))
    # Relative template lookups in the role's vars resolve against the play's templates/ folder.
    (tmp_path / "templates").symlink_to(REPO / "roles" / "stack" / "templates")
    (tmp_path / "out" / "secrets").mkdir(parents=True)
    (tmp_path / "values.json").write_text(json.dumps({**values, "out": str(tmp_path / "out")}))
    extra = ["ansible_connection=local", f"ansible_python_interpreter={sys.executable}"]
    extra.append(f"@{tmp_path}/values.json")
    return subprocess.run(
        [REPO / ".venv" / "bin" / "ansible-playbook", "-i", "localhost,", play]
        + [arg for value in extra for arg in ("-e", value)],
        cwd=REPO,
        env=ansible_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> Path:
    tmp_path = tmp_path_factory.mktemp("stack-templates")
    done = render(tmp_path, HOSTILE)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return tmp_path / "out"


def test_the_compose_file_is_valid_yaml(rendered):
    yaml.safe_load((rendered / "docker-compose.yml").read_text())


@needs_compose
def test_postgres_settings_and_names_reach_compose_unchanged(rendered):
    services = compose_config(rendered)["services"]
    command = [unescape(arg) for arg in services["postgres"]["command"]]
    for key, value in HOSTILE["cmx_postgres_settings"].items():
        assert command[command.index(f"{key}={value}") - 1] == "-c"  # jit=False: PostgreSQL takes it
    environment = services["postgres"]["environment"]
    assert (environment["POSTGRES_USER"], environment["POSTGRES_DB"]) == ("cmx_user", "cmx_db")
    assert services["postgres"]["image"] == "cmx/postgres:test"


def test_postgres_keeps_its_wal_on_its_own_volume(rendered):
    compose = yaml.safe_load((rendered / "docker-compose.yml").read_text())
    postgres = compose["services"]["postgres"]
    assert "postgres_data:/var/lib/postgresql/data" in postgres["volumes"]
    assert "postgres_wal:/var/lib/postgresql/wal" in postgres["volumes"]
    # A folder on the WAL volume, not its root: the entrypoint moves an old cluster's pg_wal there safely.
    assert postgres["environment"]["POSTGRES_INITDB_WALDIR"] == "/var/lib/postgresql/wal/pg_wal"
    assert {"postgres_data", "postgres_wal", "redis_data", "storage_data"} <= set(compose["volumes"])


def test_redis_conf_requires_exactly_the_password(rendered):
    config = (rendered / "secrets" / "redis.conf").read_text(encoding="utf-8")
    # The rendered file binds 6379 and /data: the test server gets its own port and folder on top.
    proc, port, folder = start_redis(config.replace("dir /data", ""))
    try:
        assert redis_client(port, HOSTILE["cmx_redis_password"]).ping()
    finally:
        _stop(proc)
        shutil.rmtree(folder, ignore_errors=True)


def test_redis_commander_gets_its_connection_as_json(rendered):
    config = json.loads((rendered / "secrets" / "redis-commander.json").read_text(encoding="utf-8"))
    (connection,) = config["connections"]
    assert connection["password"] == HOSTILE["cmx_redis_password"]
    assert (connection["host"], connection["port"], config["noSave"]) == ("redis", 6379, True)
    assert "REDIS_HOSTS" not in (rendered / "secrets" / "redis-commander.env").read_text()


def test_gui_logins_reach_their_files_unchanged_and_nowhere_else(rendered):
    import tomllib

    security = tomllib.loads((rendered / "secrets" / "seaweedfs_security.toml").read_text(encoding="utf-8"))
    assert security["admin"] == {"user": "admin", "password": HOSTILE["cmx_s3_console_password"]}
    config = json.loads((rendered / "secrets" / "redis-commander.json").read_text(encoding="utf-8"))
    assert config["server"]["httpAuth"] == {
        "username": "admin",
        "password": HOSTILE["cmx_redis_commander_password"],
    }
    compose = (rendered / "docker-compose.yml").read_text(encoding="utf-8")
    for name in ("cmx_s3_console_password", "cmx_redis_commander_password"):
        assert HOSTILE[name] not in compose


@needs_compose
def test_storage_listens_inside_and_the_guis_check_the_host(rendered):
    services = compose_config(rendered)["services"]
    command = [unescape(arg) for arg in services["storage"]["command"]]
    assert command[:3] == [
        "front",
        "--forward=0.0.0.0:9000=127.0.0.1:8333",
        "--forward=0.0.0.0:23646=127.0.0.1:23647",
    ]
    assert "--hosts=23646=localhost,127.0.0.1,::1,storage.cmx.test" in command
    mini = command[command.index("--") + 1 :]
    assert mini[0] == "mini" and {"-ip=127.0.0.1", "-ip.bind=127.0.0.1", "-webdav=false"} <= set(mini)
    assert not services["storage"].get("entrypoint")  # the image's own: it drops root
    assert [port["target"] for port in services["storage"]["ports"]] == [9000, 23646]
    # Redis Commander is in the "tools" profile, which `config` leaves out: read the file itself.
    raw = yaml.safe_load((rendered / "docker-compose.yml").read_text(encoding="utf-8"))
    environment = raw["services"]["redis-commander"]["environment"]
    assert environment["CMX_ALLOWED_HOSTS"] == "localhost,127.0.0.1,::1,gui.cmx.test"
    assert environment["NODE_OPTIONS"] == "--require /opt/cmx/host-check.js"


def test_identifiers_are_quoted_for_sql_and_pgbouncer(rendered):
    sql = (rendered / "001-init.sql").read_text()
    assert 'GRANT CONNECT ON DATABASE "cmx_db" TO cmx_readonly;' in sql
    assert 'ALTER DEFAULT PRIVILEGES FOR ROLE "cmx_user" IN SCHEMA public' in sql
    ini = (rendered / "pgbouncer.ini").read_text()
    assert "cmx_db = host=postgres port=5432 dbname='cmx_db'" in ini
    assert "admin_users = cmx_pgbouncer_admin" in ini and "stats_users = cmx_pgbouncer_admin" in ini
    assert "cmx_user" not in ini.split("[pgbouncer]", 1)[1]  # the superuser is no PgBouncer admin


def test_health_uses_its_own_role_and_password_file(rendered):
    compose = (rendered / "docker-compose.yml").read_text(encoding="utf-8")
    env = (rendered / ".env").read_text(encoding="utf-8")
    assert "POSTGRES_HEALTH_USER=" in env and "cmx_health" in env
    assert "HEALTH_DATABASE_URL: postgresql://${POSTGRES_HEALTH_USER:?" in compose
    assert "HEALTH_PGBOUNCER_URL: postgresql://${POSTGRES_HEALTH_USER}@pgbouncer:6432/" in compose
    assert "/run/secrets/postgres_health_password" in compose
    health = compose.split("\n  health:", 1)[1]
    assert "./secrets/postgres_password:/run/secrets/postgres_password" not in health
    password = (rendered / "secrets" / "postgres_health_password").read_text(encoding="utf-8")
    assert password == HOSTILE["cmx_postgres_health_password"]


def test_secrets_are_written_raw(rendered):
    secrets = rendered / "secrets"
    assert (secrets / "postgres_password").read_text(encoding="utf-8") == HOSTILE["cmx_postgres_password"]
    assert (secrets / "redis_password").read_text(encoding="utf-8") == HOSTILE["cmx_redis_password"]
    identities = json.loads((secrets / "s3_identities.json").read_text(encoding="utf-8"))
    assert identities["identities"][0]["credentials"] == [
        {"accessKey": HOSTILE["cmx_s3_access_key"], "secretKey": HOSTILE["cmx_s3_secret_key"]}
    ]


def test_a_name_pgbouncer_cannot_read_stops_the_render(tmp_path):
    done = render(tmp_path, {**HOSTILE, "cmx_postgres_db": "db name"})
    assert done.returncode != 0
    assert "quote_for('pgbouncer_name')" in done.stdout + done.stderr


# Every data service external (docs/external-services.md): a managed PostgreSQL behind the stack's own
# PgBouncer, managed Redis and S3; the CA files live on the control machine.
def _external(tmp_path: Path, **extra) -> dict:
    ca = tmp_path / "managed-ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
    return {
        **HOSTILE,
        "cmx_environment": "staging",
        "cmx_redis_commander_enabled": False,
        "cmx_postgres_mode": "external",
        "cmx_postgres_host": "db.example.internal",
        "cmx_postgres_port": 5433,
        "cmx_postgres_ca_file": str(ca),
        "cmx_redis_mode": "external",
        "cmx_redis_host": "cache.example.internal",
        "cmx_redis_port": 6380,
        "cmx_redis_ca_file": str(ca),
        "cmx_s3_mode": "external",
        "cmx_s3_endpoint": "https://s3.example.internal:8443",
        "cmx_s3_ca_file": str(ca),
        **extra,
    }


@pytest.fixture(scope="module")
def rendered_external(tmp_path_factory) -> Path:
    tmp_path = tmp_path_factory.mktemp("stack-external")
    done = render(tmp_path, _external(tmp_path))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return tmp_path / "out"


def test_external_services_bring_up_no_data_container_and_no_volume(rendered_external):
    compose = yaml.safe_load((rendered_external / "docker-compose.yml").read_text(encoding="utf-8"))
    assert set(compose["services"]) == {"pgbouncer", "health"}
    assert "volumes" not in compose
    assert "depends_on" not in compose["services"]["pgbouncer"]
    env = (rendered_external / ".env").read_text(encoding="utf-8")
    assert "CMX_EXTERNAL_POSTGRES=db.example.internal:5433" in env
    assert "CMX_EXTERNAL_S3=https://s3.example.internal:8443" in env


def test_pgbouncer_logs_in_to_the_external_server_with_verified_tls(rendered_external):
    ini = (rendered_external / "pgbouncer.ini").read_text(encoding="utf-8")
    assert "host=db.example.internal port=5433" in ini
    assert "server_tls_sslmode = verify-full" in ini
    assert "server_tls_ca_file = /run/secrets/ca/postgres.crt" in ini
    compose = (rendered_external / "docker-compose.yml").read_text(encoding="utf-8")
    assert "./secrets/ca/postgres.crt:/run/secrets/ca/postgres.crt:ro" in compose
    # No pg_authid on a managed server: the user list holds the inventory's passwords, quoted for PgBouncer.
    userlist = (rendered_external / "secrets" / "userlist.txt").read_text(encoding="utf-8")
    app = HOSTILE["cmx_postgres_app_password"].replace('"', '""')
    assert f'"cmx_app" "{app}"' in userlist.splitlines()
    assert len(userlist.splitlines()) == 4


def test_health_probes_the_external_endpoints_with_their_cas(rendered_external):
    health = yaml.safe_load((rendered_external / "docker-compose.yml").read_text(encoding="utf-8"))[
        "services"
    ]["health"]
    env = health["environment"]
    assert env["HEALTH_DATABASE_URL"].startswith("postgresql://${POSTGRES_HEALTH_USER:?")
    assert "@db.example.internal:5433/" in env["HEALTH_DATABASE_URL"]
    assert env["HEALTH_DATABASE_URL"].endswith(
        "?sslmode=verify-full&sslrootcert=/run/secrets/ca/postgres.crt"
    )
    assert "@pgbouncer:6432/" in env["HEALTH_PGBOUNCER_URL"]
    assert env["HEALTH_REDIS_URL"] == "rediss://cache.example.internal:6380/0"
    assert env["HEALTH_REDIS_CA_FILE"] == "/run/secrets/ca/redis.crt"
    assert env["HEALTH_S3_ENDPOINT"] == "https://s3.example.internal:8443"
    assert env["HEALTH_S3_HEALTH_PATH"] == ""
    assert "./secrets/ca:/run/secrets/ca:ro" in health["volumes"]


def test_mixed_setup_keeps_redis_a_container(tmp_path):
    values = _external(
        tmp_path,
        cmx_redis_mode="container",
        cmx_pgbouncer_mode="external",
        cmx_pgbouncer_host="pool.example.internal",
    )
    done = render(tmp_path, values)
    assert done.returncode == 0, done.stdout[-3000:]
    compose = yaml.safe_load((tmp_path / "out" / "docker-compose.yml").read_text(encoding="utf-8"))
    assert set(compose["services"]) == {"redis", "redis-commander", "health"}
    assert set(compose["volumes"]) == {"redis_data"}
    health = compose["services"]["health"]["environment"]
    assert health["HEALTH_REDIS_URL"] == "redis://redis:6379/0"
    assert "@pool.example.internal:6432/" in health["HEALTH_PGBOUNCER_URL"]


def test_every_service_external_runs_only_the_health_service(tmp_path):
    values = _external(tmp_path, cmx_pgbouncer_mode="external", cmx_pgbouncer_host="pool.example.internal")
    done = render(tmp_path, values)
    assert done.returncode == 0, done.stdout[-3000:]
    compose = yaml.safe_load((tmp_path / "out" / "docker-compose.yml").read_text(encoding="utf-8"))
    assert set(compose["services"]) == {"health"}
    assert "volumes" not in compose
    env = (tmp_path / "out" / ".env").read_text(encoding="utf-8")
    assert "CMX_EXTERNAL_PGBOUNCER=pool.example.internal:6432" in env
