# Copyright: CleanMateX DevOps
# Apache License 2.0 (see galaxy.yml)
"""The one schema of the CleanMateX application environment (.env) variables.

Everything about an application variable lives here and nowhere else: its type, whether it is required and
its default in each environment, its description and its group.  Generated from it:

* ``.env.example``                       (``bin/cmx-env example``)
* ``docs/environment.md``, the table     (``bin/cmx-env docs --write docs/environment.md``)
* ``roles/env/vars/main/schema.yml``     (``bin/cmx-env role-vars``), which the ``env`` role renders every
  environment's ``.env`` from
* the checks of ``env_validate`` (module ``cleanmatex.infra.cmx_env_validate`` and ``bin/cmx-env validate``).

``tests/unit/test_env_generated.py`` fails when a generated file is out of date.

Plain Python data and the standard library only: this file ships to managed hosts inside the module and is
imported by the CLI without Ansible.  Keep it compatible with Python 3.8.

Defaults are templates in Python ``str.format`` syntax over *inventory* variables, so that a value such as
``DATABASE_URL`` is built from the same ``cmx_postgres_*`` settings the stack is built from (one source of
truth).  Format specs: ``{name}`` the value as is; ``{name:url}`` percent-encoded for a URL's user-info part;
``{name:userinfo}`` ``:<encoded value>@`` when the value is non-empty, else nothing (an optional password).
``to_jinja()`` turns such a template into the equivalent Jinja expression for the role.

Keys of a variable (see ``_var``):

name, group, type, description
    ``type`` is one of ``TYPES``.
required
    ``{environment: bool}`` for every environment in ``ENVIRONMENTS``.
default
    ``{environment: template or None}``; None means "no default: the inventory must give a value".
secret
    True for credentials: never printed, and checked for strength in staging/production.
choices (enum), min / max (int), min_length (secret, staging/production)
schemes, https, url_user, url_password, url_database (url)
    ``https``: None (http allowed), ``"always"`` (https outside dev/ci) or ``"remote"`` (https outside dev/ci
    unless the host is a loopback address).  ``url_password``: None, ``"always"`` or ``"strict"``
    (required in staging/production only).
pattern, pattern_hint
    A regular expression a non-empty value must match (``re.fullmatch``) and the form to print when not.
env_pattern
    ``{environment: (regex, hint)}``: an extra pattern for one environment (live Stripe keys in production).
fixed
    ``{environment: value}``: the only value allowed in that environment.
jwt
    ``{"role": <expected role claim>, "alt_prefix": <prefix of Supabase's newer non-JWT keys>}``.
hint
    The expected form printed with a problem, when the type's generic form is not precise enough.
"""

from __future__ import annotations

import re
import string
from urllib.parse import quote

ENVIRONMENTS = ("dev", "ci", "staging", "production")
# Environments where defaults, weak secrets and plain http are refused.
STRICT_ENVIRONMENTS = ("staging", "production")
TYPES = ("string", "int", "port", "url", "bool", "enum", "duration", "secret")

# (id, title, description) in the order the groups appear in every generated file.
GROUPS = (
    ("environment", "Environment", "What the applications run as."),
    ("database", "Database", "PostgreSQL, directly and through PgBouncer (transaction pooling)."),
    ("supabase", "Supabase", "Supabase API (Auth, Storage, Realtime). Locally: `supabase start`."),
    ("redis", "Redis", "Cache, queues and sessions."),
    ("storage", "S3 storage", "S3-compatible object storage (SeaweedFS or MinIO in the stack)."),
    ("application", "Application", "Where the NestJS backend listens and where the apps are reached."),
    ("auth", "JWT", "Tokens the backend signs."),
    ("features", "Feature flags", "Product features switched per environment."),
    ("external", "External services", "Messaging, e-mail and payments. Optional in dev and ci."),
)

# Minimum length of a secret in staging/production unless the variable says otherwise.
MIN_SECRET_LENGTH = 16
MIN_JWT_SECRET_LENGTH = 32

