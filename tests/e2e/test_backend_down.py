"""A pipeline whose OTLP backends are down runs as it would with them up: same result, same
time, and the process exits within the export timeout instead of hanging on it."""

from __future__ import annotations

import socket

import pytest
from otlp_backends import EXPORT_TIMEOUT_SECONDS, run_exporting
from support import EXAMPLES

pytestmark = pytest.mark.e2e

# Export while the pipeline runs, not only at exit, so that failing exports overlap its work.
EXPORT_OFTEN = {"OTEL_METRIC_EXPORT_INTERVAL": "50", "OTEL_BSP_SCHEDULE_DELAY": "20"}
RUNS = 5


def _closed_port() -> int:
    """A loopback port nothing listens on (what a stopped backend leaves)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.parametrize("traces_protocol", ["http", "grpc"])
def test_backends_down_change_neither_result_nor_time(otlp_backends, traces_protocol):
    def run(overrides):
        return run_exporting(
            EXAMPLES / "control_plane.py",
            "--runs",
            str(RUNS),
            backends=otlp_backends,
            traces_protocol=traces_protocol,
            console=False,  # the script's output alone: it is the result, and it is timed
            overrides={**EXPORT_OFTEN, **overrides},
        )

    dead = f"http://127.0.0.1:{_closed_port()}"
    up = run({})
    down = run(
        {
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": dead
            + ("" if traces_protocol == "grpc" else "/v1/traces"),
            "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": f"{dead}/opentelemetry/v1/metrics",
        }
    )
    assert down.output == up.output
    assert len(down.output) == 6 * RUNS  # every job of every run, with its final status
    # The pipeline's work is done as soon with the backends down as with them up...
    assert down.output_seconds < 1.5 * up.output_seconds + 0.25, (down, up)
    # ...and at exit each of the two OTLP exporters gives up after the export timeout.
    assert down.seconds < up.seconds + 2 * EXPORT_TIMEOUT_SECONDS + 2.0, (down, up)
