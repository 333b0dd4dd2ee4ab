#!/usr/bin/python
# Copyright: CleanMateX DevOps
# Apache License 2.0 (see galaxy.yml)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: cmx_env_validate
short_description: Validate CleanMateX application environment variables against the schema
version_added: 0.1.0
description:
  - Validates a mapping of application environment variables, or an env (C(.env)) file on the managed host,
    against the one schema of the collection (C(plugins/module_utils/env_schema.py), documented in
    C(docs/environment.md)) for one environment.
  - Reports B(all) problems in one run. Each names the variable, the file and line when the input is a
    file, what is wrong and the expected form. Errors fail the task (unless O(fail_on_error=false));
    warnings, such as unknown variables with the closest known name, are shown as Ansible warnings.
  - Everywhere it checks types (int, port, URL schemes, bool, enum, duration), formats, required variables,
    and consistency between variables (pool sizes, ports, DATABASE_URL vs DATABASE_POOLED_URL, REDIS_URL vs
    REDIS_PASSWORD).
  - In C(staging) and C(production) it also refuses missing secrets, well-known default, placeholder or weak
    secrets (for example C(cmx_pass_dev), C(minioadmin123), C(change-me-in-production), a JWT_SECRET under
    32 characters), and C(http://) where C(https://) is required.
  - With O(stack), it compares the variables with the settings the stack is built from (DATABASE_URL's
    user/password/host/port/database, PgBouncer's port, the Redis password and port, the S3 port, keys
    and bucket).
  - Messages never contain the value of a secret. The secret inputs are C(no_log); in the returned invocation
    only the values of non-secret variables stay readable.
  - The same checks run outside Ansible with C(bin/cmx-env validate --env ENV FILE), which gives the same
    verdict and messages.
author:
  - CleanMateX DevOps (@cleanmatex)
options:
  environment:
    description: Environment the variables are for. C(staging) and C(production) are strict.
    type: str
    required: true
    choices: [dev, ci, staging, production]
  values:
    description:
      - Mapping of variable name to value (string, number or boolean; V(null) means absent).
      - Booleans are compared as the strings C(true) and C(false), as the env role renders them.
      - Mutually exclusive with O(path).
    type: dict
  undefined:
    description:
      - Names of variables whose value could not be templated because a variable it uses is undefined (for
        example a C(vault_*) entry missing from C(vault.yml)). Each is reported as an error, together with
        everything else, instead of the first undefined variable aborting the play. Used with O(values).
    type: list
    elements: str
    default: []
  path:
    description:
      - Env file on the managed host to validate. Comments, C(export NAME=value), single and double quotes are
        understood; CRLF line endings and duplicate definitions are reported.
      - Mutually exclusive with O(values).
    type: path
  stack:
    description:
      - Settings the stack was built from, for cross-field checks. Only the keys given are compared.
    type: dict
    suboptions:
      postgres_host:
        description: Host the applications reach PostgreSQL and PgBouncer on.
        type: str
      postgres_port:
        description: PostgreSQL host port (cmx_postgres_port).
        type: int
      postgres_user:
        description: PostgreSQL owner role (cmx_postgres_user).
        type: str
      postgres_password:
        description: Its password (cmx_postgres_password).
        type: str
      postgres_db:
        description: Database name (cmx_postgres_db).
        type: str
      postgres_app_user:
        description:
          - The app role DATABASE_URL and DATABASE_POOLED_URL log in as (cmx_postgres_app_user).
          - When absent, the URLs are compared with postgres_user.
        type: str
      postgres_app_password:
        description: Its password (cmx_postgres_app_password).
        type: str
      postgres_migration_user:
        description: The migration role (cmx_postgres_migration_user); must differ from the other roles.
        type: str
      postgres_migration_password:
        description: Its password (cmx_postgres_migration_password); strength checked in staging/production.
        type: str
      postgres_health_user:
        description: The /health role (cmx_postgres_health_user); must differ from the other roles.
        type: str
      postgres_health_password:
        description: Its password (cmx_postgres_health_password); strength checked in staging/production.
        type: str
      pgbouncer_port:
        description: PgBouncer host port (cmx_pgbouncer_port).
        type: int
      pgbouncer_host:
        description:
          - Where PgBouncer is when not on O(stack.postgres_host) (an external pooler, or the stack's
            PgBouncer in front of an external PostgreSQL); DATABASE_POOLED_URL's host is compared with it.
        type: str
      pgbouncer_tls:
        description: Like O(stack.postgres_tls), for DATABASE_POOLED_URL (absent, postgres_tls applies).
        type: str
      pgbouncer_admin_user:
        description: PgBouncer's admin and stats user (cmx_pgbouncer_admin_user), its own name.
        type: str
      pgbouncer_admin_password:
        description: Its password (cmx_pgbouncer_admin_password); strength checked in staging/production.
        type: str
      redis_host:
        description: Host the applications reach Redis on.
        type: str
      redis_port:
        description: Redis host port (cmx_redis_port).
        type: int
      redis_password:
        description: Redis password (cmx_redis_password); an empty string means Redis requires none.
        type: str
      s3_host:
        description: Host the applications reach the S3 storage on.
        type: str
      s3_port:
        description: S3 API host port (cmx_s3_port).
        type: int
      s3_access_key:
        description: S3 access key (cmx_s3_access_key).
        type: str
      s3_secret_key:
        description: S3 secret key (cmx_s3_secret_key).
        type: str
      s3_bucket:
        description: Bucket (cmx_s3_bucket).
        type: str
      s3_region:
        description: Region (cmx_s3_region).
        type: str
      postgres_tls:
        description:
          - V(true) when PostgreSQL and PgBouncer serve TLS (cmx_tls_enabled) - the URLs must then use
            C(sslmode=verify-full) with an C(sslrootcert); V(false) - they must not ask for TLS.
          - Unset, not checked.
        type: str
  services:
    description:
      - Where each data service runs (the endpoints role's C(cmx_endpoints.settings), see
        C(docs/external-services.md)); its problems (an external service without an endpoint, plaintext
        to a non-loopback address outside dev, ...) are reported with the others, each naming the variable.
    type: dict
  fail_on_error:
    description: Fail the task when there are errors. With V(false) the task succeeds and RV(valid) tells.
    type: bool
    default: true
attributes:
  action:
    support: full
    description: An action plugin of the same name runs the O(values) form on the controller.
  check_mode:
    support: full
    description: Only reads; runs the same in check mode.
  diff_mode:
    support: none
    description: Nothing is changed.
  platform:
    support: full
    platforms: posix
notes:
  - The schema, the checks and the messages live in C(plugins/module_utils/env_schema.py) and
    C(plugins/module_utils/env_validate.py); this module is a thin wrapper.
  - With O(values) the validation runs on the controller (the collection's action plugin of the same name,
    no module transfer and no remote Python) and returns exactly what the module would; with O(path) the
    module runs on the managed host, which holds the file.
seealso:
  - name: Environment variables
    description: The generated table of every variable (C(docs/environment.md)).
    link: https://example.invalid/cleanmatex/cmx-infra/docs/environment.md
"""

EXAMPLES = r"""
- name: Validate the rendered values before anything is written
  cleanmatex.infra.cmx_env_validate:
    environment: "{{ cmx_environment }}"
    values: "{{ __env_values }}"
    stack:
      postgres_host: localhost
      postgres_port: "{{ cmx_postgres_port }}"
      postgres_user: "{{ cmx_postgres_user }}"
      postgres_password: "{{ cmx_postgres_password }}"
      postgres_db: "{{ cmx_postgres_db }}"
      pgbouncer_port: "{{ cmx_pgbouncer_port }}"
      redis_password: "{{ cmx_redis_password }}"
      s3_port: "{{ cmx_s3_port }}"

- name: Validate an application's env file on the host, without failing
  cleanmatex.infra.cmx_env_validate:
    environment: staging
    path: /srv/cleanmatex/backend/.env
    fail_on_error: false
  register: backend_env

- name: Show what is wrong with it
  ansible.builtin.debug:
    var: backend_env.errors
  when: not backend_env.valid
"""

RETURN = r"""
msg:
  description: One line verdict, followed (on failure) by every problem, one per line.
  returned: always
  type: str
  sample: "values for environment staging: INVALID: 2 errors"
valid:
  description: True when there is no error (warnings do not count).
  returned: success or fail_on_error=false
  type: bool
  sample: false
environment:
  description: The environment validated for.
  returned: always
  type: str
  sample: staging
source:
  description: The file validated, or C(values) for a mapping.
  returned: always
  type: str
  sample: /srv/cleanmatex/backend/.env
errors:
  description: The errors as messages, in report order.
  returned: always
  type: list
  elements: str
  sample:
    - "JWT_SECRET: is shorter than 32 characters (refused in staging); expected a random secret of at least
      32 characters (e.g. `openssl rand -hex 32`) kept in the vault"
problems:
  description: Every error and warning, in report order.
  returned: always
  type: list
  elements: dict
  contains:
    severity:
      description: C(error) or C(warning).
      type: str
    variable:
      description: The variable, or null for a problem of the file as a whole.
      type: str
    file:
      description: The file, or null for a mapping.
      type: str
    line:
      description: The line in the file, or null.
      type: int
    message:
      description: What is wrong.
      type: str
    expected:
      description: The expected form.
      type: str
    text:
      description: The complete message, as the CLI prints it.
      type: str
error_count:
  description: Number of errors.
  returned: always
  type: int
  sample: 2
warning_count:
  description: Number of warnings.
  returned: always
  type: int
  sample: 0
variables:
  description: Names of the variables found in the input, sorted.
  returned: always
  type: list
  elements: str
  sample: [DATABASE_URL, NODE_ENV]
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.cleanmatex.infra.plugins.module_utils.env_task import (
    ARGUMENT_RULES,
    argument_spec,
    task_result,
)


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True, **ARGUMENT_RULES)
    result, warnings = task_result(module.params, module.no_log_values)
    for text in warnings:
        module.warn(text)
    if result.pop("failed", False):
        module.fail_json(**result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
