# Copyright: CleanMateX
"""Filter: a content hash of folders on the controller (what a converge's code and files are)."""

from __future__ import annotations

import hashlib

from ansible_collections.cleanmatex.infra.plugins.filter.images import images_tree_hash


def tree_hash(roots):
    """sha256 over the folders, each hashed like an image build context (paths, exec bits, contents)."""
    roots = [roots] if isinstance(roots, str) else list(roots)
    return hashlib.sha256("\0".join(images_tree_hash(root) for root in roots).encode()).hexdigest()


class FilterModule:
    def filters(self):
        return {"tree_hash": tree_hash}
