"""dev's fast re-run: nothing changed and every service healthy, so dev.yml stops early, changing nothing."""

from __future__ import annotations

from conftest import all_healthy, converge, wait_until


def test_unchanged_rerun_stops_early_and_a_changed_input_converges_fully():
    wait_until(all_healthy, 120, "the stack to be healthy")
    converge()  # a full converge records the fingerprint
    fast = converge("-e", "cmx_fast_rerun=true")
    assert "stack is healthy" in fast and "changed=0" in fast  # the summary, then the end
    assert "Start the stack" not in fast
    # Any other input (here the summary's host name) is a different fingerprint: everything runs again.
    full = converge("-e", "cmx_fast_rerun=true", "-e", "summary_host=127.0.0.1")
    assert "Start the stack" in full