# Values that are public knowledge: the seed's and the dev/ci inventories' defaults and the usual suspects.
# Compared case-insensitively with every secret (and every password inside a URL) in staging/production.
KNOWN_WEAK_SECRETS = (
    "cmx_pass_dev",
    "cmx_user",
    "cmx_app_pass_dev",
    "cmx_app_pass_ci",
    "cmx_migrator_pass_dev",
    "cmx_migrator_pass_ci",
    "cmx_health_pass_dev",
    "cmx_health_pass_ci",
    "cmx_pgbouncer_admin_pass_dev",
    "cmx_pgbouncer_admin_pass_ci",
    "minioadmin",
    "minioadmin123",
    "change-me-in-production",
    "ci-redis-test-password",
    "cmx-ci-test-jwt-secret-protects-nothing-real",
    "admin",
    "administrator",
    "changeit",
    "letmein",
    "passw0rd",
    "password",
    "password1",
    "postgres",
    "qwerty",
    "redis",
    "root",
    "secret",
    "test",
    "12345678",
    "123456789",
    "1234567890",
)
# Placeholders people leave in files: <get-from-supabase-start>, change-me, REPLACE-ME..., your-api-key, TODO.
PLACEHOLDER_PATTERNS = (
    r"<[^>]*>",
    r".*(change|replace|fill|set)[-_ ]?(me|this|it)\b.*",
    r"(your|my)[-_ ].*",
    r"(todo|tbd|fixme|xxx+|placeholder|example|dummy|sample|none|null|undefined)",
)

# Inventory variables a default may use that not every inventory defines, with the value used then.
# env_database_tls_query: the env role's "?sslmode=verify-full&sslrootcert=<CA file>" when the stack serves
# TLS (cmx_tls_enabled), empty otherwise.
CONTEXT_FALLBACKS = {
    "cmx_s3_region": "us-east-1",
    "env_database_tls_query": "",
    "env_pooled_tls_query": "",
    # Where the apps reach each service (the env role's defaults: the stack's host, or an external endpoint).
    "env_postgres_host": "localhost",
    "env_pgbouncer_host": "localhost",
    "env_redis_scheme": "redis",
    "env_redis_host": "localhost",
    "env_s3_endpoint": "http://localhost:9000",
}

