# Copyright: CleanMateX
"""Filter: a content hash of folders on the controller (what a converge's code and files are)."""

from __future__ import annotations

import hashlib
import os


def tree_hash(roots):
    """sha256 over every file under the given folders: relative path, then content (sorted, no caches)."""
    digest = hashlib.sha256()
    for root in [roots] if isinstance(roots, str) else roots:
        root = os.path.realpath(root)
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = sorted(d for d in dirnames if d not in ("__pycache__", ".pytest_cache"))
            for name in sorted(filenames):
                if name.endswith(".pyc"):
                    continue
                path = os.path.join(dirpath, name)
                digest.update(os.path.relpath(path, root).encode() + b"\0")
                with open(path, "rb") as handle:
                    digest.update(hashlib.sha256(handle.read()).digest())
    return digest.hexdigest()


class FilterModule:
    def filters(self):
        return {"tree_hash": tree_hash}
