"""Drift detection compares content, not statement lists (no database needed).

A history row may come from this module or from the Supabase CLI, whose splitter cuts some files at other
places. Layout (white space and ';' between tokens) must not count; any other edit must.
"""

import pytest
from ansible_collections.cleanmatex.infra.plugins.module_utils.migrations import (
    AppliedMigration,
    MigrationFile,
    plan_migrations,
    split_statements,
    sql_fingerprint,
    statements_match_file,
)
from ansible_collections.cleanmatex.infra.tests.unit.test_migrations_split import SPLIT_CASES


@pytest.mark.parametrize("sql", [sql for sql, _ in SPLIT_CASES.values()], ids=SPLIT_CASES.keys())
def test_our_own_split_always_matches(sql):
    assert statements_match_file(sql, [statement.text for statement in split_statements(sql)])


# (file, statements recorded by some splitter): same content, cut or laid out differently.
SAME_CONTENT = {
    "cut inside an E string": (
        r"select E'it\'s; pressed'; select 2;",
        [r"select E'it\'s", "pressed'", "select 2"],
    ),
    "cut inside parentheses": (
        "create rule r as on delete to orders do also (delete from a; delete from b);",
        ["create rule r as on delete to orders do also (delete from a", "delete from b)"],
    ),
    "cut inside a begin atomic body": (
        "create function f() returns int language sql begin atomic select 1; end;\nselect 2;",
        ["create function f() returns int language sql begin atomic select 1", "end", "select 2"],
    ),
    "not cut at all": ("select 1; select 2;", ["select 1; select 2"]),
    "separators dropped or doubled": ("select 1;;\n;select 2", ["select 1", "select 2"]),
    "nothing but separators": (" ;\n;", []),
    "re-indented": (
        "create table garments(\n  id int,\n  label text\n);\n",
        ["create table garments (id int, label text)"],
    ),
    "trailing white space of a line comment": (
        "select 1 -- note   \n  + 1;",
        ["select 1 -- note\n+ 1"],
    ),
}


@pytest.mark.parametrize(("sql", "recorded"), SAME_CONTENT.values(), ids=SAME_CONTENT.keys())
def test_layout_and_cut_points_do_not_count(sql, recorded):
    assert statements_match_file(sql, recorded)


# (file, statements recorded when it was applied): the file was edited since.
EDITED = {
    "statement added": ("select 1; select 2;", ["select 1"]),
    "statement removed": ("select 1;", ["select 1", "select 2"]),
    "statements swapped": ("select 2; select 1;", ["select 1", "select 2"]),
    "literal changed": ("insert into t values ('wash');", ["insert into t values ('dry')"]),
    "space inside a literal": ("select 'two  spaces';", ["select 'two spaces'"]),
    "space inside a quoted identifier": ('select "a b";', ['select "a  b"']),
    "dollar body changed": ("do $$ begin null; end $$;", ["do $$ begin perform 1; end $$"]),
    "words merged": ("select a b;", ["select ab"]),
    "comment added": ("-- why\nselect 1;", ["select 1"]),
    "comment edited": ("select 1; /* v2 */", ["select 1", "/* v1 */"]),
    "number changed": ("select 10;", ["select 1"]),
}


@pytest.mark.parametrize(("sql", "recorded"), EDITED.values(), ids=EDITED.keys())
def test_content_edits_count(sql, recorded):
    assert not statements_match_file(sql, recorded)


def test_fingerprint_keeps_quoted_text_and_comments_whole():
    assert sql_fingerprint("select  'a ;b' ;\n-- note  \n") == ["select", "'a ;b'", "-- note"]


def migration(version: str, sql: str) -> MigrationFile:
    return MigrationFile(version, "case", f"/nowhere/{version}_case.sql", sql)


def test_plan_reports_drift_only_for_changed_content():
    files = [
        migration("1", "select E'x\\'; y';\nselect 2;"),
        migration("2", "select 'new';"),
        migration("3", "select 3;"),
        migration("4", "select 4;"),
    ]
    applied = {
        "1": AppliedMigration("1", "case", ["select E'x\\'", "y'", "select 2"]),  # another splitter
        "2": AppliedMigration("2", "case", ["select 'old'"]),
        "3": AppliedMigration("3", "case", None),  # recorded without statements
        "9": AppliedMigration("9", "gone", ["select 9"]),
    }
    plan = plan_migrations(files, applied)
    assert [item["version"] for item in plan.drift] == ["2", "9"]
    assert plan.drift[0]["file"] == "2_case.sql"
    assert plan.drift[1]["file"] is None
    assert plan.unverified == ["3_case.sql"]
    assert [item.version for item in plan.pending] == ["4"]
    assert plan.out_of_order == ["4_case.sql"]
    assert plan.already_applied == 3
