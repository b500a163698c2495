"""While nothing records, a status column reads nothing: an assignment is not held for a commit
that could not report it, unless it follows a change the transaction already holds."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Callable

import pytest
from models import Job, Status
from opentelemetry.instrumentation.utils import suppress_instrumentation
from sqlalchemy import inspect
from sqlalchemy.orm import Session
from sqlalchemy_database import Database
from support import Telemetry

from opentelemetry_instrumentation_execstatus import ExecStatusInstrumentor, telemetry
from opentelemetry_instrumentation_execstatus.adapters.sqlalchemy import StatusColumn
from opentelemetry_instrumentation_execstatus.adapters.sqlalchemy.transactions import pending


@pytest.fixture
def jobs(columns: Callable[..., StatusColumn]) -> StatusColumn:
    return columns(Job.status, name=Job.name, changed_at=Job.status_changed_at)


@pytest.fixture
def no_sdk() -> Iterator[None]:
    """The instrumentation on with no provider given and none set globally: the API only."""
    instrumentor = ExecStatusInstrumentor()
    instrumentor.instrument()
    try:
        live = telemetry.current()
        assert live is not None and live.tracker.is_off(), "a global provider is set"
        yield
    finally:
        instrumentor.uninstrument()


def _queued_job(database: Database) -> int:
    with Session(database.engine) as session:
        job = Job(name="train")
        job.move_to(Status.QUEUED)
        session.add(job)
        session.commit()
        return job.id


def test_with_no_sdk_an_assignment_holds_nothing(
    no_sdk: None, database: Database, jobs: StatusColumn
) -> None:
    job_id = _queued_job(database)
    with Session(database.engine) as session:
        job = session.get(Job, job_id)
        job.move_to(Status.RUNNING)
        session.flush()
        assert pending(inspect(job), jobs) is None
        assert session.info == {}  # no row for the commit to report
        session.commit()


def test_an_assignment_made_while_suppressed_is_not_reported(
    instrument: Callable[..., Telemetry], database: Database, jobs: StatusColumn
) -> None:
    """Committed while recording, it had nothing held to report; the next change is measured
    from the status the database holds, as one another process made would be."""
    otel = instrument()
    job_id = _queued_job(database)
    with Session(database.engine) as session:
        job = session.get(Job, job_id)
        with suppress_instrumentation():
            job.move_to(Status.RUNNING)
        session.commit()
    with Session(database.engine) as session:
        session.get(Job, job_id).move_to(Status.SUCCEEDED)
        session.commit()
    assert otel.transition_counts() == {("running", "succeeded"): 1}


def test_a_change_held_keeps_the_next_ones_while_suppressed(
    instrument: Callable[..., Telemetry], database: Database, jobs: StatusColumn
) -> None:
    """The changes of one transaction are committed together: once one is held, the next
    ones are too, in order, so that none is lost between them."""
    otel = instrument()
    job_id = _queued_job(database)
    with Session(database.engine) as session:
        job = session.get(Job, job_id)
        job.move_to(Status.RUNNING)
        with suppress_instrumentation():
            job.move_to(Status.SUCCEEDED)
        session.commit()
    assert otel.transition_counts() == {("queued", "running"): 1, ("running", "succeeded"): 1}
    assert otel.span("train").attributes["execution.status"] == "succeeded"
