# Copyright: CleanMateX
"""Filter: a content hash of folders on the controller (what a converge's code and files are)."""

from __future__ import annotations

import hashlib

from ansible_collections.cleanmatex.infra.plugins.filter.images import images_tree_hash
from ansible_collections.cleanmatex.infra.plugins.module_utils.stack_state import CODE_TREES


def tree_hash(roots):
    """sha256 over the folders, each hashed like an image build context (paths, exec bits, contents)."""
    roots = [roots] if isinstance(roots, str) else list(roots)
    return hashlib.sha256("\0".join(images_tree_hash(root) for root in roots).encode()).hexdigest()


def code_hash(collection_root):
    """tree_hash of the collection's code a converge reads (stack_state.CODE_TREES under the root)."""
    return tree_hash([f"{collection_root}/{tree}" for tree in CODE_TREES])


class FilterModule:
    def filters(self):
        return {"tree_hash": tree_hash, "code_hash": code_hash}
