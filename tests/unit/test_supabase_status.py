"""Parsing the pinned Supabase CLI's output (2.117.0): status, services, and its start failures.

The status format is taken from the CLI's source, github.com/supabase/cli (the Go CLI that 2.117.0's
`supabase status` proxies to; commit 1d1e71912 of 2026-06-01):
  - apps/cli-go/internal/status/status.go: ``CustomName`` (the key names, e.g. ``env:"auth.anon_key,
    default=ANON_KEY"``), ``toValues`` (which keys exist for which running services), ``printStatus``;
  - apps/cli-go/internal/utils/output.go: ``EncodeOutput`` (json: a map encoded with two-space indent, keys
    sorted as Go sorts map keys; env: godotenv.Marshal, KEY="value" lines).
The demo keys below are the CLI's well-known public local keys (iss "supabase-demo"), not secrets.
"""

from __future__ import annotations

import json

import pytest
from ansible_collections.cleanmatex.infra.plugins.module_utils import supabase_status as sb

ANON = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJpc3MiOiJzdXBhYmFzZS1kZW1vIiwicm9sZSI6ImFub24iLCJleHAiOjE5ODM4MTI5OTZ9"
    ".CRXP1A7WOeoJeXxjNni43kdQwgnWNReilDMblYTn_I0"
)
SERVICE = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJpc3MiOiJzdXBhYmFzZS1kZW1vIiwicm9sZSI6InNlcnZpY2Vfcm9sZSIsImV4cCI6MTk4"
    "MzgxMjk5Nn0.EGIM96RAZx35lJzdJsyH-qQwv8Hdp7fsn3W0YpN81IU"
)

# `supabase status -o json` with every service of the default config running (toValues: all keys).
STATUS_JSON = f"""{{
  "ANON_KEY": "{ANON}",
  "API_URL": "http://127.0.0.1:54321",
  "DB_URL": "postgresql://postgres:postgres@127.0.0.1:54322/postgres",
  "FUNCTIONS_URL": "http://127.0.0.1:54321/functions/v1",
  "GRAPHQL_URL": "http://127.0.0.1:54321/graphql/v1",
  "INBUCKET_URL": "http://127.0.0.1:54324",
  "JWT_SECRET": "super-secret-jwt-token-with-at-least-32-characters-long",
  "MAILPIT_URL": "http://127.0.0.1:54324",
  "MCP_URL": "http://127.0.0.1:54321/mcp",
  "PUBLISHABLE_KEY": "sb_publishable_ACJWlzQHlZjBrEguHvfOxg_3BJgxAaH",
  "REST_URL": "http://127.0.0.1:54321/rest/v1",
  "S3_PROTOCOL_ACCESS_KEY_ID": "625729a08b95bf1b7ff351a663f3a23c",
  "S3_PROTOCOL_ACCESS_KEY_SECRET": "850181e4652dd023b7a98c58ae0d2d34bd487ee0cc3254aed6eda37307425907",
  "S3_PROTOCOL_REGION": "local",
  "SECRET_KEY": "sb_secret_N7UND0UgjKTVK-Uodkm0Hg_xSvEMPvz",
  "SERVICE_ROLE_KEY": "{SERVICE}",
  "STORAGE_S3_URL": "http://127.0.0.1:54321/storage/v1/s3",
  "STUDIO_URL": "http://127.0.0.1:54323"
}}
"""

# The same through `-o env` (godotenv.Marshal quotes every value).
STATUS_ENV = f'''ANON_KEY="{ANON}"
API_URL="http://127.0.0.1:54321"
DB_URL="postgresql://postgres:postgres@127.0.0.1:54322/postgres"
SERVICE_ROLE_KEY="{SERVICE}"
STUDIO_URL="http://127.0.0.1:54323"
'''

EXPECTED_APP_ENV = {
    "NEXT_PUBLIC_SUPABASE_URL": "http://127.0.0.1:54321",
    "NEXT_PUBLIC_SUPABASE_ANON_KEY": ANON,
    "SUPABASE_SERVICE_ROLE_KEY": SERVICE,
}


def test_status_json_gives_the_app_env():
    values = sb.parse_status_json(STATUS_JSON)
    assert values["STUDIO_URL"] == "http://127.0.0.1:54323"
    assert sb.app_env(values) == EXPECTED_APP_ENV


def test_status_env_gives_the_same_app_env():
    assert sb.app_env(sb.parse_status_env(STATUS_ENV)) == EXPECTED_APP_ENV


def test_status_json_after_a_log_line_on_stdout():
    assert (
        sb.parse_status_json("Stopped services: [x]\n" + STATUS_JSON)["API_URL"] == "http://127.0.0.1:54321"
    )


def test_publishable_and_secret_keys_when_the_jwt_ones_are_gone():
    # ANON_KEY / SERVICE_ROLE_KEY are marked deprecated in CustomName: a later CLI may drop them.
    values = sb.parse_status_json(STATUS_JSON)
    del values["ANON_KEY"], values["SERVICE_ROLE_KEY"]
    env = sb.app_env(values)
    assert env["NEXT_PUBLIC_SUPABASE_ANON_KEY"].startswith("sb_publishable_")
    assert env["SUPABASE_SERVICE_ROLE_KEY"].startswith("sb_secret_")


def test_kong_or_auth_excluded_names_what_is_missing():
    # toValues: API_URL only when kong runs, the keys only when gotrue runs.
    values = {
        k: v
        for k, v in sb.parse_status_json(STATUS_JSON).items()
        if not k.endswith("_KEY") and k != "API_URL"
    }
    with pytest.raises(sb.SupabaseError) as err:
        sb.app_env(values)
    assert "NEXT_PUBLIC_SUPABASE_URL (status key API_URL)" in str(err.value)
    assert "SUPABASE_SERVICE_ROLE_KEY" in str(err.value)


