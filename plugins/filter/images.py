# Copyright: CleanMateX DevOps
# Apache License 2.0 (see galaxy.yml)
"""Filters of the images role: content hashes, expected image tags and the pull/build plan.

Everything here runs on the control machine and is pure (no network, no Docker): the role
computes every expected tag up front, asks Docker once which of them exist, and only then
decides what to pull or build. That keeps a re-run with all images present to a few tasks.
"""

from __future__ import annotations

import hashlib
import os
import stat

MODES = ("pull", "build", "auto")
HASH_LABEL = "org.cleanmatex.inputs-hash"


def _tree_entries(root):
    """Yield (relative posix path, absolute path) for every regular file under root, sorted."""
    if not os.path.isdir(root):
        raise ValueError(f"images: build context {root!r} is not a directory")
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
        for name in filenames:
            if name.endswith(".pyc"):
                continue
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, root).replace(os.sep, "/")
            found.append((rel, full))
    return sorted(found)


def images_tree_hash(root):
    """sha256 hex digest over every file of a directory: path, executable bit and content."""
    digest = hashlib.sha256()
    for rel, full in _tree_entries(root):
        mode = os.stat(full).st_mode
        executable = "x" if mode & stat.S_IXUSR else "-"
        digest.update(f"{rel}\0{executable}\0".encode())
        with open(full, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 16), b""):
                digest.update(chunk)
        digest.update(b"\0")
    return digest.hexdigest()


def _sha12(*parts):
    digest = hashlib.sha256()
    for part in parts:
        digest.update(str(part).encode())
        digest.update(b"\0")
    return digest.hexdigest()[:12]


def images_mirror_line(mirror, suite, components="main"):
    """The one-line apt source mmdebstrap gets, e.g. 'deb <uri> trixie main' ('' without a mirror)."""
    if not mirror:
        return ""
    return f"deb {mirror.rstrip('/')} {suite} {components}"


def images_base_tag(base, mirror):
    """Tag of the Debian base image: cmx/base:<suite>-<hash of suite, packages, options, mirror line>."""
    line = images_mirror_line(mirror, base["suite"])
    if not line:
        return ""
    recipe = [
        base["suite"],
        base.get("variant", "minbase"),
        ",".join(sorted(base.get("packages", []))),
        "\n".join(base.get("options", [])),
        line,
    ]
    return f"{base['repository']}:{base['suite']}-{_sha12(*recipe)}"


def images_plan(catalog, base, mirror, files_dir):
    """Expected references of every enabled service.

    catalog: {service: {enabled, upstream, buildable, always_build, repository, version, context,
    suite, build_args, pins}}; base: {repository, suite, variant, packages, options}, suite being the
    default Debian suite; mirror: Debian mirror URI read on the target ('' when none was found);
    files_dir: the role's files/ directory.

    Returns {"base": {"tag", "mirror_line", "suite"}, "bases": {suite: {...}}, "services": {service:
    {..., "suite", "base_tag", "hash", "built"}}} where "built" is cmx/<service>:<version>-<hash12> ('' when
    it cannot be built or the base tag is unknown) and the hash covers the Dockerfile and every file of the
    build context, the build arguments, the pinned downloads and the base tag. A service built from another
    suite than the default (e.g. Redis 7 from bookworm) gets a base image of that suite ("bases").
    """
    bases = {base["suite"]: _base_entry(base, base["suite"], mirror)}
    services = {}
    for name, spec in catalog.items():
        if not spec.get("enabled", True):
            continue
        entry = dict(spec)
        entry.setdefault("upstream", "")
        entry.setdefault("always_build", False)
        entry.setdefault("buildable", True)
        entry["suite"] = entry.get("suite") or base["suite"]
        entry["build_args"] = {str(k): str(v) for k, v in (entry.get("build_args") or {}).items()}
        if entry["suite"] not in bases:
            bases[entry["suite"]] = _base_entry(base, entry["suite"], mirror)
        base_tag = bases[entry["suite"]]["tag"]
        entry["base_tag"] = base_tag
        entry["hash"] = ""
        entry["built"] = ""
        if entry["buildable"] and base_tag:
            context = os.path.join(files_dir, entry["context"])
            pins = "\n".join(f"{k}={v}" for k, v in sorted((entry.get("pins") or {}).items()))
            args = "\n".join(f"{k}={v}" for k, v in sorted(entry["build_args"].items()))
            parts = [images_tree_hash(context), pins, base_tag] + ([args] if args else [])
            full = hashlib.sha256("\0".join(parts).encode()).hexdigest()
            entry["hash"] = full
            entry["built"] = f"{entry['repository']}:{entry['version']}-{full[:12]}"
        services[name] = entry
    return {"base": bases[base["suite"]], "bases": bases, "services": services}


def _base_entry(base, suite, mirror):
    recipe = {**base, "suite": suite}
    return {
        "suite": suite,
        "tag": images_base_tag(recipe, mirror),
        "mirror_line": images_mirror_line(mirror, suite),
    }


def images_bases_missing(plan, services, present):
    """The base images (plan["bases"] entries) that building `services` needs and `present` lacks."""
    present = _present_refs(present)
    suites = sorted({plan["services"][name]["suite"] for name in services})
    return [plan["bases"][suite] for suite in suites if plan["bases"][suite]["tag"] not in present]


