"""The loom example, unmodified, under ``opentelemetry-instrument``, exporting to Phoenix
(traces over OTLP/HTTP and OTLP/gRPC) and VictoriaMetrics (metrics over OTLP/HTTP)."""

from __future__ import annotations

import pytest
from otlp_backends import fetch_stored, run_exporting
from support import EXAMPLES

pytestmark = pytest.mark.e2e

STAGE_OF = {
    "ExtractOrders": "StageOrders",
    "TotalByCountry": "StageOrders",
    "CountOrders": "StageOrders",
    "WriteReport": "BuildReport",
}


@pytest.mark.parametrize("traces_protocol", ["http", "grpc"])
def test_attempts_processes_and_steps_in_the_backends(otlp_backends, traces_protocol):
    run = run_exporting(
        EXAMPLES / "loom_pipeline.py", backends=otlp_backends, traces_protocol=traces_protocol
    )
    assert run.output[0] == "attempt 1 failed: totals rejected: the batch is incomplete"
    stored = fetch_stored(run, otlp_backends)

    failed, retried = sorted(
        stored.named("RUN NightlyOrders"), key=lambda s: s["attributes"]["execution.attempt"]
    )
    assert failed["status_code"] == "ERROR"
    assert failed["attributes"]["error.type"] == "ValueError"
    assert retried["attributes"]["execution.status"] == "succeeded"
    assert (
        {failed["attributes"]["execution.correlation_id"]}
        == {retried["attributes"]["execution.correlation_id"]}
        == {"orders-2024-06-01"}
    )
    stages = {span["name"]: span for span in stored.children(retried)}
    assert set(stages) == set(STAGE_OF.values())
    for step, stage in STAGE_OF.items():
        (span,) = [s for s in stored.children(stages[stage]) if s["name"] == step]
        assert span["attributes"]["execution.level"] == "step"
    (rejected,) = [s for s in stored.named("TotalByCountry") if s["status_code"] == "ERROR"]
    assert rejected["attributes"]["error.type"] == "ValueError"

    for level in ("pipeline", "stage", "step"):
        assert set(stored.transition_counts(f'execution_level="{level}"')) == {
            ("running", "succeeded"),
            ("running", "failed"),
        }
