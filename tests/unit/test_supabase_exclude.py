"""`supabase start` starts only what the inventory enables: every cmx_supabase_*_enabled false adds its
containers to the CLI's --exclude list (roles/supabase/vars/main.yml); analytics stays out unless enabled."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ROLE = REPO / "roles" / "supabase"


def exclude(**flags) -> list[str]:
    extra = [arg for name, value in flags.items() for arg in ("-e", json.dumps({name: value}))]
    files = [
        ROLE / "defaults" / "main" / "main.yml",
        ROLE / "defaults" / "main" / "config.yml",
        ROLE / "vars" / "main.yml",
    ]
    done = subprocess.run(
        [
            REPO / ".venv" / "bin" / "ansible",
            "localhost",
            "-o",
            "-m",
            "debug",
            "-a",
            "msg={{ __supabase_exclude | to_json }}",
        ]
        + [arg for path in files for arg in ("-e", f"@{path}")]
        + ["-e", "cmx_environment=dev", "-e", "cmx_project_dir=/tmp/cmx-exclude"]
        + extra,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(
        done.stdout.split('"msg": ', 1)[1].rsplit("}", 1)[0].strip().strip('"').replace('\\"', '"')
    )


@pytest.mark.parametrize(
    ("flag", "containers"),
    [
        ("cmx_supabase_auth_enabled", {"gotrue"}),
        ("cmx_supabase_realtime_enabled", {"realtime"}),
        ("cmx_supabase_storage_enabled", {"storage-api", "imgproxy"}),
        ("cmx_supabase_studio_enabled", {"studio", "postgres-meta"}),
        ("cmx_supabase_local_smtp_enabled", {"mailpit"}),
        ("cmx_supabase_api_enabled", {"postgrest"}),
    ],
)
def test_a_disabled_service_is_excluded(flag, containers):
    default = set(exclude())
    assert (containers - {"imgproxy"}).isdisjoint(default)  # imgproxy is left out by default
    assert containers <= set(exclude(**{flag: False}))


def test_analytics_start_only_when_enabled():
    assert {"logflare", "vector"} <= set(exclude())
    assert {"logflare", "vector"}.isdisjoint(exclude(cmx_supabase_analytics_enabled=True))
