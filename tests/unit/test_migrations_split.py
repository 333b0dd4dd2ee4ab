"""Our SQL lexer and statement splitter (no database needed).

The cases follow PostgreSQL's lexical rules (manual, "SQL Syntax > Lexical Structure"): where a ';' is
text (strings, E'' strings, quoted identifiers, dollar quotes, comments) and where it is not a
separator although it is code (parentheses of a multi-action rule, BEGIN ATOMIC bodies).
"""

import pytest
from ansible_collections.cleanmatex.infra.plugins.module_utils.migrations import (
    MIGRATION_FILE_PATTERN,
    split_statements,
    sql_tokens,
)


def texts(sql: str) -> list[str]:
    return [statement.text for statement in split_statements(sql)]


# name: (file content, statements it splits into)
SPLIT_CASES = {
    "plain statements": (
        "create table garments (id int);\ninsert into garments values (1);\n",
        ["create table garments (id int)", "insert into garments values (1)"],
    ),
    "semicolon in a string": (
        "insert into notes values ('rinse; spin');\nselect 2",
        ["insert into notes values ('rinse; spin')", "select 2"],
    ),
    "doubled quote in a string": (
        "update items set label = 'Don''t bleach; ever' where id = 7; select 2",
        ["update items set label = 'Don''t bleach; ever' where id = 7", "select 2"],
    ),
    "backslash is plain text in a standard string": (
        r"update settings set drop_dir = 'D:\inbox\'; select 2",
        [r"update settings set drop_dir = 'D:\inbox\'", "select 2"],
    ),
    "backslash escapes in an E string": (
        r"select E'it\'s; pressed', e'C:\\'; select 2",
        [r"select E'it\'s; pressed', e'C:\\'", "select 2"],
    ),
    "doubled quote in an E string": (
        r"select E'collar''s;\tcuffs'; select 2",
        [r"select E'collar''s;\tcuffs'", "select 2"],
    ),
    "word ending in e is no E prefix": (
        r"select name'\'; select 2",
        [r"select name'\'", "select 2"],
    ),
    "quoted identifier": (
        'create table "wash;dry" ("say ""hi"";" text); select 2',
        ['create table "wash;dry" ("say ""hi"";" text)', "select 2"],
    ),
    "dollar quoted body": (
        "do $$ begin perform pg_sleep(0); end $$; select 2",
        ["do $$ begin perform pg_sleep(0); end $$", "select 2"],
    ),
    "tagged dollar quote holds other tags": (
        "create function f() returns text language sql as $fn$ select $$a;b$$ $fn$; select 2",
        ["create function f() returns text language sql as $fn$ select $$a;b$$ $fn$", "select 2"],
    ),
    "dollar tags are case sensitive": (
        "select $Note$ $note$; $Note$; select 2",
        ["select $Note$ $note$; $Note$", "select 2"],
    ),
    "positional parameter is no dollar quote": (
        "prepare by_tenant(uuid) as select * from orders where tenant_id = $1; select 2",
        ["prepare by_tenant(uuid) as select * from orders where tenant_id = $1", "select 2"],
    ),
    "dollar signs inside an identifier are no quote": (
        "select 1 as price$$; select 2",
        ["select 1 as price$$", "select 2"],
    ),
    "line comment hides a semicolon": (
        "select 1 -- first; no separator\n; select 2",
        ["select 1 -- first; no separator", "select 2"],
    ),
    "line comment ends at a carriage return": (
        "select 1 -- note\r; select 2",
        ["select 1 -- note", "select 2"],
    ),
    "single minus and slash are operators": (
        "select 4 - 1; select 8 / 2; select 2",
        ["select 4 - 1", "select 8 / 2", "select 2"],
    ),
    "nested block comment": (
        "select /* outer /* inner; */ still outer; */ 1; select 2",
        ["select /* outer /* inner; */ still outer; */ 1", "select 2"],
    ),
    "comment markers inside quoted text": (
        "select '--', '/*', \"--x\"; select 2",
        ["select '--', '/*', \"--x\"", "select 2"],
    ),
    "quotes inside comments": (
        "-- don't\nselect 1; /* \"x $$ */ select 2",
        ["-- don't\nselect 1", '/* "x $$ */ select 2'],
    ),
    "rule with several actions in parentheses": (
        "create rule archive as on delete to orders do also"
        " (insert into order_log values ((old.id)); notify orders); select 2",
        [
            "create rule archive as on delete to orders do also"
            " (insert into order_log values ((old.id)); notify orders)",
            "select 2",
        ],
    ),
    "begin atomic body with a case expression": (
        "create function band(kg numeric) returns text language sql\n"
        "begin atomic\n"
        "  select case when kg > 10 then 'bulk' else 'single' end;\n"
        "  select s.end from shifts s;\n"
        "end;\n"
        "select 2",
        [
            "create function band(kg numeric) returns text language sql\n"
            "begin atomic\n"
            "  select case when kg > 10 then 'bulk' else 'single' end;\n"
            "  select s.end from shifts s;\n"
            "end",
            "select 2",
        ],
    ),
    "begin and end of a transaction": (
        "BEGIN; update orders set status = 'ready'; END;",
        ["BEGIN", "update orders set status = 'ready'", "END"],
    ),
    "atomic without begin is a name": (
        "select atomic from flags; select 2",
        ["select atomic from flags", "select 2"],
    ),
    "unterminated string runs to the end": (
        "select 1; select 'oops; select 2",
        ["select 1", "select 'oops; select 2"],
    ),
    "unterminated block comment runs to the end": (
        "select 1; /* open; select 2",
        ["select 1", "/* open; select 2"],
    ),
    "empty statements and white space": (
        " ;;\n\t; select 1 ;;\n ;",
        ["select 1"],
    ),
    "comment-only statement is kept": (
        "select 1;\n-- closing remark\n",
        ["select 1", "-- closing remark"],
    ),
    "windows line endings": (
        "select 1;\r\nselect 2;\r\n",
        ["select 1", "select 2"],
    ),
    "non-ASCII text": (
        "insert into customers (name) values ('Zoë; Ünal'); select 'ü'",
        ["insert into customers (name) values ('Zoë; Ünal')", "select 'ü'"],
    ),
}


