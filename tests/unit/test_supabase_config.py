"""Supabase's config.toml from the inventory (roles/supabase: templates/config.toml.j2, tasks/config.yml,
plugins/module_utils/supabase_config.py): the checker's messages, TOML escaping read back by tomllib, the role
run by Ansible with the dev defaults (idempotent, equal to the committed supabase/config.toml) and the real
pinned Supabase CLI (package.json, `npm ci`) accepting the rendered file and rejecting a broken one with its
own message. No Docker: `supabase services` loads the config and prints its images without it.

The committed supabase/config.toml is the template with the dev defaults; after changing the template or
the defaults, rewrite it with:  .venv/bin/python tests/unit/test_supabase_config.py
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from ansible_collections.cleanmatex.infra.plugins.module_utils import supabase_config as sc

REPO = Path(__file__).resolve().parents[2]
CLI = REPO / "node_modules" / ".bin" / "supabase"
COMMITTED = REPO / "supabase" / "config.toml"
DEFAULTS_FILE = REPO / "roles" / "supabase" / "defaults" / "main" / "config.yml"
TEMPLATE = REPO / "roles" / "supabase" / "templates" / "config.toml.j2"
TASKS = REPO / "roles" / "supabase" / "tasks" / "config.yml"
MAJOR = 17  # cmx_postgres_major's default (the endpoints role)

needs_cli = pytest.mark.skipif(
    not CLI.exists(), reason="the pinned Supabase CLI is missing: run `npm ci` (tests/run.sh does)"
)
needs_ansible = pytest.mark.skipif(
    not (REPO / ".venv" / "bin" / "ansible-playbook").exists(),
    reason="needs the repository's .venv (./bootstrap.sh)",
)

# Inventory variable -> where the template puts it (None: nowhere directly).
TOML_PATH = {
    "cmx_supabase_project_id": ("project_id",),
    "cmx_supabase_api_enabled": ("api", "enabled"),
    "cmx_supabase_api_port": ("api", "port"),
    "cmx_supabase_api_schemas": ("api", "schemas"),
    "cmx_supabase_api_extra_search_path": ("api", "extra_search_path"),
    "cmx_supabase_api_max_rows": ("api", "max_rows"),
    "cmx_supabase_db_port": ("db", "port"),
    "cmx_supabase_db_shadow_port": ("db", "shadow_port"),
    "cmx_postgres_major": ("db", "major_version"),
    "cmx_supabase_db_seed_enabled": ("db", "seed", "enabled"),
    "cmx_supabase_studio_enabled": ("studio", "enabled"),
    "cmx_supabase_studio_port": ("studio", "port"),
    "cmx_supabase_studio_api_url": ("studio", "api_url"),
    "cmx_supabase_local_smtp_enabled": ("local_smtp", "enabled"),
    "cmx_supabase_local_smtp_port": ("local_smtp", "port"),
    "cmx_supabase_local_smtp_smtp_port": ("local_smtp", "smtp_port"),
    "cmx_supabase_local_smtp_pop3_port": ("local_smtp", "pop3_port"),
    "cmx_supabase_storage_enabled": ("storage", "enabled"),
    "cmx_supabase_storage_file_size_limit": ("storage", "file_size_limit"),
    "cmx_supabase_realtime_enabled": ("realtime", "enabled"),
    "cmx_supabase_auth_enabled": ("auth", "enabled"),
    "cmx_supabase_auth_site_url": ("auth", "site_url"),
    "cmx_supabase_auth_additional_redirect_urls": ("auth", "additional_redirect_urls"),
    "cmx_supabase_auth_jwt_expiry": ("auth", "jwt_expiry"),
    "cmx_supabase_auth_enable_signup": ("auth", "enable_signup"),
    "cmx_supabase_auth_email_enable_signup": ("auth", "email", "enable_signup"),
    "cmx_supabase_auth_email_double_confirm_changes": ("auth", "email", "double_confirm_changes"),
    "cmx_supabase_auth_email_enable_confirmations": ("auth", "email", "enable_confirmations"),
    "cmx_supabase_analytics_enabled": ("analytics", "enabled"),
    "cmx_supabase_analytics_port": ("analytics", "port"),
}

# The seed PRD's supabase/config.toml (../shared/seeds, "Supabase Configuration"), as the CLI 2.117 names it.
SEED = {
    "project_id": "cleanmatex-local",
    "api": {
        "enabled": True,
        "port": 54321,
        "schemas": ["public", "storage", "graphql_public"],
        "extra_search_path": ["public"],
        "max_rows": 1000,
    },
    "db": {"port": 54322},
    "studio": {"enabled": True, "port": 54323, "api_url": "http://localhost:54321"},
    "local_smtp": {"enabled": True, "port": 54324, "smtp_port": 54325, "pop3_port": 54326},
    "storage": {"enabled": True, "file_size_limit": "50MiB"},
    "auth": {
        "enabled": True,
        "site_url": "http://localhost:3000",
        "additional_redirect_urls": ["http://localhost:3000/auth/callback"],
        "jwt_expiry": 3600,
        "enable_signup": True,
        "email": {"enable_signup": True, "double_confirm_changes": True, "enable_confirmations": False},
    },
}


def dig(data: dict, path: tuple):
    for key in path:
        data = data[key]
    return data


def dev_settings() -> dict:
    """The role's defaults as the inventory variables the checker sees (templated ones resolved for dev)."""
    values = {
        name: value
        for name, value in yaml.safe_load(DEFAULTS_FILE.read_text()).items()
        if name.startswith("cmx_")
    }
    values["cmx_supabase_db_seed_enabled"] = True
    values["cmx_supabase_studio_api_url"] = f"http://localhost:{values['cmx_supabase_api_port']}"
    values["cmx_postgres_major"] = MAJOR
    return values