def images_present(image_info):
    """Sorted 'repo:tag' list from a docker_image_info result or a plain list of references."""
    return sorted(_present_refs(image_info))


def _present_refs(image_info):
    """Every 'repo:tag' of a docker_image_info result (or a plain list of refs) as a set."""
    if isinstance(image_info, dict):
        image_info = image_info.get("images", [])
    refs = set()
    for item in image_info or []:
        if isinstance(item, str):
            refs.add(item)
            continue
        for tag in item.get("RepoTags") or []:
            refs.add(tag)
    return refs


def _aliases(ref):
    """Docker Hub references as Docker lists them: 'postgres:16' == 'docker.io/library/postgres:16'."""
    names = {ref}
    if "/" not in ref.split(":", 1)[0]:
        names.add(f"docker.io/library/{ref}")
    elif "." not in ref.split("/", 1)[0] and ":" not in ref.split("/", 1)[0]:
        names.add(f"docker.io/{ref}")
    return names


def _is_present(ref, present):
    return bool(ref) and any(alias in present for alias in _aliases(ref))


def images_candidates(plan, mode):
    """Every reference docker_image_info should look up: built tags, upstream refs, the base."""
    if mode not in MODES:
        raise ValueError(f"images: cmx_image_source must be one of {', '.join(MODES)}, not {mode!r}")
    refs = [base["tag"] for base in plan.get("bases", {"": plan["base"]}).values() if base["tag"]]
    for entry in plan["services"].values():
        if entry["built"] and (mode != "pull" or entry["always_build"]):
            refs.append(entry["built"])
        if entry["upstream"] and mode != "build" and not entry["always_build"]:
            refs.append(entry["upstream"])
    return sorted(set(refs))


def images_select(plan, mode, image_info):
    """Decide per service: the reference to use and the action (use, pull or build).

    build: the locally built tag (built when missing).
    pull:  the upstream reference (pulled when missing); services without an upstream image
           (always_build, i.e. PgBouncer) are built.
    auto:  upstream if present, else the built tag if present, else pull, falling back to a
           local build when the pull fails (fallback 'build'; 'fail' when it cannot be built).
    """
    if mode not in MODES:
        raise ValueError(f"images: cmx_image_source must be one of {', '.join(MODES)}, not {mode!r}")
    present = _present_refs(image_info)
    selection = {}
    for name, entry in plan["services"].items():
        built, upstream = entry["built"], entry["upstream"]
        if entry["always_build"] or mode == "build":
            choice = {"ref": built, "origin": "built", "fallback": "fail"}
            choice["action"] = "use" if _is_present(built, present) else "build"
        elif mode == "pull":
            choice = {"ref": upstream, "origin": "upstream", "fallback": "fail"}
            choice["action"] = "use" if _is_present(upstream, present) else "pull"
        elif _is_present(upstream, present):
            choice = {"ref": upstream, "origin": "upstream", "action": "use", "fallback": "fail"}
        elif _is_present(built, present):
            choice = {"ref": built, "origin": "built", "action": "use", "fallback": "fail"}
        else:
            choice = {
                "ref": upstream,
                "origin": "upstream",
                "action": "pull",
                "fallback": "build" if entry["buildable"] else "fail",
            }
        if choice["action"] == "build" and not (entry["buildable"] and built):
            choice["action"] = "impossible"
        choice["built"] = built
        choice["upstream"] = upstream
        selection[name] = choice
    return selection


def images_pull_failed(pull_results):
    """Failed pulls of the registered docker_image loop (run with failed_when: false).

    A pull failed when the module failed or returned no image. Returns
    [{"key", "upstream", "fallback", "msg"}] in loop order.
    """
    failed = []
    for item in (pull_results or {}).get("results", []) if isinstance(pull_results, dict) else []:
        loop_item = item.get("item")
        if item.get("skipped") or not isinstance(loop_item, dict) or "key" not in loop_item:
            continue
        if item.get("failed") or item.get("failed_when_result") or not item.get("image"):
            choice = loop_item.get("value") or {}
            failed.append(
                {
                    "key": loop_item["key"],
                    "upstream": choice.get("upstream", ""),
                    "fallback": choice.get("fallback", "fail"),
                    "msg": str(item.get("msg") or "the pull returned no image").strip(),
                }
            )
    return failed


def images_refs(selection, pull_results=None):
    """Final {service: reference} for compose, applying auto-mode fallbacks after failed pulls."""
    failed = {item["key"] for item in images_pull_failed(pull_results)}
    refs = {}
    for name, choice in selection.items():
        if name in failed and choice.get("fallback") == "build":
            refs[name] = choice["built"]
        else:
            refs[name] = choice["ref"]
    return refs


def images_origins(selection, pull_results=None):
    """{service: 'upstream' | 'built'} matching images_refs."""
    refs = images_refs(selection, pull_results)
    return {
        name: ("built" if refs[name] == choice["built"] else "upstream") for name, choice in selection.items()
    }


class FilterModule:
    """Filters of the images role."""

    def filters(self):
        return {
            "images_tree_hash": images_tree_hash,
            "images_mirror_line": images_mirror_line,
            "images_base_tag": images_base_tag,
            "images_plan": images_plan,
            "images_bases_missing": images_bases_missing,
            "images_candidates": images_candidates,
            "images_select": images_select,
            "images_present": images_present,
            "images_refs": images_refs,
            "images_pull_failed": images_pull_failed,
            "images_origins": images_origins,
        }
