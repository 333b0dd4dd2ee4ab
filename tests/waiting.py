"""Polling shared by the Molecule verify step (molecule/default/tests) and the fault tests (tests/faults).

Imported as ``ansible_collections.cleanmatex.infra.tests.waiting`` (like tests/strict_ci.py).
"""

from __future__ import annotations

import time


def wait_until(condition, timeout: float, what: str, interval: float = 0.25):
    """Poll `condition` until it returns a truthy value; fail naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            result = condition()
            if result:
                return result
        except Exception as error:  # the service may still be starting
            last_error = error
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what} (last error: {last_error})")
