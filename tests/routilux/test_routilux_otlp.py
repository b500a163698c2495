"""The routilux example, unmodified, under ``opentelemetry-instrument``, exporting to Phoenix
(traces over OTLP/HTTP and OTLP/gRPC) and VictoriaMetrics (metrics over OTLP/HTTP)."""

from __future__ import annotations

import pytest
from otlp_backends import fetch_stored, run_exporting
from support import EXAMPLES

pytestmark = pytest.mark.e2e

STEPS = {"extract", "transform", "load", "audit"}


@pytest.mark.parametrize("traces_protocol", ["http", "grpc"])
def test_runs_and_routines_in_the_backends(otlp_backends, traces_protocol):
    run = run_exporting(
        EXAMPLES / "routilux_pipeline.py", backends=otlp_backends, traces_protocol=traces_protocol
    )
    stored = fetch_stored(run, otlp_backends)

    (pipeline,) = stored.named("RUN nightly_etl")
    assert pipeline["parent_id"] is None
    assert pipeline["attributes"]["execution.orchestrator"] == "routilux"
    assert pipeline["attributes"]["cicd.pipeline.result"] == "failure"
    steps = {span["name"]: span for span in stored.children(pipeline)}
    assert set(steps) == STEPS
    for step in steps.values():
        assert step["context"]["trace_id"] == pipeline["context"]["trace_id"]
        assert step["attributes"]["cicd.pipeline.name"] == "nightly_etl"
    assert steps["audit"]["status_code"] == "ERROR"
    assert steps["audit"]["attributes"]["error.type"] == "ValueError"
    assert steps["load"]["attributes"]["execution.status"] == "succeeded"

    assert stored.transition_counts('execution_level="pipeline"') == {
        ("queued", "running"): 1,
        ("running", "failed"): 1,
    }
    assert stored.transition_counts('execution_level="step"') == {
        ("running", "succeeded"): 3,
        ("running", "failed"): 1,
    }
    # Each routine ran at least its sleep: the stored sums are the time spent running.
    running = stored.sums_by(
        "execution_status_transition_duration_seconds_sum",
        "cicd_pipeline_task_name",
        selector='execution_status_from="running"',
    )
    assert running["extract"] >= 0.02 and running["transform"] >= 0.03
    spawns = stored.sums_by("execution_worker_spawns_total", "execution_worker_outcome")
    assert spawns == {"success": 1}
