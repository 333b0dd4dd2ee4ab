"""User, database and bucket names the stack is built with follow one pattern each (env_schema's
STACK_NAME_RULES): a name the stack cannot write safely into SQL, pgbouncer.ini or a URL stops the
validation with a message naming the inventory variable, the pattern and a fix."""

from __future__ import annotations

import pytest
from ansible_collections.cleanmatex.infra.plugins.module_utils.env_validate import validate_mapping
from test_env_support import base_stack, base_values, run_module

PG_NAME_PATTERN = "^[a-z_][a-z0-9_]{0,62}$"


def problems_for(key: str, value: str, environment: str = "dev") -> list[str]:
    values = base_values(environment)
    stack = {**base_stack(environment), key: value}
    variable = f"cmx_{key}"
    return [
        problem.text
        for problem in validate_mapping(values, environment, stack).errors
        if problem.variable == variable
    ]


@pytest.mark.parametrize(
    ("name", "suggestion"),
    [
        ("cmx_dbä", "cmx_db"),
        ("Cmx_DB", "cmx_db"),
        ("cmx db", "cmx_db"),
        ('cmx"db', "cmx_db"),
        ("cmx-db", "cmx_db"),
        ("1cmx", "_1cmx"),
        ("$user", "user"),
        ("x" * 64, "x" * 63),
    ],
)
@pytest.mark.parametrize("key", ["postgres_user", "postgres_db"])
def test_postgres_names_outside_the_pattern_are_refused(key, name, suggestion):
    (text,) = problems_for(key, name)
    assert text.startswith(f"cmx_{key}: {name!r} cannot be used as a name")
    assert PG_NAME_PATTERN in text
    assert f"rename it in the inventory, e.g. {suggestion}" in text


@pytest.mark.parametrize("name", ["cmx_user", "_private", "a", "x" * 63, "app_2"])
@pytest.mark.parametrize("key", ["postgres_user", "postgres_db"])
def test_postgres_names_inside_the_pattern_pass(key, name):
    assert problems_for(key, name) == []


def test_bucket_names_follow_the_s3_rules():
    (text,) = problems_for("s3_bucket", "Cmx_Bucket")
    assert "cmx_s3_bucket" in text and "an S3 bucket name" in text
    assert problems_for("s3_bucket", "cleanmatex-dev") == []


def test_the_module_reports_it_too():
    stack = {**base_stack("staging"), "postgres_db": "cmx db"}
    result = run_module({"environment": "staging", "values": base_values("staging"), "stack": stack})
    assert result["failed"]
    assert "cmx_postgres_db: 'cmx db' cannot be used as a name" in result["msg"]
