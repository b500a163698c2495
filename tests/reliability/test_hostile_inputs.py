"""Hostile values to every public entry point: each affects only its own execution.

Every case runs 49 ordinary executions and one whose argument is hostile, all exported in one
batch. Whatever the value, the API returns None, the 49 ordinary spans are all there, the
batch encodes as OTLP (one value that does not would cost all 50 spans), the hostile execution
either is there, ended and clean, or was dropped as a whole, and every count is back to 0.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
from checks import ledger_for, settled
from figures import FIGURES
from hostile import HOSTILE, LONE_SURROGATE

from opentelemetry_instrumentation_execstatus import api

ORDINARY = 49

# Every keyword of report_status, and the status itself; the hostile execution ends with
# ``failed`` so that ``error`` is read.
REPORT_STATUS_ARGUMENTS = (
    "execution_id",
    "status",
    "level",
    "name",
    "pipeline",
    "parent_id",
    "run_id",
    "attempt",
    "correlation_id",
    "timestamp",
    "error",
)


def _ordinary(index: int) -> None:
    api.report_status(f"run-{index}", "queued", level="pipeline", pipeline="nightly")
    api.report_status(f"run-{index}", "running")
    api.report_status(f"run-{index}/load", "running", name=f"ok-{index}", parent_id=f"run-{index}")
    api.report_status(f"run-{index}/load", "succeeded")
    api.report_status(f"run-{index}", "succeeded")


def _hostile_execution(argument: str, value: Any) -> None:
    """One execution with ``argument`` hostile in every report of it."""
    identity = {"execution_id": "hostile", "status": None}
    options: dict[str, Any] = {"name": "hostile"}
    if argument in identity:
        identity[argument] = value
    else:
        options[argument] = value
    execution_id = identity["execution_id"]
    for status in ("queued", "running", "failed"):
        result = api.report_status(
            execution_id,
            identity["status"] if argument == "status" and status == "running" else status,
            **options,
        )
        assert result is None


@pytest.mark.parametrize("argument", REPORT_STATUS_ARGUMENTS)
@pytest.mark.parametrize("label", list(HOSTILE))
def test_report_status_with_one_hostile_argument(instrument, argument, label):
    otel = instrument()
    ledger = ledger_for(otel)
    for index in range(ORDINARY // 2):
        _ordinary(index)
    _hostile_execution(argument, HOSTILE[label])
    for index in range(ORDINARY // 2, ORDINARY):
        _ordinary(index)

    names = [span.name for span in otel.spans()]
    ordinary = {f"ok-{index}" for index in range(ORDINARY)}
    assert ordinary <= set(names), f"ordinary spans lost: {sorted(ordinary - set(names))}"
    assert names.count("RUN nightly") == ORDINARY
    others = [span for span in otel.spans() if span.name not in ordinary | {"RUN nightly"}]
    # The hostile execution is there, unless its very id cannot be a key (then it is dropped
    # as a whole); any other hostile argument is cleaned or left out, never a lost execution.
    expected = 0 if argument == "execution_id" and not _hashable(HOSTILE[label]) else 1
    assert len(others) == expected, [span.name for span in others]
    for span in others:
        _clean(span)
    settled(otel, ledger)
    FIGURES.hostile_inputs += 1
    FIGURES.executions += 2 * ORDINARY + 1
    FIGURES.spans(2 * ORDINARY, len(names) - len(others))


def _hashable(value: Any) -> bool:
    try:
        hash(value)
    except Exception:
        return False
    return True


def _clean(span: Any) -> None:
    """The hostile execution's span: bounded, valid text, a start before its end."""
    assert span.end_time >= span.start_time
    texts = [span.name, *(v for v in span.attributes.values() if isinstance(v, str))]
    for event in span.events:
        texts += [v for v in event.attributes.values() if isinstance(v, str)]
    for text in texts:
        text.encode("utf-8")  # raises on a lone surrogate
    for value in span.attributes.values():
        if isinstance(value, int) and not isinstance(value, bool):
            assert -(2**63) <= value < 2**63, value


