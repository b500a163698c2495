"""The database-backed example, unmodified, under ``opentelemetry-instrument``, exporting to
Phoenix (traces over OTLP/HTTP and OTLP/gRPC) and VictoriaMetrics (metrics over OTLP/HTTP)."""

from __future__ import annotations

import pytest
from otlp_backends import fetch_stored, run_exporting
from support import EXAMPLES

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("traces_protocol", ["http", "grpc"])
def test_runs_and_jobs_in_the_backends(otlp_backends, traces_protocol):
    run = run_exporting(
        EXAMPLES / "sqlalchemy_jobs.py", backends=otlp_backends, traces_protocol=traces_protocol
    )
    stored = fetch_stored(run, otlp_backends)

    (pipeline,) = stored.named("RUN nightly_reports")
    assert pipeline["parent_id"] is None
    assert pipeline["attributes"]["execution.orchestrator"] == "sqlalchemy"
    jobs = {span["name"]: span for span in stored.children(pipeline)}
    assert set(jobs) == {"extract", "transform", "publish"}
    assert jobs["publish"]["status_code"] == "ERROR"
    assert jobs["publish"]["attributes"]["error.type"] == "failed"
    assert jobs["extract"]["attributes"]["execution.status"] == "succeeded"

    assert stored.transition_counts('execution_level="step"') == {
        ("queued", "pending"): 3,
        ("pending", "running"): 3,
        ("running", "succeeded"): 2,
        ("running", "failed"): 1,
    }
    assert stored.transition_counts('execution_level="pipeline"') == {
        ("queued", "running"): 1,
        ("running", "failed"): 1,
    }
