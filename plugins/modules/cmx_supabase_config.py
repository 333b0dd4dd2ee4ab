#!/usr/bin/python
"""Ansible module: write Supabase's config.toml once the pinned Supabase CLI accepts it."""

from __future__ import annotations

DOCUMENTATION = r"""
module: cmx_supabase_config
short_description: Write the Supabase CLI's config.toml only after the CLI itself has loaded it
description:
  - Writes O(content) (a rendered config.toml) into a temporary C(<workdir>/supabase/config.toml) and runs
    C(<cli> services -o json --workdir <workdir>), which loads the file with the CLI's own config loader and
    needs no Docker.
  - "That command exits 0 even for a rejected file; the rejection is what it prints on stderr
    (e.g. C(Failed reading config: Invalid db.major_version: 99.)). Any stderr fails the task with that
    message, as does a C(supabase/postgres) image of another major than O(postgres_major)."
  - Only then is O(dest) written (atomically), and only when its content or mode differ.
  - Check the values for type and range first (filter C(cleanmatex.infra.supabase_config_problems)), as
    the CLI accepts many wrong values, e.g. a port given as a string.
version_added: 0.1.0
author: CleanMateX DevOps
options:
  content: {description: The complete config.toml text., type: str, required: true}
  dest:
    description: Where it goes, C(<workdir>/supabase/config.toml); the folder must exist.
    type: path
    required: true
  cli: {description: Path of the pinned Supabase CLI on the host., type: path, required: true}
  postgres_major:
    description: The PostgreSQL major the file configures (C(15) or C(17)); the CLI's image must match it.
    type: str
  mode: {description: Octal mode of O(dest)., type: str, default: "0644"}
  timeout: {description: Seconds the CLI may take., type: int, default: 120}
notes:
  - Supports check mode (the CLI check runs, nothing is written).
"""

EXAMPLES = r"""
- name: Write config.toml once the pinned Supabase CLI accepts it
  cleanmatex.infra.cmx_supabase_config:
    content: "{{ lookup('ansible.builtin.template', 'config.toml.j2') }}"
    dest: /opt/cleanmatex/supabase/config.toml
    cli: /opt/cleanmatex/node_modules/.bin/supabase
    postgres_major: "17"
"""

RETURN = r"""
images:
  description:
    - Image to tag the CLI picked for this config (C(supabase services)),
      e.g. C(supabase/postgres-meta) to C(v0.99.0).
  returned: when the CLI accepted the file
  type: dict
cli_message:
  description: What the CLI said when it rejected the file.
  returned: on failure by the CLI
  type: str
command: {description: The CLI command that checked the file., returned: always, type: list, elements: str}
dest: {description: The file written., returned: always, type: str}
"""

from ansible_collections.cleanmatex.infra.plugins.module_utils.supabase_config import (
    ARGUMENT_SPEC,
    task_result,
)
from ansible_collections.cleanmatex.infra.plugins.module_utils.task_module import run_task_module


def main() -> None:
    run_task_module(ARGUMENT_SPEC, task_result)


if __name__ == "__main__":
    main()