@pytest.mark.parametrize(("sql", "expected"), SPLIT_CASES.values(), ids=SPLIT_CASES.keys())
def test_statements_are_cut_at_top_level_semicolons(sql, expected):
    assert texts(sql) == expected


@pytest.mark.parametrize("sql", [sql for sql, _ in SPLIT_CASES.values()], ids=SPLIT_CASES.keys())
def test_tokens_cover_the_text_without_gaps(sql):
    position = 0
    for _kind, start, end in sql_tokens(sql):
        assert start == position < end
        position = end
    assert position == len(sql)


@pytest.mark.parametrize(
    ("sql", "kinds"),
    [
        ("a$b", ["word"]),
        ("$1", ["other", "word"]),
        ("$$x$$", ["quoted"]),
        ("$a$x", ["quoted"]),  # unterminated: the rest of the text
        ("E'\\''", ["quoted"]),
        ("'\\'x", ["quoted", "word"]),  # no escapes in a standard string
        ("'\\''", ["quoted"]),  # ... but a doubled quote: unterminated
        ("x'a'", ["word", "quoted"]),
        ('"a""b"', ["quoted"]),
        ("/*/ */", ["comment"]),
        ("--x\ny", ["comment", "space", "word"]),
        ("a.b(1);", ["word", "other", "word", "open", "word", "close", "semicolon"]),
        ("a\u00a0b", ["word", "space", "word"]),
    ],
)
def test_token_kinds(sql, kinds):
    assert [kind for kind, _, _ in sql_tokens(sql)] == kinds


def test_statements_know_their_line_and_column():
    sql = "-- header\nselect 1;\n\n   select\n 2;"
    statements = split_statements(sql)
    assert [(s.line, s.column) for s in statements] == [(1, 1), (4, 4)]
    assert statements[0].text == "-- header\nselect 1"


def test_columns_count_characters_not_bytes():
    statements = split_statements("select 'ß€'; select 2")
    assert statements[1].column == 14  # 17 if bytes were counted


def test_empty_input_has_no_statements():
    assert texts("") == []
    assert texts("  \n\t;") == []


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