def test_lone_surrogates_are_replaced_not_dropped(instrument):
    otel = instrument()
    api.report_status("f", "running", name=LONE_SURROGATE)
    api.report_status("f", "failed", error="Timeout\udcff")
    (span,) = otel.spans()
    assert span.name == "job-\ufffd"
    assert span.attributes["error.type"] == "Timeout\ufffd"


def test_timestamps_outside_the_sane_range_are_taken_as_now(instrument):
    otel = instrument()
    for index, timestamp in enumerate((math.nan, math.inf, -5.0, 1.7e12, 2**70)):
        api.report_status(index, "running", name="t", timestamp=timestamp)
        api.report_status(index, "succeeded", timestamp=timestamp)
    spans = otel.spans()
    assert len(spans) == 5, "a status change with a bad timestamp was dropped"
    for span in spans:
        assert span.attributes["execution.status"] == "succeeded"
        assert 0 < span.start_time <= span.end_time < 2**64


WORKER_CALLS = {
    "spawn success": api.report_worker_spawn,
    "spawn reason": lambda value: api.report_worker_spawn(False, value),
    "health result": api.report_worker_health_check,
    "health cancelled": lambda value: api.report_worker_health_check(True, cancelled=value),
    "drain success": lambda value: api.report_worker_drain(value, 1.0),
    "drain duration": lambda value: api.report_worker_drain(True, value),
    "worker id": lambda value: api.report_worker_state(value, "busy"),
    "worker state": lambda value: api.report_worker_state("w-hostile", value),
}


@pytest.mark.parametrize("call", list(WORKER_CALLS))
@pytest.mark.parametrize("label", list(HOSTILE))
def test_worker_reports_with_one_hostile_argument(instrument, call, label):
    otel = instrument()
    ledger = ledger_for(otel)
    api.report_worker_state("w-1", "busy")
    assert WORKER_CALLS[call](HOSTILE[label]) is None
    api.report_worker_spawn(True)
    api.report_worker_state("w-1", "available")
    api.report_worker_state("w-1", None)
    api.report_worker_state("w-hostile", None)
    try:
        api.report_worker_state(HOSTILE[label], None)
    except Exception as error:  # pragma: no cover - the assertion below says what happened
        pytest.fail(f"report_worker_state raised {error!r}")
    assert otel.sums_by("execution.worker.spawns", "execution.worker.outcome")["success"] >= 1
    for point in otel.points("execution.worker.drain.duration"):
        assert math.isfinite(point.sum) and point.sum >= 0
    settled(otel, ledger)
    FIGURES.hostile_inputs += 1


@pytest.mark.parametrize("label", list(HOSTILE))
def test_instrument_options_with_a_hostile_value(otel, label):
    """An option the caller got wrong is ignored (logged), never a failed ``instrument()``."""
    from opentelemetry_instrumentation_execstatus import ExecStatusInstrumentor

    instrumentor = ExecStatusInstrumentor()
    options = dict.fromkeys(
        (
            "orchestrators",
            "names_on_metrics",
            "name_cardinality_limit",
            "max_in_flight",
            "item_spans",
            "exception_detail",
            "exception_text_limit",
        ),
        HOSTILE[label],
    )
    try:
        instrumentor.instrument(
            tracer_provider=otel.tracer_provider, meter_provider=otel.meter_provider, **options
        )
        api.report_status("o", "running", name="o")
        api.report_status("o", "succeeded")
    finally:
        instrumentor.uninstrument()
    assert [span.name for span in otel.spans()] == ["o"]
    FIGURES.hostile_inputs += 1


def test_a_parent_id_that_cannot_be_looked_up_is_no_parent(instrument):
    otel = instrument()
    ledger = ledger_for(otel)
    api.report_status("orphan", "running", name="orphan", parent_id=["not", "hashable"])
    api.report_status("orphan", "succeeded")
    (span,) = otel.spans()
    assert span.name == "orphan" and span.parent is None
    settled(otel, ledger)