# Keys of the validator's `stack` settings (the PostgreSQL, PgBouncer, Redis and S3 settings the stack is
# built from) and which of them are secret.
STACK_KEYS = (
    "postgres_host",
    "postgres_port",
    "postgres_user",
    "postgres_password",
    "postgres_db",
    "postgres_app_user",
    "postgres_app_password",
    "postgres_migration_user",
    "postgres_migration_password",
    "postgres_health_user",
    "postgres_health_password",
    "pgbouncer_port",
    # Only where PgBouncer is not on postgres_host (an external pooler, or PgBouncer on the app host in
    # front of an external PostgreSQL); absent: postgres_host.
    "pgbouncer_host",
    # Like postgres_tls, for DATABASE_POOLED_URL; absent: postgres_tls.
    "pgbouncer_tls",
    "pgbouncer_admin_user",
    "pgbouncer_admin_password",
    "redis_host",
    "redis_port",
    "redis_password",
    "s3_host",
    "s3_port",
    "s3_access_key",
    "s3_secret_key",
    "s3_bucket",
    "s3_region",
    # "true" when PostgreSQL and PgBouncer serve TLS (cmx_tls_enabled): the URLs must verify them.
    "postgres_tls",
)
STACK_SECRET_KEYS = (
    "postgres_password",
    "postgres_app_password",
    "postgres_migration_password",
    "postgres_health_password",
    "pgbouncer_admin_password",
    "redis_password",
    "s3_access_key",
    "s3_secret_key",
)
# The database roles (docs/security.md): postgres_user is the bootstrap superuser (converge and backups
# only), postgres_app_user the role DATABASE_URL and DATABASE_POOLED_URL log in as (postgres_user when
# absent, for callers that pass only the older keys). Their names must differ from each other.
STACK_ROLE_KEYS = (
    ("postgres_user", "cmx_postgres_user"),
    ("postgres_app_user", "cmx_postgres_app_user"),
    ("postgres_migration_user", "cmx_postgres_migration_user"),
    ("postgres_health_user", "cmx_postgres_health_user"),
    ("pgbouncer_admin_user", "cmx_pgbouncer_admin_user"),
)
# Role passwords that no .env carries (so no URL check sees them): checked for strength on their own in
# staging and production, like the secrets of the application variables.
STACK_ROLE_PASSWORD_KEYS = (
    ("postgres_password", "cmx_postgres_password"),
    ("postgres_migration_password", "cmx_postgres_migration_password"),
    ("postgres_health_password", "cmx_postgres_health_password"),
    ("pgbouncer_admin_password", "cmx_pgbouncer_admin_password"),
)
STACK_INT_KEYS = ("postgres_port", "pgbouncer_port", "redis_port", "s3_port")
# Names the stack writes into SQL, pgbouncer.ini, docker-compose.yml, its .env and URLs: (stack key,
# inventory variable, pattern for re.fullmatch, the form in words). Checked before anything is rendered:
# PgBouncer cannot quote a database name or a user list item at all, and a non-ASCII database name kept
# the PostgreSQL container from starting.
STACK_NAME_RULES = (
    (
        "postgres_user",
        "cmx_postgres_user",
        r"[a-z_][a-z0-9_]{0,62}",
        "a PostgreSQL role name: 1-63 lowercase ASCII letters, digits or _, not starting with a digit",
    ),
    (
        "postgres_app_user",
        "cmx_postgres_app_user",
        r"[a-z_][a-z0-9_]{0,62}",
        "a PostgreSQL role name: 1-63 lowercase ASCII letters, digits or _, not starting with a digit",
    ),
    (
        "postgres_migration_user",
        "cmx_postgres_migration_user",
        r"[a-z_][a-z0-9_]{0,62}",
        "a PostgreSQL role name: 1-63 lowercase ASCII letters, digits or _, not starting with a digit",
    ),
    (
        "postgres_health_user",
        "cmx_postgres_health_user",
        r"[a-z_][a-z0-9_]{0,62}",
        "a PostgreSQL role name: 1-63 lowercase ASCII letters, digits or _, not starting with a digit",
    ),
    (
        "pgbouncer_admin_user",
        "cmx_pgbouncer_admin_user",
        r"[a-z_][a-z0-9_]{0,62}",
        "a PostgreSQL role name: 1-63 lowercase ASCII letters, digits or _, not starting with a digit",
    ),
    (
        "postgres_db",
        "cmx_postgres_db",
        r"[a-z_][a-z0-9_]{0,62}",
        "a PostgreSQL database name: 1-63 lowercase ASCII letters, digits or _, not starting with a digit",
    ),
    (
        "s3_bucket",
        "cmx_s3_bucket",
        r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]",
        "an S3 bucket name: 3-63 lowercase letters, digits, dots or hyphens",
    ),
)

_LENIENT = ("dev", "ci")


def _per_env(value=None, **by_env):
    """{environment: value}: `value` for all, overridden by keywords dev/ci/staging/production,
    `lenient` (dev and ci) and `strict` (staging and production)."""
    result = dict.fromkeys(ENVIRONMENTS, value)
    for key, item in by_env.items():
        envs = {"lenient": _LENIENT, "strict": STRICT_ENVIRONMENTS}.get(key, (key,))
        for env in envs:
            if env not in result:
                raise ValueError(f"unknown environment {env!r}")
            result[env] = item
    return result


ALL = _per_env(True)
STRICT_ONLY = _per_env(False, strict=True)
NONE = _per_env(False)


def _var(name, group, type, description, required=ALL, default=None, **rules):
    if type not in TYPES:
        raise ValueError(f"{name}: unknown type {type!r}")
    if not isinstance(default, dict):
        default = _per_env(default)
    entry = {
        "name": name,
        "group": group,
        "type": type,
        "description": description,
        "required": dict(required),
        "default": dict(default),
        "secret": type == "secret",
    }
    entry.update(rules)
    return entry


_DB_HINT = "postgresql://USER:PASSWORD@HOST:PORT/DATABASE"
_DB_URL = "postgresql://{cmx_postgres_app_user}:{cmx_postgres_app_password:url}@%s/{cmx_postgres_db}%s"
_SECRET_HINT = "a random secret of at least %d characters (e.g. `openssl rand -hex 32`) kept in the vault"

