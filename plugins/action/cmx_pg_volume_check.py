# Copyright: CleanMateX DevOps
# Apache License 2.0 (see galaxy.yml)
"""Action plugin of cmx_pg_volume_check (documented with the module): on the controller itself it runs
the module's code in-process (see plugin_utils/controller_local.py), a cold converge's check of a volume
that does not exist yet costing no module transfer and Python start."""

from __future__ import annotations

from ansible_collections.cleanmatex.infra.plugins.module_utils.pg_volume import ARGUMENT_SPEC, task_result
from ansible_collections.cleanmatex.infra.plugins.plugin_utils.controller_local import controller_local_action

ActionModule = controller_local_action(ARGUMENT_SPEC, task_result)
