"""The ``sqlalchemy`` adapter: declared columns report through the instrumentation's own adapter,
for as long as it is on, whenever they were declared; no instrumentation cycle adds a listener.
"""

from __future__ import annotations

from typing import Callable

import pytest
from models import Job, Status
from sqlalchemy import inspect
from sqlalchemy.orm import Session
from sqlalchemy_database import Database
from support import Telemetry

from opentelemetry_instrumentation_execstatus import ExecStatusInstrumentor
from opentelemetry_instrumentation_execstatus.adapters import all_adapters
from opentelemetry_instrumentation_execstatus.adapters.base import enabled_adapters
from opentelemetry_instrumentation_execstatus.adapters.sqlalchemy import (
    SQLAlchemyAdapter,
    StatusColumn,
    instrument_status_column,
)


def _run_job(database: Database, *statuses: Status) -> None:
    """A job created queued, then moved through ``statuses``, a commit each."""
    with Session(database.engine) as session:
        job = Job(name="train")
        job.move_to(Status.QUEUED)
        session.add(job)
        session.commit()
        for status in statuses:
            job.move_to(status)
            session.commit()


def _instrument_with(otel: Telemetry, **options: str) -> None:
    ExecStatusInstrumentor().instrument(
        tracer_provider=otel.tracer_provider, meter_provider=otel.meter_provider, **options
    )


def test_the_adapter_is_enabled_for_sqlalchemy_2() -> None:
    assert SQLAlchemyAdapter in enabled_adapters(all_adapters(), None)
    assert SQLAlchemyAdapter.requirement() == "sqlalchemy >= 2.0, < 3"
    assert SQLAlchemyAdapter.orchestrator.value == "sqlalchemy"


@pytest.mark.parametrize("declared", ["before instrument()", "after instrument()"])
def test_a_declared_column_reports_whenever_it_was_declared(
    instrument: Callable[..., Telemetry],
    database: Database,
    columns: Callable[..., StatusColumn],
    declared: str,
) -> None:
    if declared == "before instrument()":
        columns(Job.status, name=Job.name)
        otel = instrument()
    else:
        otel = instrument()
        columns(Job.status, name=Job.name)
    _run_job(database, Status.RUNNING, Status.SUCCEEDED)
    assert otel.transition_counts(execution_orchestrator="sqlalchemy") == {
        ("queued", "running"): 1,
        ("running", "succeeded"): 1,
    }
    assert otel.span("train").attributes["execution.status"] == "succeeded"


def test_columns_report_through_the_current_instrumentation_only(
    database: Database, columns: Callable[..., StatusColumn]
) -> None:
    """Reported to the first instrumentation's SDK, then to nobody once it is off, then to
    the second one's SDK only: each instrumentation's adapter, never a leftover."""
    first, second = Telemetry(), Telemetry()
    columns(Job.status, name=Job.name)
    instrumentor = ExecStatusInstrumentor()
    try:
        _instrument_with(first)
        _run_job(database, Status.SUCCEEDED)
        instrumentor.uninstrument()
        _run_job(database, Status.FAILED)
        _instrument_with(second)
        _run_job(database, Status.RUNNING)
    finally:
        instrumentor.uninstrument()
    assert first.transition_counts() == {("queued", "succeeded"): 1}
    assert [span.attributes["execution.status"] for span in first.spans()] == ["succeeded"]
    assert second.transition_counts() == {("queued", "running"): 1}
    # The second instrumentation ended the job it had in flight; it never saw the others.
    assert [span.attributes["execution.status"] for span in second.spans()] == ["running"]


def test_columns_report_only_when_their_adapter_is_selected(
    instrument: Callable[..., Telemetry],
    database: Database,
    columns: Callable[..., StatusColumn],
) -> None:
    """The ``orchestrators`` option selects adapters: without ``sqlalchemy`` the declared
    columns have no adapter to report through."""
    columns(Job.status, name=Job.name)
    otel = instrument(orchestrators="routilux")
    _run_job(database, Status.RUNNING, Status.SUCCEEDED)
    assert otel.transition_counts() == {}
    assert otel.spans() == []


def _listeners() -> tuple[int, ...]:
    """How many listeners the status column, its model's flushes and every session have."""
    flushes = inspect(Job).dispatch
    with Session() as session:
        sessions = session.dispatch
        return (
            len(Job.status.dispatch.set),
            len(flushes.after_insert),
            len(flushes.after_update),
            len(sessions.after_commit),
            len(sessions.after_soft_rollback),
            len(sessions.after_transaction_end),
        )


def test_no_instrumentation_cycle_adds_a_listener(database: Database) -> None:
    bare = _listeners()
    column = instrument_status_column(Job.status, name=Job.name)
    declared = _listeners()
    assert declared == tuple(count + 1 for count in bare)
    instrumentor = ExecStatusInstrumentor()
    otel = Telemetry()
    try:
        for _ in range(3):
            _instrument_with(otel)
            assert _listeners() == declared
            instrumentor.uninstrument()
            assert _listeners() == declared
        _instrument_with(otel)
        column.remove()
        _run_job(database, Status.RUNNING)  # removed: not reported, though instrumented
    finally:
        column.remove()
        instrumentor.uninstrument()
    assert _listeners() == bare
    assert otel.transition_counts() == {}