# --- the checker -------------------------------------------------------------------------------------


def test_every_setting_is_defaulted_checked_passed_and_templated():
    defaults = {name for name in yaml.safe_load(DEFAULTS_FILE.read_text()) if name.startswith("cmx_")}
    assert set(sc.NAMES) == defaults | {"cmx_postgres_major"} == set(TOML_PATH)
    tasks = yaml.safe_load(TASKS.read_text())
    assert set(tasks[0]["vars"]["__supabase_config_settings"]) == set(sc.NAMES)
    assert set(re.findall(r"\{\{ (cmx_\w+)", TEMPLATE.read_text())) == set(sc.NAMES)


def test_the_dev_defaults_pass():
    assert sc.problems(dev_settings()) == []


def test_every_problem_at_once_each_naming_its_variable():
    settings = dev_settings() | {
        "cmx_supabase_api_port": "54321",  # a string
        "cmx_supabase_db_port": 70000,
        "cmx_supabase_studio_port": 54321,  # taken by nothing else once api_port is a string...
        "cmx_supabase_local_smtp_port": 54321,  # ...but this one shares it
        "cmx_supabase_analytics_port": True,
        "cmx_supabase_auth_enabled": "yes",
        "cmx_supabase_auth_site_url": "ftp://localhost",
        "cmx_supabase_auth_additional_redirect_urls": ["http://ok.test/cb", "http://a b", 'http://x/"q"'],
        "cmx_supabase_studio_api_url": "localhost:54321",
        "cmx_supabase_storage_file_size_limit": "fifty",
        "cmx_supabase_auth_jwt_expiry": 10**9,
        "cmx_supabase_api_max_rows": 0,
        "cmx_supabase_api_schemas": ["public", "drop table;"],
        "cmx_supabase_project_id": 'bad "id"',
        "cmx_postgres_major": 99,
    }
    found = sc.problems(settings)
    expected = [
        "cmx_supabase_api_port must be a port number: an integer from 1 to 65535, got '54321' (a string)",
        "cmx_supabase_db_port must be a port number",
        "cmx_supabase_analytics_port must be a port number: an integer from 1 to 65535, got True (a boolean)",
        "cmx_supabase_studio_port and cmx_supabase_local_smtp_port share port 54321",
        "cmx_supabase_auth_enabled must be true or false",
        "cmx_supabase_auth_site_url must be an http:// or https:// URL with a host, got 'ftp://localhost'",
        "cmx_supabase_auth_additional_redirect_urls[1] must be an http(s) URL without spaces",
        "cmx_supabase_auth_additional_redirect_urls[2] must be an http(s) URL; percent-encode",
        "cmx_supabase_studio_api_url must be an http:// or https:// URL",
        'cmx_supabase_storage_file_size_limit must be a size such as "50MiB"',
        "cmx_supabase_auth_jwt_expiry must be an integer from 1 to 604800",
        "cmx_supabase_api_max_rows must be an integer from 1 to 1000000",
        "cmx_supabase_api_schemas must be a list of PostgreSQL schema names",
        "cmx_supabase_project_id must be 1-63 letters",
        "cmx_postgres_major must be one of 15, 17 (the stack's PostgreSQL), got 99 (an integer)",
    ]
    for start in expected:
        assert any(problem.startswith(start) for problem in found), (start, found)
    assert len(found) == len(expected), found


