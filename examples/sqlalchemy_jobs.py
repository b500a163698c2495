"""A small database-backed orchestrator: runs and jobs whose status lives in SQLite.

Like Tangle, it changes statuses from several places (the queue, the launcher, the worker), in
separate sessions and commits, and records when each status began in ``status_changed_at``.
Its only instrumentation is naming the two status columns (``instrument_columns``)::

    opentelemetry-instrument --traces_exporter console --metrics_exporter console \\
        python examples/sqlalchemy_jobs.py

Each run has three jobs: ``extract`` and ``transform`` succeed, ``publish`` fails.
"""

from __future__ import annotations

import enum
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional

from sqlalchemy import Engine, ForeignKey, String, create_engine, select
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from opentelemetry_instrumentation_execstatus.adapters.sqlalchemy import instrument_status_column

STEPS = {"extract": 0.02, "transform": 0.03, "publish": 0.01}
FAILING = "publish"


class Status(str, enum.Enum):
    QUEUED = "QUEUED"
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"


class Base(DeclarativeBase):
    pass


class Run(Base):
    __tablename__ = "run"

    id: Mapped[int] = mapped_column(primary_key=True)
    pipeline: Mapped[str] = mapped_column(String(64))
    status: Mapped[Status] = mapped_column()
    status_changed_at: Mapped[datetime] = mapped_column()


class Job(Base):
    __tablename__ = "job"

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("run.id"))
    name: Mapped[str] = mapped_column(String(64))
    status: Mapped[Status] = mapped_column()
    status_changed_at: Mapped[datetime] = mapped_column()
    error: Mapped[Optional[str]] = mapped_column(String(256), default=None)  # noqa: UP045


def move(row: Run | Job, status: Status) -> None:
    """The orchestrator's one transition helper: the status and when it changed."""
    row.status = status
    row.status_changed_at = datetime.now(timezone.utc)


def instrument_columns() -> None:
    """What a user of the instrumentation adds: which columns hold statuses."""
    instrument_status_column(
        Run.status,
        name=Run.pipeline,
        pipeline=Run.pipeline,
        changed_at=Run.status_changed_at,
        level="pipeline",
    )
    instrument_status_column(
        Job.status, name=Job.name, parent=Job.run_id, changed_at=Job.status_changed_at
    )


def submit(engine: Engine, pipeline: str) -> int:
    """The API side: a run and its jobs, all queued, in one transaction."""
    with Session(engine) as session:
        run = Run(pipeline=pipeline, status=Status.QUEUED, status_changed_at=_now())
        session.add(run)
        session.flush()
        for name in STEPS:
            session.add(
                Job(run_id=run.id, name=name, status=Status.QUEUED, status_changed_at=_now())
            )
        session.commit()
        return run.id


def work(engine: Engine, run_id: int) -> Status:
    """The orchestrator side: launch each queued job, run it, record how it ended."""
    with Session(engine) as session:
        move(session.get(Run, run_id), Status.RUNNING)
        session.commit()
    failed = False
    for job_id in _queued_jobs(engine, run_id):
        with Session(engine) as session:
            move(session.get(Job, job_id), Status.PENDING)
            session.commit()
        with Session(engine) as session:
            job = session.get(Job, job_id)
            move(job, Status.RUNNING)
            session.commit()
            time.sleep(STEPS[job.name])
            if job.name == FAILING:
                job.error = "destination refused the report"
                move(job, Status.FAILED)
                failed = True
            else:
                move(job, Status.SUCCEEDED)
            session.commit()
    final = Status.FAILED if failed else Status.SUCCEEDED
    with Session(engine) as session:
        move(session.get(Run, run_id), final)
        session.commit()
    return final


def run(runs: int = 1, directory: str | None = None) -> list[Status]:
    """Submit and work ``runs`` runs of ``nightly_reports`` on a SQLite file."""
    with tempfile.TemporaryDirectory() as scratch:
        engine = create_engine(f"sqlite:///{Path(directory or scratch) / 'jobs.db'}")
        Base.metadata.create_all(engine)
        try:
            return [work(engine, submit(engine, "nightly_reports")) for _ in range(runs)]
        finally:
            engine.dispose()


def _queued_jobs(engine: Engine, run_id: int) -> list[int]:
    with Session(engine) as session:
        query = select(Job.id).where(Job.run_id == run_id, Job.status == Status.QUEUED)
        return list(session.scalars(query.order_by(Job.id)))


def _now() -> datetime:
    return datetime.now(timezone.utc)


if __name__ == "__main__":
    instrument_columns()
    print(run())
