"""The statement splitter must cut SQL exactly where the Supabase CLI 2.117 does (no database needed)."""

import pytest
from ansible_collections.cleanmatex.infra.plugins.module_utils.migrations import (
    MIGRATION_FILE_PATTERN,
    split_statements,
    token_ranges,
)


def raw_tokens(sql: str) -> list[str]:
    data = sql.encode()
    return [data[start:end].decode() for start, end in token_ranges(data)]


def texts(sql: str) -> list[str]:
    return [statement.text for statement in split_statements(sql.encode())]


# Each case is the list of raw tokens the CLI's parser.Split emits; the input is their concatenation.
CLI_TOKENS = {
    "line comment hides separator": ["SELECT 1 -- no split here; really\n;", " SELECT 2"],
    "dash alone is not a comment": ["SELECT 3 - 1;", " SELECT 4"],
    "comment ends at newline": ["-- note\nSELECT 5;", "\n"],
    "block comment hides separator": ["SELECT /* ; */ 6;"],
    "nested block comments": ["SELECT /* a; /* b; */ c; */ 7;", " SELECT 8"],
    "slash star apart is not a comment": ["SELECT 8 / 2;", "*/"],
    "bare separators": [";", "SELECT 9;", ";"],
    "backslash escapes separator": ["SELECT 1 \\;;", " SELECT 10"],
    "backslash inside quotes is literal": ["SELECT 'C:\\';", " SELECT 10"],
    "named dollar quote": ["DO $body$ BEGIN PERFORM 1; END $body$;", " SELECT 11"],
    "anonymous dollar quote": ["SELECT $$it's; fine$$;", " SELECT 12"],
    "positional parameter is not a tag": ["PREPARE p AS SELECT $1;", " SELECT 13"],
    "single quote hides separator": ["SELECT 'a;b';", " SELECT 14"],
    "doubled single quote": ["SELECT 'it''s; ok';", " SELECT 15"],
    "double quoted identifier": ['CREATE TABLE "semi;colon" (id int);', " SELECT 16"],
    "parentheses hold separators": [
        "CREATE RULE r AS ON INSERT TO t DO ALSO (NOTIFY t; SELECT 1);",
        "SELECT 17",
    ],
    "begin atomic body": [
        "CREATE FUNCTION f() RETURNS int LANGUAGE sql\nBEGIN ATOMIC\n  SELECT 1;\n  SELECT 2;\nEND;",
        "\nSELECT 18",
    ],
    "atomic inside an identifier": [
        "CREATE FUNCTION public.atomic_counter() RETURNS int LANGUAGE plpgsql AS $$ BEGIN RETURN 1; END $$;",
        "\nSELECT 19;",
    ],
    "utf-8 text": ["INSERT INTO t VALUES ('café; crème');", " SELECT '日本'"],
}


@pytest.mark.parametrize("tokens", CLI_TOKENS.values(), ids=CLI_TOKENS.keys())
def test_raw_tokens_match_the_cli(tokens):
    assert raw_tokens("".join(tokens)) == tokens


def test_nested_parentheses_keep_the_cli_quirk():
    # The CLI leaves the ( ... ) state at the first ')' even when nested; matching it keeps
    # recorded statements identical to `supabase db push`.
    assert raw_tokens("SELECT ((1); 2); SELECT 3") == ["SELECT ((1);", " 2);", " SELECT 3"]


def test_statements_are_trimmed_and_empty_ones_dropped():
    sql = "\n\n  CREATE TABLE a (id int);;\n\n;  \nSELECT 1  ;\n-- trailing comment\n"
    assert texts(sql) == ["CREATE TABLE a (id int)", "SELECT 1", "-- trailing comment"]


def test_statements_know_their_line_and_column():
    sql = "-- header\nSELECT 1;\n\n   SELECT\n 2;"
    statements = split_statements(sql.encode())
    assert [(s.line, s.column) for s in statements] == [(1, 1), (4, 4)]
    assert statements[0].text == "-- header\nSELECT 1"


def test_columns_count_characters_not_bytes():
    statements = split_statements("SELECT 'é'; SELECT 2".encode())
    assert statements[1].column == 13


def test_empty_input_has_no_statements():
    assert texts("") == []
    assert texts("  \n\t") == []


@pytest.mark.parametrize(
    ("filename", "version", "name"),
    [
        ("20250601000000_tenancy.sql", "20250601000000", "tenancy"),
        ("1_a_b.sql", "1", "a_b"),
        ("20250601000000_.sql", "20250601000000", ""),
    ],
)
def test_version_is_the_leading_digits(filename, version, name):
    assert MIGRATION_FILE_PATTERN.match(filename).groups() == (version, name)


@pytest.mark.parametrize(
    "filename", ["tenancy.sql", "v1_tenancy.sql", "20250601000000-tenancy.sql", "1_a.txt"]
)
def test_other_file_names_are_not_migrations(filename):
    assert MIGRATION_FILE_PATTERN.match(filename) is None
