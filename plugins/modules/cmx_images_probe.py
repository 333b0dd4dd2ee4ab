#!/usr/bin/python
# Copyright: CleanMateX DevOps
# Apache License 2.0 (see galaxy.yml)
"""Probe module of cleanmatex.infra's images role: apt mirror, mmdebstrap, architecture, present images."""

from __future__ import annotations

DOCUMENTATION = r"""
module: cmx_images_probe
short_description: Read the Debian mirror from the host's apt configuration and look for mmdebstrap
description:
  - Reads C(/etc/apt/sources.list), C(/etc/apt/sources.list.d/*.list) (one-line format) and
    C(/etc/apt/sources.list.d/*.sources) (deb822) and returns the URI of the first enabled
    C(deb) source that serves a Debian suite. The images role builds its base image from that
    mirror, so no mirror host name is ever written into the project.
  - Also reports whether C(mmdebstrap) is on PATH and the machine architecture.
  - Read-only; supports check mode.
options:
  apt_dir:
    description: apt configuration directory (tests point it elsewhere).
    type: path
    default: /etc/apt
  warnings:
    description: Messages to show as Ansible warnings (lets the role warn without an extra task).
    type: list
    elements: str
    default: []
  docker_host:
    description:
      - Docker daemon to list the images of. Only C(unix://) sockets are read here (one
        C(GET /images/json)); for anything else RV(images) is null and the role asks
        community.docker.docker_image_info instead.
      - Defaults to the C(DOCKER_HOST) environment variable, then C(unix:///var/run/docker.sock).
    type: str
author: CleanMateX DevOps
"""

EXAMPLES = r"""
- name: Probe the Docker host
  cleanmatex.infra.cmx_images_probe:
  register: probe

- name: Show the mirror the base image would be built from
  ansible.builtin.debug:
    var: probe.mirror
"""

RETURN = r"""
mirror:
  description: URI of the Debian mirror, without a trailing slash; empty when none was found.
  type: str
  returned: always
mirror_file:
  description: The apt source file the mirror was read from.
  type: str
  returned: always
mmdebstrap:
  description: Path of mmdebstrap, empty when it is not installed.
  type: str
  returned: always
arch:
  description: Machine architecture (platform.machine()), e.g. x86_64.
  type: str
  returned: always
images:
  description: Every C(repository:tag) on the Docker host; null when the daemon could not be asked.
  type: list
  elements: str
  returned: always
images_error:
  description: Why RV(images) is null.
  type: str
  returned: always
"""

import glob
import http.client
import json
import os
import platform
import re
import shutil
import socket

from ansible.module_utils.basic import AnsibleModule

# Debian release names and aliases. Suites with a suffix (-updates, -security, -backports) and
# other distributions' suites (Ubuntu's jammy, noble, ...) are not the main Debian archive.
DEBIAN_SUITES = {
    "buster", "bullseye", "bookworm", "trixie", "forky", "duke", "sid",
    "oldoldstable", "oldstable", "stable", "testing", "unstable", "experimental",
}  # fmt: skip
USABLE_SCHEMES = ("http://", "https://", "file:/", "mirror+http://", "mirror+https://", "mirror+file:/")


def parse_one_line(text, path=""):
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


def parse_deb822(text, path=""):
    """Entries of a deb822 .sources file (paragraphs of Types/URIs/Suites/Components/Enabled)."""
    entries = []
    paragraph = {}
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


def read_sources(apt_dir="/etc/apt"):
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


def _is_debian_suite(suite):
    return suite.rstrip("/") in DEBIAN_SUITES


def find_mirror(entries):
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


class _UnixHTTPConnection(http.client.HTTPConnection):
    """HTTP over a Unix socket (the Docker Engine API)."""

    def __init__(self, path, timeout=10):
        super().__init__("localhost", timeout=timeout)
        self._socket_path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self._socket_path)


def docker_image_tags(docker_host):
    """(['repo:tag', ...], '') from the Docker Engine API, or (None, reason)."""
    if not docker_host.startswith("unix://"):
        return None, f"not a unix socket: {docker_host}"
    path = docker_host[len("unix://") :]
    try:
        conn = _UnixHTTPConnection(path)
        try:
            conn.request("GET", "/images/json")
            response = conn.getresponse()
            body = response.read()
        finally:
            conn.close()
    except OSError as exc:
        return None, f"{docker_host}: {exc}"
    if response.status != 200:
        return None, f"{docker_host}: HTTP {response.status} {body[:200]!r}"
    try:
        images = json.loads(body)
    except ValueError as exc:
        return None, f"{docker_host}: invalid JSON ({exc})"
    tags = sorted(
        {tag for image in images for tag in (image.get("RepoTags") or []) if tag != "<none>:<none>"}
    )
    return tags, ""


def main():
    module = AnsibleModule(
        argument_spec={
            "apt_dir": {"type": "path", "default": "/etc/apt"},
            "warnings": {"type": "list", "elements": "str", "default": []},
            "docker_host": {"type": "str"},
        },
        supports_check_mode=True,
    )
    for message in module.params["warnings"]:
        module.warn(message)
    mirror, mirror_file = find_mirror(read_sources(module.params["apt_dir"]))
    docker_host = (
        module.params["docker_host"] or os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
    )
    images, images_error = docker_image_tags(docker_host)
    module.exit_json(
        changed=False,
        mirror=mirror,
        mirror_file=mirror_file,
        mmdebstrap=shutil.which("mmdebstrap") or "",
        arch=platform.machine(),
        images=images,
        images_error=images_error,
    )


if __name__ == "__main__":
    main()