def test_stopped_services_line():
    assert sb.parse_stopped("Stopped services: [supabase_imgproxy_cmx supabase_pooler_cmx]\n") == [
        "supabase_imgproxy_cmx",
        "supabase_pooler_cmx",
    ]
    assert sb.parse_stopped("") == []


def test_no_json_is_an_error():
    with pytest.raises(sb.SupabaseError):
        sb.parse_status_json("failed to inspect container health: No such container: supabase_db_x")


# `supabase services -o json` as the pinned CLI printed it for `supabase init`'s config (recorded here).
SERVICES_JSON = json.dumps(
    [
        {"local": "17.6.1.167", "name": "supabase/postgres", "remote": ""},
        {"local": "v2.196.0", "name": "supabase/gotrue", "remote": ""},
        {"local": "v16.2", "name": "postgrest/postgrest", "remote": ""},
        {"local": "v2.130.0", "name": "supabase/realtime", "remote": ""},
        {"local": "v1.72.1", "name": "supabase/storage-api", "remote": ""},
        {"local": "v1.74.3", "name": "supabase/edge-runtime", "remote": ""},
        {"local": "2026.08.24-sha-8ec45b2", "name": "supabase/studio", "remote": ""},
        {"local": "v0.99.0", "name": "supabase/postgres-meta", "remote": ""},
        {"local": "1.50.6", "name": "supabase/logflare", "remote": ""},
        {"local": "2.9.12", "name": "supabase/supavisor", "remote": ""},
    ],
    indent=2,
)


def test_needed_images_follow_exclude_config_and_registry():
    services = sb.parse_services(SERVICES_JSON)
    config = {"analytics": {"enabled": True}, "studio": {"enabled": True}}
    images = sb.needed_images(
        services, config, ["logflare", "edge-runtime", "supavisor"], reg="public.ecr.aws"
    )
    assert images == [
        "public.ecr.aws/supabase/postgres:17.6.1.167",
        "public.ecr.aws/supabase/gotrue:v2.196.0",
        "public.ecr.aws/supabase/postgrest:v16.2",
        "public.ecr.aws/supabase/realtime:v2.130.0",
        "public.ecr.aws/supabase/storage-api:v1.72.1",
        "public.ecr.aws/supabase/studio:2026.08.24-sha-8ec45b2",
        "public.ecr.aws/supabase/postgres-meta:v0.99.0",
    ]
    # Studio off in config.toml: neither studio nor postgres-meta; docker.io: the short names.
    images = sb.needed_images(services, {"studio": {"enabled": False}}, ["logflare"], reg="docker.io")
    assert "supabase/studio:2026.08.24-sha-8ec45b2" not in images
    assert "postgrest/postgrest:v16.2" in images


def test_port_specs_from_config():
    config = {
        "api": {"port": 54321},
        "db": {"port": 54322, "pooler": {"port": 54329}},
        "studio": {"port": 54323},
    }
    assert [s["port"] for s in sb.port_specs(config, ["studio"])] == [54321, 54322]


# One line of the pinned CLI's stderr when no registry resolves (recorded here, shortened to 2 attempts).
PULL_FAILURE = (
    "failed to pull docker image from all registries: public.ecr.aws/supabase/postgres:17.6.1.167 attempt 1: "
    'Error response from daemon: Get "https://public.ecr.aws/v2/": dial tcp: lookup public.ecr.aws on '
    "10.255.255.53:53: no such host; supabase/postgres:17.6.1.167 attempt 3: Error response from daemon: "
    'Get "https://registry-1.docker.io/v2/": dial tcp: lookup registry-1.docker.io on 10.255.255.53:53: '
    "no such host"
)


def test_pull_failures_become_one_sentence():
    stderr = "\n".join(
        [
            'Error response from daemon: Get "https://ghcr.io/v2/": dial tcp: lookup ghcr.io: no such host',
            "Retrying after 4s: ghcr.io/supabase/kong:2.8.1",
            PULL_FAILURE,
            PULL_FAILURE.replace("postgres:17.6.1.167", "kong:2.8.1"),
            "Try rerunning the command with --debug to troubleshoot the error.",
        ]
    )
    text = sb.summarize_start_failure(stderr)
    assert text == (
        "2 image(s) could not be pulled from any registry (kong:2.8.1, postgres:17.6.1.167): "
        "DNS lookup of public.ecr.aws failed (no such host)"
    )


def test_port_and_docker_version_failures():
    stderr = (
        "failed to start docker container: Error response from daemon: driver failed programming external "
        "connectivity on endpoint supabase_db_x: Bind for 0.0.0.0:54322 failed: port is already allocated\n"
        "Error response from daemon: client version 1.47 is too new. Maximum supported API version is 1.41\n"
    )
    text = sb.summarize_start_failure(stderr)
    assert "port 54322 on 0.0.0.0 is already taken" in text
    assert "the Docker engine is too old: it speaks API 1.41, the Supabase CLI needs 1.47" in text


def test_other_failures_keep_the_last_line():
    assert sb.summarize_start_failure(
        "boom\nTry rerunning the command with --debug to troubleshoot the error.\n"
    ) == ("boom")


def test_docker_versions_compare():
    assert sb.version_tuple("20.10.24+dfsg1") < sb.version_tuple("24.0")
    assert sb.version_tuple("27.3.1") >= sb.version_tuple("20.10")
