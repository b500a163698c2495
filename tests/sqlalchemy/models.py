"""Models of a small database-backed orchestrator: runs and their jobs, each with a status.

``Job.move_to`` is the orchestrator's one transition helper: it assigns the status and the
time it changed in the same unit of work, so storing that time costs no extra UPDATE.
"""

# SQLAlchemy evaluates the ``Mapped`` annotations at runtime: ``Optional``, which Python 3.9
# can evaluate, not ``X | None``.
# ruff: noqa: UP045

from __future__ import annotations

import enum
from datetime import datetime, timezone
from typing import Any, Optional

from sqlalchemy import JSON, ForeignKey, PickleType, String
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
    status: Mapped[Optional[Status]] = mapped_column(default=None)


class Job(Base):
    __tablename__ = "job"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    run_id: Mapped[Optional[int]] = mapped_column(ForeignKey("run.id"), default=None)
    status: Mapped[Optional[Status]] = mapped_column(default=None)
    status_changed_at: Mapped[Optional[datetime]] = mapped_column(default=None)

    def move_to(self, status: Status, at: datetime | None = None) -> None:
        self.status = status
        self.status_changed_at = at or datetime.now(timezone.utc)


class Chore(Base):
    """A model with a free-text status and no time of change."""

    __tablename__ = "chore"

    id: Mapped[int] = mapped_column(primary_key=True)
    status: Mapped[Optional[str]] = mapped_column(String(32), default=None)


class Document(Base):
    """A model whose status is a JSON column: a dict or a list is a raw status too."""

    __tablename__ = "document"

    id: Mapped[int] = mapped_column(primary_key=True)
    status: Mapped[Optional[Any]] = mapped_column(JSON(none_as_null=True), default=None)


def _same_object(a: Any, b: Any) -> bool:
    """How ``Oddity``'s columns tell a change at flush: a value's own ``==`` may raise or
    have no truth value (a numpy array's), and SQLAlchemy would raise that into the commit."""
    return a is b


def _anything() -> PickleType:
    return PickleType(comparator=_same_object)


class Oddity(Base):
    """A model whose every column the instrumentation reads holds any Python value (pickled):
    the status, a run id, the names, the parent's id and the time of the last change."""

    __tablename__ = "oddity"

    id: Mapped[int] = mapped_column(primary_key=True)
    status: Mapped[Optional[Any]] = mapped_column(_anything(), default=None)
    label: Mapped[Optional[Any]] = mapped_column(_anything(), default=None)
    name: Mapped[Optional[Any]] = mapped_column(_anything(), default=None)
    pipeline: Mapped[Optional[Any]] = mapped_column(_anything(), default=None)
    parent: Mapped[Optional[Any]] = mapped_column(_anything(), default=None)
    changed_at: Mapped[Optional[Any]] = mapped_column(_anything(), default=None)
