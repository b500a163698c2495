"""Status columns: every committed assignment is a transition, at no extra database cost."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

import pytest
from models import Chore, Job, Run, Status
from sqlalchemy import event, select
from sqlalchemy.orm import Session
from sqlalchemy_database import Database
from support import Telemetry

from opentelemetry_instrumentation_execstatus import telemetry
from opentelemetry_instrumentation_execstatus.adapters.sqlalchemy import StatusColumn
from opentelemetry_instrumentation_execstatus.adapters.sqlalchemy.transactions import after_commit

PAUSE = 0.05


@pytest.fixture
def jobs(columns: Callable[..., StatusColumn]) -> StatusColumn:
    return columns(
        Job.status,
        name=Job.name,
        parent=Job.run_id,
        changed_at=Job.status_changed_at,
    )


def _create_job(database: Database, name: str = "train", **fields: Any) -> int:
    with Session(database.engine) as session:
        job = Job(name=name, **fields)
        job.move_to(Status.QUEUED)
        session.add(job)
        session.commit()
        return job.id


def _advance(database: Database, job_id: int, *statuses: Status) -> None:
    """One session and one commit per status, each after a pause, like an orchestrator loop."""
    for status in statuses:
        time.sleep(PAUSE)
        with Session(database.engine) as session:
            session.get(Job, job_id).move_to(status)
            session.commit()


def test_each_commit_in_its_own_session_is_a_transition(
    instrument: Callable[..., Telemetry], database: Database, jobs: StatusColumn
) -> None:
    otel = instrument()
    job_id = _create_job(database)
    _advance(database, job_id, Status.PENDING, Status.RUNNING, Status.SUCCEEDED)

    points = otel.transitions(execution_orchestrator="sqlalchemy")
    assert set(points) == {
        ("queued", "pending"),
        ("pending", "running"),
        ("running", "succeeded"),
    }
    for point in points.values():
        assert point.count == 1
        assert PAUSE <= point.sum < PAUSE + 2
        assert point.attributes["execution.level"] == "step"
        assert point.attributes["cicd.pipeline.task.name"] == "train"

    span = otel.span("train")
    assert span.attributes["cicd.pipeline.task.run.id"] == str(job_id)
    assert span.attributes["execution.status"] == "succeeded"
    assert [event.attributes["execution.status.to"] for event in span.events] == [
        "queued",
        "pending",
        "running",
        "succeeded",
    ]
    assert 3 * PAUSE <= (span.end_time - span.start_time) / 1e9 < 3 * PAUSE + 3
    assert set(otel.sums("execution.active").values()) == {0}


def test_durations_survive_a_restart_through_the_stored_time(
    instrument: Callable[..., Telemetry], database: Database, jobs: StatusColumn
) -> None:
    """Queued 90 s before this process started: the first change it sees measures 90 s."""
    job_id = _create_job(database)
    with Session(database.engine) as session:
        session.get(Job, job_id).status_changed_at = datetime.now(timezone.utc) - timedelta(
            seconds=90
        )
        session.commit()

    otel = instrument()  # a new process: no record of the row, only the database
    _advance(database, job_id, Status.RUNNING, Status.SUCCEEDED)

    points = otel.transitions()
    assert set(points) == {("queued", "running"), ("running", "succeeded")}
    assert 90 <= points[("queued", "running")].sum < 92
    assert PAUSE <= points[("running", "succeeded")].sum < PAUSE + 2
    # The span covers the execution's life from the stored start of its first status.
    span = otel.span("train")
    assert 90 <= (span.end_time - span.start_time) / 1e9 < 93
    # Another process counted the row as queued; this one takes it out of that count.
    assert otel.sums_by("execution.active", "execution.status") == {"queued": -1, "running": 0}


def test_without_a_stored_time_a_restart_loses_only_the_first_duration(
    instrument: Callable[..., Telemetry], database: Database, columns: Callable[..., StatusColumn]
) -> None:
    columns(Chore.status, statuses={"todo": "queued", "doing": "running", "done": "succeeded"})
    with Session(database.engine) as session:
        session.add(Chore(id=1, status="todo"))
        session.commit()
    otel = instrument()  # a new process: no record of the row, only the database
    for status in ("doing", "done"):
        time.sleep(PAUSE)
        with Session(database.engine) as session:
            session.get(Chore, 1).status = status
            session.commit()
    points = otel.transitions()
    assert set(points) == {("running", "succeeded")}
    assert PAUSE <= points[("running", "succeeded")].sum < PAUSE + 2


def test_a_row_first_seen_in_an_unchanged_status_gives_no_made_up_duration(
    instrument: Callable[..., Telemetry], database: Database, columns: Callable[..., StatusColumn]
) -> None:
    """todo -> waiting is queued -> queued; when it began is stored nowhere, so the next
    change, assigned blind to the expired instance, has nothing to measure from."""
    columns(Chore.status, statuses={"todo": "queued", "waiting": "queued", "done": "succeeded"})
    with Session(database.engine) as session:
        session.add(Chore(id=1, status="todo"))
        session.commit()
    otel = instrument()
    with Session(database.engine) as session:
        chore = session.get(Chore, 1)
        chore.status = "waiting"
        session.commit()
        chore.status = "done"
        session.commit()
    assert otel.transition_counts() == {}
    assert otel.span("step").attributes["execution.status"] == "succeeded"


def _orchestrate(database: Database) -> None:
    """An orchestrator's usual moves, including blind assignments to expired instances and
    flushes before commits."""
    with Session(database.engine) as session:
        run = Run(pipeline="nightly", status=Status.QUEUED)
        session.add(run)
        session.flush()
        jobs = [Job(name=f"job-{n}", run_id=run.id) for n in range(3)]
        for job in jobs:
            job.move_to(Status.QUEUED)
        session.add_all(jobs)
        session.commit()  # every instance is now expired
        run.status = Status.RUNNING  # blind: the old value is not loaded
        session.commit()
        for job in session.scalars(select(Job).where(Job.status == Status.QUEUED)):
            job.move_to(Status.PENDING)
        session.flush()
        for job in jobs:
            job.move_to(Status.RUNNING)
        session.commit()
        for job in jobs:
            job.status = Status.SUCCEEDED  # blind again
        session.flush()
        run.status = Status.SUCCEEDED
        session.commit()


def test_no_extra_statement_per_transition(
    instrument: Callable[..., Telemetry],
    database: Database,
    columns: Callable[..., StatusColumn],
) -> None:
    """The same orchestrator sends the same statements, instrumented or not (counted with
    SQLAlchemy's before_cursor_execute event); the bare run has no listener of ours at all."""
    _orchestrate(database)
    bare = list(database.statements)
    database.statements.clear()

    columns(Job.status, name=Job.name, parent=Job.run_id, changed_at=Job.status_changed_at)
    columns(Run.status, name=Run.pipeline, pipeline=Run.pipeline, level="pipeline")
    otel = instrument()
    _orchestrate(database)

    assert database.statements == bare
    counts = otel.transition_counts(execution_level="step")
    assert counts == {
        ("queued", "pending"): 3,
        ("pending", "running"): 3,
        ("running", "succeeded"): 3,
    }
    assert otel.transition_counts(execution_level="pipeline") == {
        ("queued", "running"): 1,
        ("running", "succeeded"): 1,
    }
    run_span = otel.span("RUN nightly")
    job_spans = [span for span in otel.spans() if span.name.startswith("job-")]
    assert len(job_spans) == 3
    assert {span.parent.span_id for span in job_spans} == {run_span.context.span_id}


def test_flushing_before_the_commit_loses_no_transition(
    instrument: Callable[..., Telemetry], database: Database, jobs: StatusColumn
) -> None:
    """Tangle's own before_commit hook misses RUNNING -> SUCCEEDED this way."""
    otel = instrument()
    job_id = _create_job(database)
    with Session(database.engine) as session:
        job = session.get(Job, job_id)
        job.move_to(Status.RUNNING)
        session.commit()
        job.move_to(Status.SUCCEEDED)
        session.flush()
        assert not session.dirty
        session.commit()
    assert otel.transition_counts() == {("queued", "running"): 1, ("running", "succeeded"): 1}


def test_several_changes_in_one_transaction_keep_their_own_times(
    instrument: Callable[..., Telemetry], database: Database, jobs: StatusColumn
) -> None:
    otel = instrument()
    with Session(database.engine) as session:
        job = Job(name="train")
        job.move_to(Status.QUEUED)
        session.add(job)
        time.sleep(PAUSE)
        job.move_to(Status.PENDING)
        session.flush()
        time.sleep(2 * PAUSE)
        job.move_to(Status.RUNNING)
        session.commit()
    points = otel.transitions()
    assert set(points) == {("queued", "pending"), ("pending", "running")}
    assert PAUSE <= points[("queued", "pending")].sum < 2 * PAUSE
    assert 2 * PAUSE <= points[("pending", "running")].sum < PAUSE + 2


def test_a_rolled_back_assignment_never_happened(
    instrument: Callable[..., Telemetry], database: Database, jobs: StatusColumn
) -> None:
    otel = instrument()
    job_id = _create_job(database)
    with Session(database.engine) as session:
        job = session.get(Job, job_id)
        job.move_to(Status.RUNNING)
        session.flush()
        session.rollback()  # RUNNING never reached the database
        job.move_to(Status.FAILED)  # blind: the instance is expired again
        session.rollback()
        session.get(Job, job_id).move_to(Status.PENDING)
        session.commit()
    with Session(database.engine) as session:
        job = session.get(Job, job_id)
        job.move_to(Status.RUNNING)  # before the savepoint: kept
        savepoint = session.begin_nested()
        job.move_to(Status.FAILED)
        savepoint.rollback()  # only the savepoint's change is undone
        job.move_to(Status.SUCCEEDED)
        session.commit()
    assert otel.transition_counts() == {
        ("queued", "pending"): 1,
        ("pending", "running"): 1,
        ("running", "succeeded"): 1,
    }
    assert [event.attributes["execution.status.to"] for event in otel.span("train").events] == [
        "queued",
        "pending",
        "running",
        "succeeded",
    ]


def test_an_object_left_modified_by_a_closed_session_is_measured_from_the_database(
    instrument: Callable[..., Telemetry], database: Database, jobs: StatusColumn
) -> None:
    """Closing a session without commit leaves its objects modified: reused in another
    session, the object's RUNNING was never the database's status, QUEUED was."""
    otel = instrument()
    job_id = _create_job(database)
    with Session(database.engine) as session:
        job = session.get(Job, job_id)
        job.move_to(Status.RUNNING)
    with Session(database.engine) as session:
        session.add(job)
        job.move_to(Status.SUCCEEDED)
        session.commit()
    assert otel.transition_counts() == {("queued", "succeeded"): 1}


def test_a_session_closed_without_commit_emits_nothing(
    instrument: Callable[..., Telemetry], database: Database, jobs: StatusColumn
) -> None:
    otel = instrument()
    job_id = _create_job(database)
    with Session(database.engine) as session:
        session.get(Job, job_id).move_to(Status.RUNNING)
    with Session(database.engine) as session:
        session.get(Job, job_id).move_to(Status.SUCCEEDED)
        session.commit()
    assert otel.transition_counts() == {("queued", "succeeded"): 1}


def test_unknown_and_unmapped_values_are_unknown(
    instrument: Callable[..., Telemetry],
    database: Database,
    columns: Callable[..., StatusColumn],
) -> None:
    columns(Chore.status, statuses={"todo": "queued", "done": "succeeded"})
    otel = instrument()
    with Session(database.engine) as session:
        chore = Chore(id=1, status="todo")
        session.add(chore)
        session.commit()
        chore.status = "exploded"  # not in the map
        session.commit()
        chore.status = "done"
        session.commit()
    assert otel.transition_counts() == {("queued", "unknown"): 1, ("unknown", "succeeded"): 1}
    statuses = {dict(p.attributes)["execution.status"] for p in otel.points("execution.active")}
    assert statuses == {"queued", "unknown"}


def test_a_row_run_again_after_its_end_is_a_new_execution(
    instrument: Callable[..., Telemetry], database: Database, jobs: StatusColumn
) -> None:
    otel = instrument()
    job_id = _create_job(database)
    _advance(database, job_id, Status.RUNNING, Status.FAILED, Status.QUEUED, Status.RUNNING)
    _advance(database, job_id, Status.SUCCEEDED)
    spans = [span for span in otel.spans() if span.name == "train"]
    assert [span.attributes["execution.status"] for span in spans] == ["failed", "succeeded"]
    assert otel.transition_counts() == {
        ("queued", "running"): 2,
        ("running", "failed"): 1,
        ("failed", "queued"): 1,
        ("running", "succeeded"): 1,
    }


def test_a_new_row_reusing_an_ended_rows_id_is_a_new_execution(
    instrument: Callable[..., Telemetry], database: Database, jobs: StatusColumn
) -> None:
    otel = instrument()
    for _ in range(2):
        job_id = _create_job(database)
        _advance(database, job_id, Status.RUNNING, Status.SUCCEEDED)
        with Session(database.engine) as session:
            session.delete(session.get(Job, job_id))
            session.commit()
    assert job_id == 1  # SQLite gave the second row the first one's id
    assert len([span for span in otel.spans() if span.name == "train"]) == 2
    assert otel.transition_counts() == {("queued", "running"): 2, ("running", "succeeded"): 2}


def test_instrumentation_errors_never_reach_the_orchestrator(
    instrument: Callable[..., Telemetry],
    database: Database,
    columns: Callable[..., StatusColumn],
) -> None:
    def broken(_raw: Any, _loaded: Any) -> str:
        raise RuntimeError("a broken status map")

    columns(Chore.status, statuses=broken)
    instrument()
    with Session(database.engine) as session:
        session.add(Chore(id=1, status="todo"))
        session.commit()
        session.get(Chore, 1).status = "done"
        session.commit()
    with Session(database.engine) as session:
        assert session.get(Chore, 1).status == "done"


def test_off_until_instrumented_and_removable(
    instrument: Callable[..., Telemetry], database: Database, jobs: StatusColumn
) -> None:
    job_id = _create_job(database)  # before instrument(): not seen
    otel = instrument()
    _advance(database, job_id, Status.RUNNING)
    jobs.remove()
    _advance(database, job_id, Status.SUCCEEDED)
    assert otel.transition_counts() == {("queued", "running"): 1}
    assert otel.spans() == []  # the execution never ended here


def test_the_last_column_removed_takes_the_session_listeners_with_it(
    columns: Callable[..., StatusColumn],
) -> None:
    listening = (Session, "after_commit", after_commit)
    first, second = columns(Job.status), columns(Run.status)
    assert event.contains(*listening)
    first.remove()
    assert event.contains(*listening)  # the other column still needs them
    second.remove()
    assert not event.contains(*listening)


def test_exit_does_not_wait_for_rows_that_stay_in_flight(
    instrument: Callable[..., Telemetry], database: Database, jobs: StatusColumn
) -> None:
    """The exit grace is for executions this process will finish; a queued row is not one
    (an API process that queues runs would otherwise always wait the whole grace)."""
    instrument()
    _create_job(database)
    started = time.monotonic()
    telemetry.current().tracker.end_in_flight(grace_seconds=30)
    assert time.monotonic() - started < 10


def test_at_exit_a_row_keeps_its_status(
    instrument: Callable[..., Telemetry], database: Database, jobs: StatusColumn
) -> None:
    """The database still holds the row's status: no made-up `cancelled`, no count change."""
    otel = instrument()
    job_id = _create_job(database)
    _advance(database, job_id, Status.RUNNING)
    active_before = otel.sums("execution.active")
    telemetry.current().tracker.end_in_flight(grace_seconds=0.01)
    span = otel.span("train")
    assert span.attributes["execution.status"] == "running"
    assert "cicd.pipeline.task.run.result" not in span.attributes
    assert otel.transition_counts() == {("queued", "running"): 1}
    assert otel.sums("execution.active") == active_before
