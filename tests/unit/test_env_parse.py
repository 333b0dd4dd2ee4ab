"""Env file parsing: comments, export, quotes, duplicates, CRLF... and the quoting the role renders with."""

from __future__ import annotations

import json

import pytest
from ansible_collections.cleanmatex.infra.plugins.module_utils.env_validate import (
    Report,
    dotenv_value,
    parse_env,
    validate_file,
)
from test_env_support import base_values, env_text, run_cli, run_module


def parse(text):
    report = Report("dev", ".env")
    parse_env(text, report)
    return report


def test_understands_comments_export_quotes_and_inline_comments():
    report = parse(
        "# a comment\n"
        "\n"
        "   # indented comment\n"
        "export NODE_ENV=development\n"
        "PLAIN=value # trailing comment\n"
        "SPACED = spaced value  \n"
        "SINGLE='literal $HOME \\n # not a comment'\n"
        'DOUBLE="line\\nbreak \\"quoted\\" back\\\\slash" # comment\n'
        "EMPTY=\n"
        "EMPTY_QUOTED=''\n"
        "URL=postgresql://u:p%40ss@localhost:5432/db?sslmode=disable\n"
        "HASH_IN_QUOTES='a#b'\n"
    )
    assert report.problems == []
    assert report.values == {
        "NODE_ENV": "development",
        "PLAIN": "value",
        "SPACED": "spaced value",
        "SINGLE": "literal $HOME \\n # not a comment",
        "DOUBLE": 'line\nbreak "quoted" back\\slash',
        "EMPTY": "",
        "EMPTY_QUOTED": "",
        "URL": "postgresql://u:p%40ss@localhost:5432/db?sslmode=disable",
        "HASH_IN_QUOTES": "a#b",
    }
    assert report.lines["NODE_ENV"] == 4 and report.lines["HASH_IN_QUOTES"] == 12


def test_quoted_values_may_span_lines():
    report = parse('KEY="first\nsecond"\nNEXT=1\n')
    assert report.values == {"KEY": "first\nsecond", "NEXT": "1"}
    assert report.lines == {"KEY": 1, "NEXT": 3}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            "A=1\r\nB=2\r\n",
            ("error", None, 1, "has Windows (CRLF) line endings on 2 lines, from line 1 on"),
            id="crlf",
        ),
        pytest.param(
            "A=1\nB=2\r\n",
            ("error", None, 2, "has Windows (CRLF) line endings on 1 line, from line 2 on"),
            id="crlf-one-line",
        ),
        pytest.param("A=1\nA=2\n", ("error", "A", 2, "is defined again (first on line 1)"), id="duplicate"),
        pytest.param(
            "A=1\njust words\n", ("error", None, 2, "is not a NAME=value assignment"), id="not-assignment"
        ),
        pytest.param(
            "1A=1\n", ("error", None, 1, "the name before '=' is not a valid variable name"), id="bad-name"
        ),
        pytest.param(
            "A-B=1\n", ("error", None, 1, "the name before '=' is not a valid variable name"), id="dash"
        ),
        pytest.param(
            'A="open\nB=2\n', ("error", "A", 1, "the double quote opened here is never closed"), id="dquote"
        ),
        pytest.param(
            "A='open\n", ("error", "A", 1, "the single quote opened here is never closed"), id="squote"
        ),
        pytest.param("A='x' y\n", ("error", "A", 1, "has text after the closing quote"), id="trailing"),
        pytest.param("\ufeffA=1\n", ("warning", None, 1, "starts with a UTF-8 byte order mark"), id="bom"),
        pytest.param("A=a#b\n", ("warning", "A", 1, "has an unquoted '#'"), id="unquoted-hash"),
    ],
)
def test_file_problems_name_the_line(text, expected):
    report = parse(text)
    found = [(p.severity, p.variable, p.line, p.message) for p in report.problems]
    assert any(f[:3] == expected[:3] and f[3].startswith(expected[3]) for f in found), (
        f"{expected} not in {found}"
    )


def test_duplicate_keeps_the_last_value_and_the_first_line():
    report = parse("A=1\nA=2\n")
    assert report.values == {"A": "2"} and report.lines == {"A": 1}


def test_crlf_file_still_parses_every_value():
    report = parse("A=1\r\nB='two'\r\n")
    assert report.values == {"A": "1", "B": "two"}


@pytest.mark.parametrize(
    "value",
    [
        "",
        "plain",
        "postgresql://cmx_user:cmx_pass_dev@localhost:5432/cmx_db",
        "base64+/==",
        "with space",
        "hash#inside",
        "dollar$HOME",
        "it's",
        "both ' and \"",
        "back\\slash 'q'",
        "multi\nline 'x'",
        "tab\tinside",
    ],
)
def test_dotenv_value_round_trips(value):
    report = parse(f"KEY={dotenv_value(value)}\n")
    assert report.values == {"KEY": value}
    assert [p for p in report.problems if p.severity == "error"] == []


def test_validate_file_names_missing_variables_without_a_line(tmp_path):
    path = tmp_path / ".env"
    path.write_text("NODE_ENV=development\n", encoding="utf-8")
    report = validate_file(str(path), "dev")
    missing = next(p for p in report.errors if p.variable == "DATABASE_URL")
    assert missing.line is None
    assert missing.text.startswith(
        f"{path}: DATABASE_URL: is missing (required in dev); expected postgresql://"
    )


FILE_CASES = [
    pytest.param("crlf", lambda text: text.replace("\n", "\r\n"), id="crlf"),
    pytest.param("duplicate", lambda text: text + "REDIS_DB=1\n", id="duplicate"),
    pytest.param("garbage", lambda text: text + "this is not an assignment\n", id="garbage"),
    pytest.param("unterminated", lambda text: text + 'JWT_SECRT="open\n', id="unterminated"),
    pytest.param(
        "export-and-comments",
        lambda text: "# header\n" + text.replace("NODE_ENV=", "export NODE_ENV="),
        id="export-and-comments",
    ),
]


@pytest.mark.parametrize(("name", "mutate"), FILE_CASES)
def test_file_verdicts_are_identical_in_module_and_cli(tmp_path, name, mutate):
    path = tmp_path / f"{name}.env"
    path.write_bytes(mutate(env_text(base_values("dev"))).encode())
    library = validate_file(str(path), "dev")
    cli = run_cli("validate", "--env", "dev", "--format", "json", str(path))
    module = run_module({"environment": "dev", "path": str(path)})
    texts = [p.text for p in library.problems]
    assert [p["text"] for p in json.loads(cli.stdout)[0]["problems"]] == texts
    assert [p["text"] for p in module["problems"]] == texts
    assert cli.returncode == (0 if library.valid else 1)
    assert module.get("failed", False) is not library.valid
    assert library.valid is (name == "export-and-comments")
