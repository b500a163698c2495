"""Models of a small database-backed orchestrator: runs and their jobs, each with a status.

``Job.move_to`` is the orchestrator's one transition helper, as in seed 000: it assigns the
status and the time it changed in the same unit of work.
"""

from __future__ import annotations

import enum
from datetime import datetime, timezone

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


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
    status: Mapped[Status | None] = mapped_column(default=None)


class Job(Base):
    __tablename__ = "job"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    run_id: Mapped[int | None] = mapped_column(ForeignKey("run.id"), default=None)
    status: Mapped[Status | None] = mapped_column(default=None)
    status_changed_at: Mapped[datetime | None] = mapped_column(default=None)

    def move_to(self, status: Status, at: datetime | None = None) -> None:
        self.status = status
        self.status_changed_at = at or datetime.now(timezone.utc)


class Chore(Base):
    """A model with a free-text status and no time of change."""

    __tablename__ = "chore"

    id: Mapped[int] = mapped_column(primary_key=True)
    status: Mapped[str | None] = mapped_column(String(32), default=None)
