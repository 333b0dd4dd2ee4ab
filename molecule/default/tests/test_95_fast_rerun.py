"""dev's fast re-run: nothing changed and every service healthy, so dev.yml stops early, changing nothing."""

from __future__ import annotations

from conftest import PROJECT, all_healthy, converge, docker, inspect, pg_connect, wait_until


def test_unchanged_rerun_stops_early_and_a_changed_input_converges_fully():
    wait_until(all_healthy, 120, "the stack to be healthy")
    converge()  # a full converge records the fingerprint
    fast = converge("-e", "cmx_fast_rerun=true")
    assert "stack is healthy" in fast and "changed=0" in fast  # the summary, then the end
    assert "Start the stack" not in fast
    # Any other input (here the summary's host name) is a different fingerprint: everything runs again.
    full = converge("-e", "cmx_fast_rerun=true", "-e", "summary_host=127.0.0.1")
    assert "Start the stack" in full


def test_a_stopped_unchanged_stack_starts_before_the_checks_and_the_converge_still_runs_every_step(inv):
    converge()  # records the fingerprint, the rendered files and how the stack started
    docker("compose", "-p", PROJECT, "stop", "--timeout", "5")
    label = f"label=com.docker.compose.project={PROJECT}"
    stopped = docker("ps", "-a", "--filter", label, "--format", "{{.Names}}").stdout.split()
    assert stopped and not any(inspect(name)["State"]["Running"] for name in stopped)
    early = converge("-e", "cmx_fast_rerun=true")
    assert "started the stack of the last converge before its checks" in early
    # Every step after the checks ran (the migrations step among them), and the stack is healthy.
    assert "Apply pending migrations" in early and "failed=0" in early
    assert all_healthy()
    with pg_connect(inv) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM supabase_migrations.schema_migrations")
        assert cur.fetchone()[0] > 0
