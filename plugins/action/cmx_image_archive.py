# Copyright: CleanMateX DevOps
# Apache License 2.0 (see galaxy.yml)
"""Action plugin of cmx_image_archive (documented with the module): on the controller itself it runs
the module's code in-process (see plugin_utils/controller_local.py)."""

from __future__ import annotations

from ansible_collections.cleanmatex.infra.plugins.module_utils.image_transfer import (
    ARCHIVE_ARGUMENT_SPEC,
    archive_result,
)
from ansible_collections.cleanmatex.infra.plugins.plugin_utils.controller_local import controller_local_action

ActionModule = controller_local_action(ARCHIVE_ARGUMENT_SPEC, archive_result)