VARIABLES = (
    # Environment
    _var(
        "NODE_ENV",
        "environment",
        "enum",
        "Runtime mode of the Node.js apps. Always `production` in staging and production.",
        default=_per_env(dev="development", ci="test", strict="production"),
        choices=("development", "test", "production"),
        fixed=_per_env(strict="production"),
    ),
    _var(
        "CMX_ENVIRONMENT",
        "environment",
        "enum",
        "Deployment environment the file was rendered for. When set it must match the environment the file "
        "is validated for, so a production file cannot pass as staging.",
        required=NONE,
        default="{cmx_environment}",
        choices=ENVIRONMENTS,
    ),
    # Database
    _var(
        "DATABASE_URL",
        "database",
        "url",
        "Direct PostgreSQL connection (LISTEN/NOTIFY, session features) as the app role, not a superuser "
        "(docs/security.md). Built from cmx_postgres_app_user/app_password/port/db.",
        default=_DB_URL % ("{env_postgres_host}:{cmx_postgres_port}", "{env_database_tls_query}"),
        secret=True,
        schemes=("postgresql", "postgres"),
        url_user=True,
        url_password="always",
        url_database=True,
        hint=_DB_HINT,
    ),
    _var(
        "DATABASE_POOLED_URL",
        "database",
        "url",
        "PostgreSQL through PgBouncer (transaction pooling) for application queries: same user, password and "
        "database as DATABASE_URL, PgBouncer's port (cmx_pgbouncer_port).",
        required=STRICT_ONLY,
        default=_DB_URL % ("{env_pgbouncer_host}:{cmx_pgbouncer_port}", "{env_pooled_tls_query}"),
        secret=True,
        schemes=("postgresql", "postgres"),
        url_user=True,
        url_password="always",
        url_database=True,
        hint="postgresql://USER:PASSWORD@HOST:PGBOUNCER_PORT/DATABASE",
    ),
    _var(
        "DATABASE_POOL_MIN",
        "database",
        "int",
        "Connections each app process keeps open.",
        default="2",
        min=0,
        max=100,
    ),
    _var(
        "DATABASE_POOL_MAX",
        "database",
        "int",
        "Most connections one app process opens. At least DATABASE_POOL_MIN.",
        default="10",
        min=1,
        max=1000,
    ),
    _var(
        "POSTGRES_PORT",
        "database",
        "port",
        "PostgreSQL's host port (cmx_postgres_port); must match DATABASE_URL.",
        required=NONE,
        default="{cmx_postgres_port}",
    ),
    _var(
        "PGBOUNCER_PORT",
        "database",
        "port",
        "PgBouncer's host port (cmx_pgbouncer_port); must match DATABASE_POOLED_URL.",
        required=NONE,
        default="{cmx_pgbouncer_port}",
    ),
    # Supabase
    _var(
        "NEXT_PUBLIC_SUPABASE_URL",
        "supabase",
        "url",
        "Supabase API URL, shipped to browsers. Locally the Supabase CLI's API on :54321.",
        default=_per_env(lenient="http://127.0.0.1:54321"),
        schemes=("http", "https"),
        https="always",
    ),
    _var(
        "NEXT_PUBLIC_SUPABASE_ANON_KEY",
        "supabase",
        "secret",
        "Supabase anon (publishable) key, shipped to browsers. In dev and ci it comes from `supabase status` "
        "(the local CLI's well-known demo key) and may stay empty.",
        required=STRICT_ONLY,
        default=_per_env(lenient=""),
        jwt={"role": "anon", "alt_prefix": "sb_publishable_"},
        hint="the project's anon JWT or sb_publishable_ key (Supabase dashboard, API settings)",
    ),
    _var(
        "SUPABASE_SERVICE_ROLE_KEY",
        "supabase",
        "secret",
        "Supabase service_role (secret) key: bypasses row-level security, backend only. In dev and ci it "
        "comes from `supabase status` and may stay empty.",
        required=STRICT_ONLY,
        default=_per_env(lenient=""),
        jwt={"role": "service_role", "alt_prefix": "sb_secret_"},
        hint="the project's service_role JWT or sb_secret_ key (Supabase dashboard, API settings)",
    ),
    # Redis
    _var(
        "REDIS_URL",
        "redis",
        "url",
        "Redis connection. Carries the password (cmx_redis_password) whenever Redis requires one, which is "
        "always outside dev and ci.",
        default="{env_redis_scheme}://{cmx_redis_password:userinfo}{env_redis_host}:{cmx_redis_port}",
        secret=True,
        schemes=("redis", "rediss"),
        url_password="strict",
        hint="redis://:PASSWORD@HOST:PORT",
    ),
    _var(
        "REDIS_DB",
        "redis",
        "int",
        "Redis logical database number.",
        default="0",
        min=0,
        max=15,
    ),
    _var(
        "REDIS_PASSWORD",
        "redis",
        "secret",
        "Redis AUTH password (cmx_redis_password); the same as the password in REDIS_URL. Empty in dev.",
        required=STRICT_ONLY,
        default="{cmx_redis_password}",
    ),
    # S3 storage
    _var(
        "S3_ENDPOINT",
        "storage",
        "url",
        "S3 API endpoint. The stack's storage listens on cmx_s3_port; plain http only to a loopback address "
        "outside dev and ci.",
        default="{env_s3_endpoint}",
        schemes=("http", "https"),
        https="remote",
    ),
    _var(
        "S3_REGION",
        "storage",
        "string",
        "Region the S3 client signs requests for (cmx_s3_region).",
        required=STRICT_ONLY,
        default="{cmx_s3_region}",
        pattern=r"[a-z]{2}(-[a-z]+)+-[0-9]+",
        pattern_hint="an AWS-style region name such as us-east-1",
    ),
    _var(
        "S3_ACCESS_KEY",
        "storage",
        "secret",
        "S3 access key (cmx_s3_access_key).",
        default="{cmx_s3_access_key}",
    ),
    _var(
        "S3_SECRET_KEY",
        "storage",
        "secret",
        "S3 secret key (cmx_s3_secret_key).",
        default="{cmx_s3_secret_key}",
        min_length=24,
    ),
    _var(
        "S3_BUCKET",
        "storage",
        "string",
        "Bucket for uploads (cmx_s3_bucket); created by the stack on converge.",
        default="{cmx_s3_bucket}",
        pattern=r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]",
        pattern_hint="an S3 bucket name: 3-63 lowercase letters, digits, dots or hyphens",
    ),
    # Application
    _var(
        "APP_PORT",
        "application",
        "port",
        "Port the NestJS backend listens on.",
        default="3001",
    ),
    _var(
        "APP_URL",
        "application",
        "url",
        "Public URL of the backend API.",
        default=_per_env(lenient="http://localhost:3001"),
        schemes=("http", "https"),
        https="always",
    ),
    _var(
        "WEB_ADMIN_URL",
        "application",
        "url",
        "Public URL of the Next.js web admin (CORS origin, links in e-mails).",
        default=_per_env(lenient="http://localhost:3000"),
        schemes=("http", "https"),
        https="always",
    ),
    # JWT
    _var(
        "JWT_SECRET",
        "auth",
        "secret",
        f"Key the backend signs JWTs with. At least {MIN_JWT_SECRET_LENGTH} random characters in staging and "
        "production.",
        default=_per_env(lenient="change-me-in-production"),
        min_length=MIN_JWT_SECRET_LENGTH,
        hint=_SECRET_HINT % MIN_JWT_SECRET_LENGTH,
    ),
    _var(
        "JWT_EXPIRES_IN",
        "auth",
        "duration",
        "Lifetime of an access token.",
        default="1h",
    ),
    # Feature flags
    _var("ENABLE_ASSEMBLY", "features", "bool", "Assembly workflow.", default="true"),
    _var("ENABLE_MARKETPLACE", "features", "bool", "Marketplace.", default="false"),
    _var("ENABLE_AI_FEATURES", "features", "bool", "AI features.", default="false"),
    # External services
    _var(
        "WHATSAPP_API_KEY",
        "external",
        "secret",
        "WhatsApp Business API key.",
        required=STRICT_ONLY,
        default=_per_env(lenient=""),
    ),
    _var(
        "WHATSAPP_PHONE_NUMBER",
        "external",
        "string",
        "WhatsApp sender number.",
        required=STRICT_ONLY,
        default=_per_env(lenient=""),
        pattern=r"\+[1-9][0-9]{6,14}",
        pattern_hint="an E.164 phone number such as +96550000000",
    ),
    _var(
        "TWILIO_ACCOUNT_SID",
        "external",
        "string",
        "Twilio account SID (SMS).",
        required=STRICT_ONLY,
        default=_per_env(lenient=""),
        pattern=r"AC[0-9a-fA-F]{32}",
        pattern_hint="AC followed by 32 hexadecimal digits",
    ),
    _var(
        "TWILIO_AUTH_TOKEN",
        "external",
        "secret",
        "Twilio auth token.",
        required=STRICT_ONLY,
        default=_per_env(lenient=""),
        pattern=r"[0-9a-fA-F]{32}",
        pattern_hint="32 hexadecimal digits",
    ),
    _var(
        "SENDGRID_API_KEY",
        "external",
        "secret",
        "SendGrid API key (e-mail).",
        required=STRICT_ONLY,
        default=_per_env(lenient=""),
        pattern=r"SG\.[A-Za-z0-9_-]{16,}\.[A-Za-z0-9_-]{16,}",
        pattern_hint="SG.<id>.<secret>",
    ),
    _var(
        "STRIPE_SECRET_KEY",
        "external",
        "secret",
        "Stripe secret (or restricted) key. A live key in production.",
        required=STRICT_ONLY,
        default=_per_env(lenient=""),
        pattern=r"(sk|rk)_(test|live)_[A-Za-z0-9]{16,}",
        pattern_hint="sk_test_... or sk_live_... (rk_ for a restricted key)",
        env_pattern={
            "production": (r"(sk|rk)_live_.*", "a live key (sk_live_... or rk_live_...) in production")
        },
    ),
)

