"""Fast re-run decision: same fingerprint and every container healthy, or a reason to converge."""

from __future__ import annotations

from ansible_collections.cleanmatex.infra.plugins.filter.fingerprint import tree_hash
from ansible_collections.cleanmatex.infra.plugins.module_utils.stack_state import (
    STAMP,
    stamp_content,
    why_not_up_to_date,
)

HEALTHY = {"cmx-postgres": ("running", "healthy"), "cmx-redis": ("running", "healthy")}


def test_no_stamp_means_a_full_converge(tmp_path):
    assert why_not_up_to_date(str(tmp_path), "abc", ["cmx-postgres"], HEALTHY) == [
        f"no record of a completed converge in {tmp_path}"
    ]


def test_same_fingerprint_and_healthy_containers_is_up_to_date(tmp_path):
    (tmp_path / STAMP).write_text(stamp_content("abc"))
    assert why_not_up_to_date(str(tmp_path), "abc", ["cmx-postgres", "cmx-redis"], HEALTHY) == []


def test_changed_fingerprint_and_unhealthy_or_missing_containers_are_reasons(tmp_path):
    (tmp_path / STAMP).write_text(stamp_content("abc"))
    states = {"cmx-postgres": ("running", "starting"), "cmx-redis": ("exited", "unhealthy")}
    reasons = why_not_up_to_date(str(tmp_path), "xyz", ["cmx-postgres", "cmx-redis", "cmx-health"], states)
    assert reasons == [
        "the inventory or the collection changed since the last converge",
        "cmx-postgres is starting",
        "cmx-redis is exited",
        "cmx-health is missing",
    ]


def test_tree_hash_follows_content_and_paths_not_mtimes(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "f.txt").write_text("one")
    first = tree_hash([str(tmp_path / "a")])
    (tmp_path / "a" / "f.txt").write_text("one")
    assert tree_hash([str(tmp_path / "a")]) == first
    (tmp_path / "a" / "f.txt").write_text("two")
    assert tree_hash([str(tmp_path / "a")]) != first
    (tmp_path / "a" / "f.txt").write_text("one")
    (tmp_path / "a" / "f.txt").rename(tmp_path / "a" / "g.txt")
    assert tree_hash([str(tmp_path / "a")]) != first
