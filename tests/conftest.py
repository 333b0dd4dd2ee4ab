"""Fixtures shared by the unit and integration tests."""

from ansible_collections.cleanmatex.infra.tests.pg_cluster import (  # noqa: F401 (pytest fixtures)
    admin_cursor,
    fresh_db,
    pg,
    throwaway_pg_cluster,
)
from ansible_collections.cleanmatex.infra.tests.strict_ci import fail_on_skips_in_ci


def pytest_sessionfinish(session, exitstatus):
    fail_on_skips_in_ci(session)
