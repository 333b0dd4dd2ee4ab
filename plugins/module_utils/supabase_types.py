# Copyright: CleanMateX DevOps
# Apache License 2.0 (see galaxy.yml)
"""Type generation of the supabase role (`supabase gen types typescript --db-url`) with no registry.

The pinned Supabase CLI runs its postgres-meta image for `gen types typescript --db-url` and uses an
image of the exact name it looks for when one is present, without pulling. The images role builds that
image from the npm package of the same version; everything here is pure (no Docker, no network):

- `services_images(text)` / `postgres_meta_tag(text)`: the image list of `supabase services` (the
  version is read from the pinned CLI, never typed in the project);
- `cli_image_ref(tag, registry)`: the name the CLI looks for (public.ecr.aws/supabase/<name>:<tag>
  by default, supabase/<name>:<tag> with SUPABASE_INTERNAL_IMAGE_REGISTRY=docker.io);
- `lock_version(lock)`: the version of @supabase/postgres-meta in the image's package-lock.json;
- `db_url(...)`: the --db-url for the stack's PostgreSQL as the host sees it.
"""

from __future__ import annotations

import json
import re
import urllib.parse

POSTGRES_META_IMAGE = "supabase/postgres-meta"
NPM_PACKAGE = "@supabase/postgres-meta"
# GetRegistryImageUrl of the CLI: the default registry, and the value that keeps Docker Hub's short name.
DEFAULT_REGISTRY = "public.ecr.aws"
DOCKER_HUB = "docker.io"
SSLMODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")

# `supabase services` prints a table: "   SERVICE IMAGE | LOCAL | LINKED", a rule, then one row per
# image, e.g. "   supabase/postgres-meta | v0.99.0 | -". Only rows whose first cell is an image name count.
_ROW = re.compile(r"^\s*(?P<image>[a-z0-9][a-z0-9._/-]*/[a-z0-9._-]+)\s*\|\s*(?P<local>\S+)\s*(?:\|.*)?$")


class SupabaseTypesError(ValueError):
    """Input the role cannot work with; the message says what and where."""


def services_images(text: str) -> dict[str, str]:
    """{image: local tag} from the output of `supabase services` (ANSI colours tolerated)."""
    images = {}
    for raw in re.sub(r"\x1b\[[0-9;]*m", "", text or "").splitlines():
        match = _ROW.match(raw)
        if match:
            images[match["image"]] = match["local"]
    return images


def postgres_meta_tag(text: str) -> str:
    """The postgres-meta tag the CLI runs for `gen types` (e.g. 'v0.99.0'), from `supabase services`."""
    images = services_images(text)
    tag = images.get(POSTGRES_META_IMAGE, "")
    if not re.fullmatch(r"v?\d+\.\d+\.\d+(?:[-+][0-9A-Za-z.-]+)?", tag):
        found = ", ".join(f"{k} {v}" for k, v in sorted(images.items())) or "no image rows"
        raise SupabaseTypesError(
            f"`supabase services` did not list {POSTGRES_META_IMAGE} with a version (found: {found})"
        )
    return tag


def npm_version(tag: str) -> str:
    """The npm version of a postgres-meta image tag: 'v0.99.0' -> '0.99.0'."""
    return tag[1:] if tag.startswith("v") else tag


def cli_image_ref(tag: str, registry: str = "") -> str:
    """The image reference the CLI looks for (GetRegistryImageUrl) for supabase/postgres-meta:<tag>."""
    registry = (registry or DEFAULT_REGISTRY).strip().rstrip("/").lower()
    name = f"{POSTGRES_META_IMAGE}:{tag}"
    if registry == DOCKER_HUB:
        return name
    return f"{registry}/{name}"


def lock_version(lock) -> str:
    """Version of @supabase/postgres-meta in a package-lock.json (text or parsed), '' when absent."""
    data = json.loads(lock) if isinstance(lock, str | bytes) else (lock or {})
    entry = (data.get("packages") or {}).get(f"node_modules/{NPM_PACKAGE}") or {}
    return str(entry.get("version") or "")


def db_url(host, port, user, password, database, sslmode="disable", sslrootcert="") -> str:
    """postgresql://user[:password]@host:port/database?sslmode=...[&sslrootcert=...] for --db-url."""
    host = str(host or "").strip()
    if not host:
        raise SupabaseTypesError("the stack's PostgreSQL has no host (cmx_endpoints.postgres.host)")
    if not user:
        raise SupabaseTypesError("no migration role (cmx_postgres_migration_user)")
    sslmode = str(sslmode or "disable")
    if sslmode not in SSLMODES:
        raise SupabaseTypesError(f"unknown sslmode {sslmode!r} (one of {', '.join(SSLMODES)})")
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    # No password: user only (for display; the CLI 2.117.0 does not read PGPASSWORD for --db-url).
    auth = urllib.parse.quote(str(user), safe="")
    if password:
        auth += ":" + urllib.parse.quote(str(password), safe="")
    query = {"sslmode": sslmode}
    if sslrootcert and sslmode in ("verify-ca", "verify-full", "require"):
        query["sslrootcert"] = str(sslrootcert)
    path = urllib.parse.quote(str(database or "postgres"), safe="")
    return f"postgresql://{auth}@{host}:{int(port)}/{path}?{urllib.parse.urlencode(query)}"
