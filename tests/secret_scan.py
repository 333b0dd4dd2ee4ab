#!/usr/bin/env python3
"""The test command's secret scan: fail when the repository holds a secret that .secrets.baseline (the
audited findings) does not list. Findings are matched by file, type and hashed secret, not by line: editing
a file that holds a known finding needs no baseline refresh; a new secret does.

Usage: python tests/secret_scan.py [repository root, default: the current one]
Refresh the baseline after reviewing a new finding: detect-secrets scan --baseline .secrets.baseline
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

DETECT_SECRETS = Path(sys.executable).parent / "detect-secrets"


def findings(baseline: dict) -> set[tuple[str, str, str]]:
    return {
        (path, found["type"], found["hashed_secret"])
        for path, found_in_file in baseline["results"].items()
        for found in found_in_file
    }


def new_findings(root: Path) -> list[tuple[str, str, str]]:
    """Findings of a fresh scan (the baseline's plugins and filters, git-tracked files) the baseline lacks."""
    audited = json.loads((root / ".secrets.baseline").read_text())
    with tempfile.TemporaryDirectory() as scratch:
        rescanned = Path(scratch) / "baseline"
        shutil.copy(root / ".secrets.baseline", rescanned)
        subprocess.run([str(DETECT_SECRETS), "scan", "--baseline", str(rescanned)], cwd=root, check=True)
        current = json.loads(rescanned.read_text())
    return sorted(findings(current) - findings(audited))


def main() -> int:
    root = Path(sys.argv[1] if len(sys.argv) > 1 else ".").resolve()
    new = new_findings(root)
    for path, kind, _ in new:
        print(f"secret scan: {path}: {kind} not in .secrets.baseline", file=sys.stderr)
    if new:
        print(
            "secret scan: remove it, mark a reviewed false positive with `# pragma: allowlist secret`,"
            " or refresh the baseline: detect-secrets scan --baseline .secrets.baseline",
            file=sys.stderr,
        )
        return 1
    print("secret scan: no finding beyond the audited ones in .secrets.baseline")
    return 0


if __name__ == "__main__":
    sys.exit(main())
