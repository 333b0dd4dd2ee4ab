"""No password or key of the inventory is visible in `docker inspect`: secrets reach the containers as files,
never as environment variables, labels or command-line arguments."""

from __future__ import annotations

import json

from conftest import inspect, stack_containers

SECRET_NAME_ENDINGS = ("password", "secret_key", "access_key")


def test_no_inventory_secret_appears_in_any_containers_inspect_output(inv):
    secrets = {
        name: value
        for name, value in inv.items()
        if name.startswith("cmx_") and name.endswith(SECRET_NAME_ENDINGS) and isinstance(value, str) and value
    }
    assert "cmx_postgres_password" in secrets and "cmx_s3_secret_key" in secrets, sorted(secrets)
    containers = stack_containers()
    assert containers
    for name in containers:
        shown = json.dumps(inspect(name))
        leaked = sorted(variable for variable, value in secrets.items() if value in shown)
        assert leaked == [], f"{name}: docker inspect shows {leaked}"
