"""The control-plane example (public API only) under ``opentelemetry-instrument``, exporting
to Phoenix and VictoriaMetrics: what a user sees there."""

from __future__ import annotations

import pytest
from otlp_backends import fetch_stored, run_exporting
from support import EXAMPLES

pytestmark = pytest.mark.e2e

STEPS = {
    "extract_orders",
    "extract_customers",
    "load_orders",
    "load_customers",
    "audit",
    "publish_report",
}


@pytest.mark.parametrize("traces_protocol", ["http", "grpc"])
def test_runs_steps_and_workers_in_the_backends(otlp_backends, traces_protocol):
    run = run_exporting(
        EXAMPLES / "control_plane.py", backends=otlp_backends, traces_protocol=traces_protocol
    )
    assert "audit: failed" in run.output
    stored = fetch_stored(run, otlp_backends)

    (pipeline,) = stored.named("RUN nightly")
    assert pipeline["parent_id"] is None
    assert pipeline["status_code"] == "ERROR"
    assert pipeline["attributes"]["cicd.pipeline.result"] == "failure"
    steps = {span["name"]: span for span in stored.children(pipeline)}
    assert set(steps) == STEPS
    assert len(stored.spans) == 1 + len(STEPS)
    audit = steps["audit"]
    assert audit["status_code"] == "ERROR"
    assert audit["attributes"]["error.type"] == "ValueError"
    assert [event["name"] for event in audit["events"]][-1] == "exception"
    assert steps["publish_report"]["attributes"]["execution.status"] == "succeeded"

    assert stored.transition_counts('execution_level="pipeline"') == {
        ("queued", "running"): 1,
        ("running", "failed"): 1,
    }
    load_orders = 'cicd_pipeline_task_name="load_orders"'
    assert stored.transition_counts(load_orders) == {
        ("queued", "running"): 2,  # handed to the hanging worker, then requeued
        ("running", "queued"): 1,
        ("running", "succeeded"): 1,
    }
    spawns = stored.sums_by(
        "execution_worker_spawns_total",
        "execution_worker_outcome",
        "execution_worker_spawn_failure_reason",
    )
    assert spawns == {("success", None): 3, ("failure", "pod_ready"): 1}
    checks = stored.sums_by(
        "execution_worker_health_checks_total", "execution_worker_health_result"
    )
    assert checks == {"pass": 6, "fail": 1}
    assert stored.sums_by("execution_worker_drains_total", "execution_worker_outcome") == {
        "success": 3
    }
    assert stored.sums_by(
        "execution_worker_drain_duration_seconds_count", "execution_orchestrator"
    ) == {"api": 3}
    assert set(stored.sums_by("execution_active", "execution_status").values()) == {0}
