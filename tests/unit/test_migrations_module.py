"""cleanmatex.infra.cmx_migrate run by Ansible itself (`ansible localhost -m ...`) against real PostgreSQL.

Sequence as in community.docker's module tests: check mode, real run, both again (nothing changes).
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml
from ansible_collections.cleanmatex.infra.plugins.modules import cmx_migrate as module_source

REPO = Path(__file__).resolve().parents[2]
ANSIBLE = Path(sys.executable).with_name("ansible")
MIGRATION_FILES = sorted(path.name for path in (REPO / "supabase" / "migrations").glob("*.sql"))


def cmx_migrate(fresh_db, *extra_args, verbose=False, **module_args) -> tuple[dict, str]:
    """Run the module ad hoc from the repository root (its ansible.cfg); returns (result, raw stdout)."""
    module_args = {
        "connection": fresh_db.params,
        "migrations_dir": str(REPO / "supabase" / "migrations"),
        **module_args,
    }
    env = {**os.environ, "ANSIBLE_LOAD_CALLBACK_PLUGINS": "1", "ANSIBLE_STDOUT_CALLBACK": "json"}
    command = [
        str(ANSIBLE),
        "localhost",
        "-m",
        "cleanmatex.infra.cmx_migrate",
        "-a",
        json.dumps(module_args),
        "-e",
        f"ansible_python_interpreter={sys.executable}",
        *extra_args,
    ]
    if verbose:
        command.append("-vvv")
    completed = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    output = completed.stdout
    report = json.loads(output[output.index("{") :])
    return report["plays"][0]["tasks"][0]["hosts"]["localhost"], output + completed.stderr


def test_module_check_run_and_rerun(fresh_db):
    result, _ = cmx_migrate(fresh_db, "--check", seed=True)
    assert result["changed"] is True
    assert result["pending"] == MIGRATION_FILES
    assert result["applied"] == []
    assert result["seed_applied"] is True
    assert fresh_db.query("select to_regclass('public.orders') is null") == [(True,)]

    result, _ = cmx_migrate(fresh_db, seed=True)
    assert result["changed"] is True
    assert result["applied"] == MIGRATION_FILES
    assert result["seed_applied"] is True
    assert fresh_db.query("select count(*) from public.orders") == [(5,)]

    result, _ = cmx_migrate(fresh_db, "--check", seed=True)
    assert result["changed"] is False
    assert result["pending"] == []

    result, _ = cmx_migrate(fresh_db, seed=True)
    assert result["changed"] is False
    assert result["applied"] == []
    assert result["already_applied"] == len(MIGRATION_FILES)
    assert result["seed_applied"] is False


def test_module_failure_names_the_file_and_hides_the_password(fresh_db, tmp_path):
    migrations_dir = tmp_path / "supabase" / "migrations"
    migrations_dir.mkdir(parents=True)
    (migrations_dir / "20240101000000_ok.sql").write_text("create table public.ok (id int);\n")
    (migrations_dir / "20240102000000_bad.sql").write_text("select missing_column from public.ok;\n")

    result, output = cmx_migrate(fresh_db, verbose=True, migrations_dir=str(migrations_dir))

    assert result["failed"] is True
    assert result["failed_file"] == "20240102000000_bad.sql"
    assert result["applied"] == ["20240101000000_ok.sql"]
    assert 'column "missing_column" does not exist' in result["msg"]
    assert fresh_db.password not in output
    assert (
        result["invocation"]["module_args"]["connection"]["password"] == "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER"
    )


def test_module_connects_with_a_dsn(fresh_db):
    result, output = cmx_migrate(
        fresh_db, "--check", connection={"dsn": fresh_db.url.replace("?sslmode=disable", "")}
    )
    assert result.get("failed") is not True, result
    assert result["pending"] == MIGRATION_FILES
    assert fresh_db.password not in output


def test_documentation_matches_the_argument_spec():
    """A small stand-in for ansible-test validate-modules (which needs network to bootstrap)."""
    documented = yaml.safe_load(module_source.DOCUMENTATION)["options"]
    yaml.safe_load(module_source.EXAMPLES)
    yaml.safe_load(module_source.RETURN)

    def compare(spec: dict, docs: dict, path: str):
        assert set(spec) == set(docs), path
        for name, option in spec.items():
            doc = docs[name]
            assert option["type"] == doc["type"], f"{path}{name}"
            assert option.get("default") == doc.get("default"), f"{path}{name}"
            assert option.get("required", False) == doc.get("required", False), f"{path}{name}"
            assert option.get("choices") == doc.get("choices"), f"{path}{name}"
            if "options" in option:
                compare(option["options"], doc["suboptions"], f"{path}{name}.")

    compare(module_source.ARGUMENT_SPEC, documented, "")
    secrets = module_source.ARGUMENT_SPEC["connection"]["options"]
    assert secrets["password"]["no_log"] and secrets["dsn"]["no_log"]
