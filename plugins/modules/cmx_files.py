#!/usr/bin/python
"""Ansible module: write many rendered files in one call."""

from __future__ import annotations

DOCUMENTATION = r"""
module: cmx_files
short_description: Write a set of folders and files in one call, only where content or mode differ
description:
  - Creates I(directories) with their modes, then writes I(files) in order, atomically
    (temporary file and rename).
  - A file whose content and mode already match is left alone, so a re-run reports C(changed=false).
  - One call instead of one task per file keeps a converge with nothing to change fast.
  - Render the content on the controller, e.g. with C(lookup('ansible.builtin.template', ...)).
version_added: 0.1.0
author: CleanMateX DevOps
options:
  owner: {description: Owner of every folder and file that names none of its own., type: str}
  group: {description: Group of every folder and file that names none of its own., type: str}
  directories:
    description: Folders to create (parents included), each with its mode.
    type: list
    elements: dict
    default: []
    suboptions:
      path: {description: Absolute path., type: path, required: true}
      mode: {description: Octal mode as a string, e.g. C("0700")., type: str, required: true}
      owner: {description: User name or uid (default the connecting user)., type: str}
      group: {description: Group name or gid., type: str}
  files:
    description: Files to write, in this order.
    type: list
    elements: dict
    default: []
    suboptions:
      path: {description: Absolute path., type: path, required: true}
      content: {description: The complete content., type: str, required: true}
      mode: {description: Octal mode as a string., type: str, required: true}
      owner: {description: User name or uid (default the connecting user)., type: str}
      group: {description: Group name or gid., type: str}
      validate:
        description: Command run on the new content before it replaces the file; C(%s) is the temporary file.
        type: str
      only_if_missing:
        description: Write the content only when the file does not exist yet (a placeholder).
        type: bool
        default: false
  secret_files:
    description:
      - Files whose content is secret, written before O(files) (which may need them, e.g. for C(validate)).
      - Their content is C(no_log), so one task can write secrets and plain files without C(no_log) on the
        task; paths, modes and the changed lists stay visible.
    type: list
    elements: dict
    default: []
    suboptions:
      path: {description: Absolute path., type: path, required: true}
      content: {description: The complete content (never logged)., type: str, required: true}
      mode: {description: Octal mode as a string., type: str, required: true}
      owner: {description: User name or uid (default the connecting user)., type: str}
      group: {description: Group name or gid., type: str}
      only_if_missing:
        description: Write the content only when the file does not exist yet (a placeholder).
        type: bool
        default: false
notes:
  - Supports check mode.
"""

EXAMPLES = r"""
- name: Render the service configuration
  cleanmatex.infra.cmx_files:
    directories:
      - {path: /opt/cmx, mode: "0755"}
    files:
      - path: /opt/cmx/.env
        content: "{{ lookup('ansible.builtin.template', 'compose.env.j2') }}"
        mode: "0600"
      - path: /opt/cmx/docker-compose.yml
        content: "{{ lookup('ansible.builtin.template', 'docker-compose.yml.j2') }}"
        mode: "0644"
        validate: docker compose --project-directory /opt/cmx -f %s config -q
    secret_files:
      - path: /opt/cmx/secrets/postgres_password
        content: "{{ cmx_postgres_password }}"
        mode: "0644"
"""

RETURN = r"""
changed_paths:
  description: Folders and files created or rewritten (or that would be, in check mode).
  returned: always
  type: list
  elements: str
unchanged_paths:
  description: Folders and files that already matched.
  returned: always
  type: list
  elements: str
"""

from ansible_collections.cleanmatex.infra.plugins.module_utils.files import ARGUMENT_SPEC, task_result
from ansible_collections.cleanmatex.infra.plugins.module_utils.task_module import run_task_module


def main() -> None:
    run_task_module(ARGUMENT_SPEC, task_result)


if __name__ == "__main__":
    main()