BY_NAME = {entry["name"]: entry for entry in VARIABLES}
GROUP_IDS = tuple(group[0] for group in GROUPS)


# --- default templates --------------------------------------------------------------------------------------


class _DefaultFormatter(string.Formatter):
    def format_field(self, value, format_spec):
        text = "" if value is None else str(value)
        if format_spec == "":
            return text
        if format_spec == "url":
            return quote(text, safe="")
        if format_spec == "userinfo":
            return ":{}@".format(quote(text, safe="")) if text else ""
        raise ValueError(f"unknown format spec {format_spec!r}")


def template_inputs(template):
    """Names of the inventory variables a default template uses."""
    if template is None:
        return []
    return [field for _literal, field, _spec, _conv in string.Formatter().parse(template) if field]


def render_default(template, context):
    """The value of a default template for the inventory variables in `context` (a mapping).

    Raises KeyError naming the first variable that is missing from `context`."""
    if template is None:
        return None
    merged = dict(CONTEXT_FALLBACKS)
    merged.update(context)
    return _DefaultFormatter().vformat(template, (), merged)


_JINJA_QUOTE = "urlencode | replace('/', '%2F')"


def to_jinja(template):
    """The Jinja expression equivalent to a default template, for the role."""
    if template is None:
        return None
    out = []
    for literal, field, spec, conversion in string.Formatter().parse(template):
        if "{" in literal or "}" in literal or "{%" in literal or "{#" in literal:
            raise ValueError(f"braces in a default template literal: {template!r}")
        out.append(literal)
        if field is None:
            continue
        if conversion or not re.match(r"^[a-z_][a-z0-9_]*$", field):
            raise ValueError(f"unsupported field {field!r} in {template!r}")
        name = field
        if field in CONTEXT_FALLBACKS:
            name = f"({field} | default('{CONTEXT_FALLBACKS[field]}'))"
        if spec == "":
            out.append(f"{{{{ {name} }}}}")
        elif spec == "url":
            out.append(f"{{{{ {name} | {_JINJA_QUOTE} }}}}")
        elif spec == "userinfo":
            out.append(f"{{{{ (':' ~ ({name} | {_JINJA_QUOTE}) ~ '@') if {name} | length > 0 else '' }}}}")
        else:
            raise ValueError(f"unknown format spec {spec!r} in {template!r}")
    return "".join(out)


def is_required(entry, environment):
    return bool(entry["required"][environment])


def secret_names():
    return tuple(entry["name"] for entry in VARIABLES if entry["secret"])
