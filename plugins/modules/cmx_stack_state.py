#!/usr/bin/python
"""Ansible module: may a converge stop early because nothing changed?"""

from __future__ import annotations

DOCUMENTATION = r"""
module: cmx_stack_state
short_description: Tell whether the stack is exactly as the last full converge left it
description:
  - Compares O(fingerprint) with the one the last full converge recorded in C(<project_dir>/.converged)
    and checks that every container in O(containers) is running and healthy.
  - Read-only. RV(up_to_date) true lets a playbook skip the converge; RV(reasons) says why not otherwise.
  - With O(record=true) it writes the fingerprint instead (the last step of a full converge), with O(start)
    and a digest of the rendered files.
  - With O(early_start=true), when the stack is not up to date only because containers are stopped or missing
    (same fingerprint, rendered files unchanged since the record), it starts the recorded stack at once and
    waits until it is healthy (images and host ports checked, the volume guards first), before the converge's
    own checks.
version_added: 0.1.0
author: CleanMateX DevOps
options:
  project_dir: {description: The rendered stack's folder., type: path, required: true}
  fingerprint:
    description: Hash of everything the converge depends on; required unless O(forget=true).
    type: str
    default: ""
  containers:
    {description: Containers that must be running and healthy., type: list, elements: str, default: []}
  record: {description: Write the fingerprint (after a successful full converge)., type: bool, default: false}
  forget:
    description: Remove the record, so the next converge runs every step (after a restore or a reset).
    type: bool
    default: false
  summary:
    description: With O(record=true), the summary the converge printed (an up-to-date check returns it).
    type: list
    elements: str
    default: []
  start:
    description:
      - With O(record=true), how the stack started (compose profiles and images, the volume guards' arguments,
        a WAL volume the converge prepares first); recorded for an early start.
    type: dict
    default: {}
  early_start:
    description: Start an unchanged stack that is not running at once (see above); a failure is a warning.
    type: bool
    default: false
  timeout: {description: Seconds the early start waits for healthy services., type: int, default: 300}
notes:
  - Supports check mode.
  - When the host is the controller itself (connection C(local), no become), the action plugin runs the same
    code there, without a module transfer and a second Python start (about 0.7 s of a fast re-run).
"""

EXAMPLES = r"""
- name: Decide whether anything needs doing
  cleanmatex.infra.cmx_stack_state:
    project_dir: /opt/cmx
    fingerprint: "{{ my_fingerprint }}"
    containers: [cmx-postgres, cmx-redis]
  register: state
"""

RETURN = r"""
up_to_date: {description: Same fingerprint and every container healthy., returned: always, type: bool}
reasons: {description: Why a full converge is needed., returned: always, type: list, elements: str}
fingerprint:
  description: O(fingerprint) as given (a later O(record=true) task of the same converge writes this value).
  returned: always
  type: str
summary:
  description: The summary the last converge recorded; empty unless RV(up_to_date).
  returned: always
  type: list
  elements: str
early_started:
  description: The recorded stack was started in the background (O(early_start=true)).
  returned: always
  type: bool
early_start:
  description: What the early start did, or why it did not start the stack.
  returned: when the stack was not up to date and O(early_start=true)
  type: str
"""

from ansible_collections.cleanmatex.infra.plugins.module_utils.stack_state import ARGUMENT_SPEC, task_result
from ansible_collections.cleanmatex.infra.plugins.module_utils.task_module import run_task_module


def main() -> None:
    run_task_module(ARGUMENT_SPEC, task_result)


if __name__ == "__main__":
    main()