@pytest.mark.parametrize(
    ("name", "value", "ok"),
    [
        ("cmx_postgres_major", 15, True),
        ("cmx_postgres_major", "17", True),  # e.g. -e cmx_postgres_major=17
        ("cmx_postgres_major", 16, False),  # no PostgreSQL 16 in the stack's build mode
        ("cmx_postgres_major", True, False),
        ("cmx_supabase_api_port", 1, True),
        ("cmx_supabase_api_port", 65535, True),
        ("cmx_supabase_api_port", 0, False),
        ("cmx_supabase_api_port", 54321.0, False),
        ("cmx_supabase_storage_file_size_limit", "1GiB", True),
        ("cmx_supabase_storage_file_size_limit", "050MiB", False),
        ("cmx_supabase_storage_file_size_limit", 50, False),
        ("cmx_supabase_auth_site_url", "https://app.cleanmatex.test:8443/x?y=1", True),
        ("cmx_supabase_auth_site_url", "http://localhost:99999", False),
        ("cmx_supabase_auth_additional_redirect_urls", [], True),
        ("cmx_supabase_auth_additional_redirect_urls", ["http://localhost:3000/**"], True),
        ("cmx_supabase_auth_additional_redirect_urls", "http://localhost:3000", False),
        ("cmx_supabase_project_id", "cmx-ci_2.local", True),
        ("cmx_supabase_project_id", "-leading-dash", False),
        ("cmx_supabase_project_id", "x" * 64, False),
        ("cmx_supabase_auth_jwt_expiry", 604800, True),
        ("cmx_supabase_auth_email_enable_confirmations", 0, False),
    ],
)
def test_single_values(name, value, ok):
    found = sc.problems(dev_settings() | {name: value})
    assert (found == []) is ok, found
    assert all(problem.startswith(name) for problem in found)


def test_missing_and_unknown_names_are_reported():
    settings = dev_settings()
    del settings["cmx_postgres_major"]
    settings["cmx_supabase_api_prot"] = 1
    found = sc.problems(settings)
    assert "cmx_postgres_major is not set" in found
    assert "cmx_supabase_api_prot is not a Supabase config setting (a typo?)" in found


# --- TOML values --------------------------------------------------------------------------------------

HOSTILE_STRINGS = [
    'say "hi"',
    "back\\slash \\n not a newline",
    "'single' ''' \"\"\" triple",
    "line\nbreak\ttab\rcr\x00nul\x1fus\x7fdel\b\f",
    "ünïcödé ✓ 😀",
    '"] = 1\n[evil]\nx = "',
    "",
]


@pytest.mark.parametrize("value", HOSTILE_STRINGS)
def test_toml_strings_read_back_unchanged(value):
    assert tomllib.loads(f"v = {sc.toml_value(value)}\nw = {sc.toml_value([value, value])}\n") == {
        "v": value,
        "w": [value, value],
    }


def test_toml_scalars_and_refusals():
    assert [sc.toml_value(v) for v in (True, False, 0, 54321, -1, 1.5)] == [
        "true",
        "false",
        "0",
        "54321",
        "-1",
        "1.5",
    ]
    assert sc.toml_value([]) == "[]"
    for bad in ({"a": 1}, None, float("nan"), "\ud800"):
        with pytest.raises(ValueError):
            sc.toml_value(bad)


# --- Ansible: the role's tasks and the template -----------------------------------------------------


def ansible_env() -> dict:
    import os

    env = dict(os.environ)
    env["PATH"] = f"{REPO / '.venv' / 'bin'}:{env.get('PATH', '')}"
    env.update(ANSIBLE_FORCE_COLOR="0", ANSIBLE_NOCOLOR="1", ANSIBLE_CALLBACK_RESULT_FORMAT="json")
    env.pop("ANSIBLE_VAULT_PASSWORD_FILE", None)
    return env


