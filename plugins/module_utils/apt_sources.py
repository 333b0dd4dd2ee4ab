"""The Debian mirror a host's apt already uses, read from its sources (one-line and deb822 files).

Plain Python, unit-tested; the images role builds its base image from that mirror, so no mirror
host name is ever written into the project.
"""

from __future__ import annotations

import glob
import os
import re

# Debian release names and aliases. Suites with a suffix (-updates, -security, -backports) and
# other distributions' suites (Ubuntu's jammy, noble, ...) are not the main Debian archive.
DEBIAN_SUITES = {
    "buster", "bullseye", "bookworm", "trixie", "forky", "duke", "sid",
    "oldoldstable", "oldstable", "stable", "testing", "unstable", "experimental",
}  # fmt: skip
USABLE_SCHEMES = ("http://", "https://", "file:/", "mirror+http://", "mirror+https://", "mirror+file:/")


def parse_one_line(text: str, path: str = "") -> list[dict]:
    """Entries of a one-line-style sources file: dicts with types, uris, suites, components."""
    entries = []
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        line = re.sub(r"\[[^\]]*\]", " ", line, count=1)  # [arch=amd64 signed-by=...]
        fields = line.split()
        if len(fields) < 3:
            continue
        entries.append(
            {
                "types": [fields[0]],
                "uris": [fields[1]],
                "suites": [fields[2]],
                "components": fields[3:],
                "enabled": True,
                "file": path,
            }
        )
    return entries


def parse_deb822(text: str, path: str = "") -> list[dict]:
    """Entries of a deb822 .sources file (paragraphs of Types/URIs/Suites/Components/Enabled)."""
    entries = []
    paragraph: dict[str, str] = {}
    key = None

    def flush():
        if paragraph:
            entries.append(
                {
                    "types": paragraph.get("types", "").split(),
                    "uris": paragraph.get("uris", "").split(),
                    "suites": paragraph.get("suites", "").split(),
                    "components": paragraph.get("components", "").split(),
                    "enabled": paragraph.get("enabled", "yes").strip().lower() not in ("no", "false", "0"),
                    "file": path,
                }
            )

    for raw in [*text.splitlines(), ""]:
        if raw.startswith("#"):
            continue
        if not raw.strip():
            flush()
            paragraph, key = {}, None
            continue
        if raw[0] in " \t" and key:
            paragraph[key] += " " + raw.strip()
            continue
        if ":" in raw:
            key, value = raw.split(":", 1)
            key = key.strip().lower()
            paragraph[key] = value.strip()
    return entries


def read_sources(apt_dir: str = "/etc/apt") -> list[dict]:
    """All apt source entries in apt's own reading order."""
    entries = []
    main = os.path.join(apt_dir, "sources.list")
    files = [main] if os.path.isfile(main) else []
    files += sorted(
        glob.glob(os.path.join(apt_dir, "sources.list.d", "*.list"))
        + glob.glob(os.path.join(apt_dir, "sources.list.d", "*.sources"))
    )
    for path in files:
        try:
            with open(path, encoding="utf-8", errors="replace") as handle:
                text = handle.read()
        except OSError:
            continue
        parser = parse_deb822 if path.endswith(".sources") else parse_one_line
        entries.extend(parser(text, path))
    return entries


def _is_debian_suite(suite: str) -> bool:
    return suite.rstrip("/") in DEBIAN_SUITES


def find_mirror(entries: list[dict]) -> tuple[str, str]:
    """(uri, file) of the Debian archive mirror: first enabled 'deb' entry with a Debian suite.

    Falls back to an entry whose URI path ends in /debian (e.g. a Debian source on another
    distribution). Returns ('', '') when nothing fits.
    """
    usable = [
        (uri, entry)
        for entry in entries
        if entry["enabled"] and "deb" in entry["types"]
        for uri in entry["uris"]
        if uri.startswith(USABLE_SCHEMES)
    ]
    for uri, entry in usable:
        if any(_is_debian_suite(s) for s in entry["suites"]):
            return uri.rstrip("/"), entry["file"]
    for uri, entry in usable:
        if uri.rstrip("/").endswith("/debian"):
            return uri.rstrip("/"), entry["file"]
    return "", ""
