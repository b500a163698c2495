"""SQLAlchemy status columns: a run row and its one step row, moved by a small job runner.

The application declares its status columns once (here, on import), as it would at start-up:
the declarations outlive every ``instrument()`` and ``uninstrument()``. The runner is the host:
it commits ``running``, calls the step, commits how it ended (``cancelled`` for an interrupt)
and lets the step's exception through. What the host gets back is what the database holds.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import ClassVar

from sqlalchemy import Engine, ForeignKey, String, create_engine, select
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from conformance.scenarios import Reported, Scenario, ending_with_the_step
from conformance.workload import Outcome, Step
from opentelemetry_instrumentation_execstatus.adapters.sqlalchemy import instrument_status_column

PIPELINE = "conformance"
RUN = ("pipeline", f"RUN {PIPELINE}")
STEP = ("step", "step")


class _Base(DeclarativeBase):
    pass


class ConformanceRun(_Base):
    __tablename__ = "conformance_run"

    id: Mapped[int] = mapped_column(primary_key=True)
    pipeline: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))


class ConformanceStep(_Base):
    __tablename__ = "conformance_step"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    run_id: Mapped[int] = mapped_column(ForeignKey("conformance_run.id"))
    status: Mapped[str] = mapped_column(String(16))


instrument_status_column(ConformanceRun.status, pipeline=ConformanceRun.pipeline, level="pipeline")
instrument_status_column(
    ConformanceStep.status, name=ConformanceStep.name, parent=ConformanceStep.run_id
)


STATUSES = select(ConformanceRun.status, ConformanceStep.status).join(
    ConformanceStep, ConformanceStep.run_id == ConformanceRun.id
)
"""What the host reads back: the run's and the step's status, as committed."""


def _end(session: Session, rows: tuple[ConformanceRun, ConformanceStep], status: str) -> None:
    for row in rows:
        row.status = status
    session.commit()


def _job_runner(engine: Engine, step: Step) -> None:
    """The host: commits ``running``, calls the step, commits how it ended, and lets the
    step's exception through."""
    with Session(engine) as session:
        run = ConformanceRun(pipeline=PIPELINE, status="running")
        session.add(run)
        session.flush()
        task = ConformanceStep(name="step", run_id=run.id, status="running")
        session.add(task)
        session.commit()
        try:
            step()
        except Exception:
            _end(session, (task, run), "failed")
            raise
        except BaseException:
            _end(session, (task, run), "cancelled")
            raise
        _end(session, (task, run), "succeeded")


class SQLAlchemyScenario(Scenario):
    step = STEP
    reported: ClassVar[Reported] = ending_with_the_step(RUN, STEP)

    def run(self, step: Step) -> Outcome:
        with tempfile.TemporaryDirectory() as directory:
            engine = create_engine(f"sqlite:///{Path(directory) / 'runs.db'}")
            try:
                _Base.metadata.create_all(engine)
                raised = None
                try:
                    _job_runner(engine, step)
                except BaseException as error:
                    raised = error
                with Session(engine) as session:
                    statuses = [tuple(row) for row in session.execute(STATUSES)]
            finally:
                engine.dispose()
        return Outcome(statuses, raised)


SCENARIO = SQLAlchemyScenario()