def playbook(tmp_path: Path, play: str, values: dict, *options: str) -> subprocess.CompletedProcess:
    (tmp_path / "play.yml").write_text(play)
    (tmp_path / "values.json").write_text(json.dumps(values))
    return subprocess.run(
        [
            str(REPO / ".venv" / "bin" / "ansible-playbook"),
            "-i",
            "localhost,",
            str(tmp_path / "play.yml"),
            "-e",
            "ansible_connection=local",
            "-e",
            f"ansible_python_interpreter={sys.executable}",
            "-e",
            f"@{tmp_path / 'values.json'}",
            *options,
        ],
        cwd=REPO,  # ansible.cfg: roles/ and the collection
        env=ansible_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )


ROLE_PLAY = """\
- name: The supabase role's config.toml step
  hosts: all
  gather_facts: false
  tasks:
    - name: Render, check and write config.toml
      ansible.builtin.include_role:
        name: supabase
        tasks_from: config.yml
"""


def run_role(project: Path, **values) -> subprocess.CompletedProcess:
    base = {
        "cmx_postgres_major": MAJOR,
        "cmx_project_dir": str(project),
        "supabase_workdir": str(project),
        "cmx_supabase_cli": str(CLI),
        "supabase_cli": str(CLI),
    }
    project.parent.mkdir(parents=True, exist_ok=True)
    return playbook(project.parent, ROLE_PLAY, base | values)


def recap_changed(done: subprocess.CompletedProcess) -> int:
    return int(re.search(r"localhost\s*:.*changed=(\d+)", done.stdout).group(1))


def render_dev(out_dir: Path) -> tuple[str, list[subprocess.CompletedProcess]]:
    project = out_dir / "project"
    runs = [run_role(project), run_role(project)]
    return (project / "supabase" / "config.toml").read_text(encoding="utf-8"), runs


@pytest.fixture(scope="module")
def dev_render(tmp_path_factory):
    out = tmp_path_factory.mktemp("supabase-config")
    text, runs = render_dev(out)
    for done in runs:
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return out / "project", text, runs


@needs_ansible
@needs_cli
def test_the_committed_config_toml_is_the_template_with_the_dev_defaults(dev_render):
    _, text, _ = dev_render
    assert COMMITTED.read_text(encoding="utf-8") == text, (
        "supabase/config.toml is out of date: run "
        "PYTHONPATH=.collections .venv/bin/python tests/unit/test_supabase_config.py"
    )


@needs_ansible
@needs_cli
def test_dev_render_has_the_seed_values_and_the_inputs(dev_render):
    _, text, _ = dev_render
    data = tomllib.loads(text)
    for name, value in dev_settings().items():
        assert dig(data, TOML_PATH[name]) == value, name

    def subset(expected, actual, where=""):
        for key, value in expected.items():
            if isinstance(value, dict):
                subset(value, actual[key], f"{where}{key}.")
            else:
                assert actual[key] == value, f"{where}{key}"

    subset(SEED, data)
    assert data["db"]["major_version"] == MAJOR
    assert data["analytics"]["enabled"] is False
    assert data["db"]["migrations"]["enabled"] is True
    assert data["db"]["seed"]["sql_paths"] == ["./seed.sql"]


@needs_ansible
@needs_cli
def test_a_second_run_changes_nothing_and_the_project_files_sit_next_to_it(dev_render):
    project, _, runs = dev_render
    assert recap_changed(runs[0]) > 0
    assert recap_changed(runs[1]) == 0, runs[1].stdout[-2000:]
    folder = project / "supabase"
    assert (folder / "migrations").resolve() == REPO / "supabase" / "migrations"
    assert (folder / "seed.sql").resolve() == REPO / "supabase" / "seed.sql"
    assert oct((folder / "config.toml").stat().st_mode & 0o777) == "0o644"


