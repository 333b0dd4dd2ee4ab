""".env.example, the docs table and the role's schema vars come from the schema: CI fails on drift."""

from __future__ import annotations

import pytest
from ansible_collections.cleanmatex.infra.plugins.module_utils import env_schema as schema
from ansible_collections.cleanmatex.infra.plugins.module_utils.env_validate import validate_file
from test_env_support import DEV_APP_STACK, REPO, load_cli, run_cli

CLI = load_cli()


@pytest.mark.parametrize("relative", [CLI.EXAMPLE_FILE, CLI.DOCS_FILE, CLI.ROLE_VARS_FILE])
def test_generated_file_is_up_to_date(relative):
    expected = CLI.generated_files(REPO)[relative]
    actual = (REPO / relative).read_text(encoding="utf-8")
    assert actual == expected, f"{relative} is out of date: run bin/cmx-env generate"


def test_check_command_agrees():
    result = run_cli("check")
    assert result.returncode == 0, result.stdout


def test_example_command_prints_the_committed_example():
    result = run_cli("example")
    assert result.returncode == 0
    assert result.stdout == (REPO / ".env.example").read_text(encoding="utf-8")


def test_docs_command_prints_the_table_with_every_variable():
    result = run_cli("docs")
    assert result.returncode == 0
    for entry in schema.VARIABLES:
        assert f"| `{entry['name']}` |" in result.stdout
    assert result.stdout in (REPO / "docs" / "environment.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("env", ["dev"])
def test_example_is_valid_against_the_dev_stack(env):
    report = validate_file(str(REPO / ".env.example"), env, DEV_APP_STACK)
    assert report.problems == []


def test_example_has_the_dev_stack_values():
    values = CLI.dev_values(REPO)
    assert values["DATABASE_URL"] == "postgresql://cmx_app:cmx_app_pass_dev@localhost:5432/cmx_db"
    assert values["DATABASE_POOLED_URL"] == "postgresql://cmx_app:cmx_app_pass_dev@localhost:6432/cmx_db"
    assert values["REDIS_URL"] == "redis://localhost:6379"
    assert values["S3_ENDPOINT"] == "http://localhost:9000"
    assert (values["S3_ACCESS_KEY"], values["S3_SECRET_KEY"]) == ("minioadmin", "minioadmin123")
    assert values["S3_BUCKET"] == "cleanmatex-dev"
    assert values["NODE_ENV"] == "development"
    assert values["NEXT_PUBLIC_SUPABASE_ANON_KEY"] == ""


def test_docs_markers_and_stale_detection(tmp_path):
    docs = (REPO / "docs" / "environment.md").read_text(encoding="utf-8")
    assert docs.count(CLI.DOCS_BEGIN) == 1 and docs.count(CLI.DOCS_END) == 1
    stale = docs.replace("| `JWT_SECRET` |", "| `JWT_SECRET_OLD` |")
    assert CLI.render_docs(stale) == docs
    with pytest.raises(ValueError, match="lacks the markers"):
        CLI.render_docs("no markers here")


def test_role_vars_hold_every_variable_and_environment():
    import yaml

    data = yaml.safe_load((REPO / CLI.ROLE_VARS_FILE).read_text(encoding="utf-8"))
    assert data["__env_schema_names"] == [entry["name"] for entry in schema.VARIABLES]
    assert [group["id"] for group in data["__env_groups"]] == list(schema.GROUP_IDS)
    assert set(data["__env_defaults"]) == set(schema.ENVIRONMENTS)
    for env in schema.ENVIRONMENTS:
        with_default = [e["name"] for e in schema.VARIABLES if e["default"][env] is not None]
        assert list(data["__env_defaults"][env]) == with_default
