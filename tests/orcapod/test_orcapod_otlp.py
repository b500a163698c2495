"""The orcapod example, unmodified, under ``opentelemetry-instrument``, exporting to Phoenix
(traces over OTLP/HTTP and OTLP/gRPC) and VictoriaMetrics (metrics over OTLP/HTTP)."""

from __future__ import annotations

import pytest
from otlp_backends import fetch_stored, run_exporting
from support import EXAMPLES

pytestmark = pytest.mark.e2e

NODES = {"numbers", "double", "add_one"}


@pytest.mark.parametrize(("traces_protocol", "arguments"), [("http", ()), ("grpc", ("--async",))])
def test_runs_nodes_and_items_in_the_backends(otlp_backends, traces_protocol, arguments):
    run = run_exporting(
        EXAMPLES / "orcapod_pipeline.py",
        *arguments,
        backends=otlp_backends,
        traces_protocol=traces_protocol,
    )
    stored = fetch_stored(run, otlp_backends)

    runs = stored.named("RUN numbers_pipeline")
    assert len(runs) == 2  # the second run is served from the cache, but for the failed item
    for pipeline in runs:
        assert pipeline["parent_id"] is None
        assert pipeline["status_code"] == "ERROR"
        assert pipeline["attributes"]["error.type"] == "ValueError"
        nodes = {span["name"]: span for span in stored.children(pipeline)}
        assert set(nodes) == NODES
        assert nodes["double"]["attributes"]["error.type"] == "ValueError"
    assert sorted(
        s["name"] for s in stored.spans if s["attributes"]["execution.status"] == "cached"
    ) == ["add_one"]

    assert stored.transition_counts('execution_level="item"') == {
        ("running", "succeeded"): 6,
        ("running", "cached"): 6,
        ("running", "failed"): 2,
    }
    assert stored.transition_counts('execution_level="pipeline"') == {("running", "failed"): 2}