@needs_ansible
@needs_cli
def test_the_cli_works_on_the_project_through_the_workdir(tmp_path):
    """`supabase migration new --workdir <cmx_project_dir>` writes into the project's own migrations folder
    (here a copy of it, through the link next to config.toml)."""
    source = tmp_path / "source"
    shutil.copytree(
        REPO / "supabase", source, ignore=shutil.ignore_patterns("config.toml", ".temp", ".branches")
    )
    project = tmp_path / "project"
    done = run_role(project, supabase_source_dir=str(source))
    assert done.returncode == 0, done.stdout[-3000:]
    env = ansible_env() | sc.CLI_ENV
    (project / "supabase" / ".temp").mkdir()
    (project / "supabase" / ".temp" / "cli-latest").touch()  # no check for a newer CLI on GitHub
    before = sorted(path.name for path in (source / "migrations").iterdir())
    new = subprocess.run(
        [str(CLI), "migration", "new", "probe", "--workdir", str(project)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert new.returncode == 0, new.stderr
    added = sorted(set(path.name for path in (source / "migrations").iterdir()) - set(before))
    assert len(added) == 1 and added[0].endswith("_probe.sql"), added


@needs_ansible
@needs_cli
def test_a_remote_target_gets_copies_and_loses_stale_migrations(tmp_path):
    """Over SSH the migrations and the seed are copied next to config.toml (the database role's folder), and a
    migration the controller no longer has is removed. Forced here on a local connection."""
    project = tmp_path / "project"
    (project / "supabase" / "migrations").mkdir(parents=True)
    (project / "supabase" / "migrations" / "20990101000000_stale.sql").write_text("select 1;")
    done = run_role(project, __supabase_config_local=False)
    assert done.returncode == 0, done.stdout[-3000:]
    copied = project / "supabase" / "migrations"
    assert not copied.is_symlink() and not (project / "supabase" / "seed.sql").is_symlink()
    assert sorted(p.name for p in copied.iterdir()) == sorted(
        p.name for p in (REPO / "supabase" / "migrations").iterdir()
    )
    assert (project / "supabase" / "seed.sql").read_bytes() == (REPO / "supabase" / "seed.sql").read_bytes()


@needs_ansible
@needs_cli
def test_the_role_reports_every_bad_value_before_writing(tmp_path):
    project = tmp_path / "project"
    done = run_role(
        project,
        cmx_postgres_major=99,
        cmx_supabase_api_port="54321",
        cmx_supabase_auth_site_url="localhost:3000",
    )
    assert done.returncode != 0
    for part in (
        "cmx_supabase_api_port must be a port number: an integer from 1 to 65535, got '54321' (a string)",
        "cmx_supabase_auth_site_url must be an http:// or https:// URL",
        "cmx_postgres_major must be one of 15, 17",
    ):
        assert part in done.stdout, done.stdout[-3000:]
    assert not (project / "supabase" / "config.toml").exists()


TEMPLATE_PLAY = """\
- name: The config.toml template alone, with hostile values
  hosts: all
  gather_facts: false
  vars_files:
    - {defaults}
  tasks:
    - name: Render the template
      ansible.builtin.copy:
        dest: "{{{{ out }}}}"
        content: "{{{{ lookup('ansible.builtin.template', '{template}') }}}}"
        mode: "0600"
"""

HOSTILE = {
    "cmx_supabase_project_id": 'cmx"\\\n[evil]\nx = "',
    "cmx_supabase_auth_site_url": 'http://localhost:3000/"quoted"\\back',
    "cmx_supabase_auth_additional_redirect_urls": [
        "http://a/'''",
        'http://b/"""',
        "http://c/\t\\u0041",
        "ü✓",
    ],
    "cmx_supabase_storage_file_size_limit": '50MiB" \nfile_size_limit = "1GiB',
    "cmx_supabase_studio_api_url": "http://x/${HOME} $(id) `id` #not-a-comment",
    "cmx_supabase_api_schemas": ['pub"lic', "s\\t"],
}


@needs_ansible
def test_hostile_values_are_escaped(tmp_path):
    play = TEMPLATE_PLAY.format(defaults=DEFAULTS_FILE, template=TEMPLATE)
    out = tmp_path / "config.toml"
    # cmx_postgres_major as a string, as -e cmx_postgres_major=15 gives it: an integer in config.toml.
    done = playbook(tmp_path, play, HOSTILE | {"cmx_postgres_major": "15", "out": str(out)})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    data = tomllib.loads(out.read_text(encoding="utf-8"))
    for name, value in HOSTILE.items():
        assert dig(data, TOML_PATH[name]) == value, name
    assert "evil" not in data
    assert data["db"]["major_version"] == 15
    assert set(data) == {
        "project_id", "api", "db", "studio", "local_smtp", "storage", "realtime", "auth", "analytics"
    }  # fmt: skip


# --- the pinned CLI's own check ------------------------------------------------------------------------


@needs_cli
def test_cli_accepts_the_committed_file_and_lists_its_images():
    checked = sc.cli_check(str(CLI), COMMITTED.read_text(), MAJOR)
    assert checked.ok, checked.message
    assert checked.images["supabase/postgres"].startswith(f"{MAJOR}.")
    assert checked.images["supabase/postgres-meta"] == "v0.99.0"  # PLATFORM.md, CLI 2.117.0
    assert checked.command[1:4] == ["services", "-o", "json"]


@needs_cli
@pytest.mark.parametrize(
    ("before", "after", "message"),
    [
        (
            f"major_version = {MAJOR}",
            "major_version = 99",
            "Failed reading config: Invalid db.major_version: 99.",
        ),
        ("port = 54322", "port = 0", "Missing required field in config: db.port"),
        (
            'project_id = "cleanmatex-local"',
            'project_id = ""',
            "Missing required field in config: project_id",
        ),
        ("[storage]", "[storage", "Invalid TOML document"),
    ],
)
def test_cli_rejects_a_broken_file_with_its_own_message(before, after, message):
    text = COMMITTED.read_text()
    assert before in text
    checked = sc.cli_check(str(CLI), text.replace(before, after, 1), MAJOR)
    assert not checked.ok
    assert message in checked.message


@needs_cli
def test_cli_check_with_postgres_15():
    text = COMMITTED.read_text().replace(f"major_version = {MAJOR}", "major_version = 15")
    checked = sc.cli_check(str(CLI), text, "15")
    assert checked.ok, checked.message
    assert checked.images["supabase/postgres"].startswith("15.")


@needs_cli
def test_cli_check_refuses_a_file_of_another_major():
    checked = sc.cli_check(
        str(CLI), COMMITTED.read_text().replace(f"major_version = {MAJOR}", "major_version = 15"), 17
    )
    assert not checked.ok
    assert "supabase/postgres:15." in checked.message and "not PostgreSQL 17" in checked.message


def test_cli_check_with_a_relative_cli_path(monkeypatch):
    monkeypatch.chdir(REPO)
    checked = sc.cli_check("node_modules/.bin/supabase", COMMITTED.read_text(), MAJOR)
    assert checked.ok, checked.message


def test_cli_check_when_the_cli_is_missing(tmp_path):
    checked = sc.cli_check(str(tmp_path / "no-supabase"), "", MAJOR)
    assert not checked.ok and "could not run" in checked.message


MODULE_PLAY = """\
- name: The module alone
  hosts: all
  gather_facts: false
  tasks:
    - name: Write config.toml once the pinned Supabase CLI accepts it
      cleanmatex.infra.cmx_supabase_config:
        content: "{{ content }}"
        dest: "{{ dest }}"
        cli: "{{ cli }}"
        postgres_major: "17"
"""


@needs_ansible
@needs_cli
def test_the_module_fails_with_the_cli_message_and_writes_nothing(tmp_path):
    dest = tmp_path / "supabase" / "config.toml"
    dest.parent.mkdir()
    broken = COMMITTED.read_text().replace(f"major_version = {MAJOR}", "major_version = 99")
    done = playbook(tmp_path, MODULE_PLAY, {"content": broken, "dest": str(dest), "cli": str(CLI)})
    assert done.returncode != 0
    assert "The Supabase CLI rejected the rendered config.toml" in done.stdout
    assert "Invalid db.major_version: 99." in done.stdout, done.stdout[-3000:]
    assert not dest.exists()


@needs_ansible
@needs_cli
def test_the_module_in_check_mode_checks_but_writes_nothing(tmp_path):
    dest = tmp_path / "supabase" / "config.toml"
    dest.parent.mkdir()
    values = {"content": COMMITTED.read_text(), "dest": str(dest), "cli": str(CLI)}
    done = playbook(tmp_path, MODULE_PLAY, values, "--check")
    assert done.returncode == 0, done.stdout[-3000:]
    assert recap_changed(done) == 1 and not dest.exists()
    done = playbook(tmp_path, MODULE_PLAY, values)
    assert recap_changed(done) == 1 and dest.read_text() == COMMITTED.read_text()


def main() -> int:
    """Rewrite the committed supabase/config.toml from the template and the dev defaults."""
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        text, runs = render_dev(Path(folder))
        for done in runs:
            if done.returncode != 0:
                print(done.stdout[-3000:] + done.stderr[-3000:], file=sys.stderr)
                return 1
    COMMITTED.write_text(text, encoding="utf-8")
    print(f"wrote {COMMITTED.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
