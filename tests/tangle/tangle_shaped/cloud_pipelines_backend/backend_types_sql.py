"""A model built like Tangle's ``ExecutionNode``, in the module Tangle defines it in.

Tangle is not on the package registries, so the tests import this module under Tangle's own
name, and the instrumentation applies its Tangle preset to it as it would to Tangle's: the same
status enum, the same ``extra_data`` JSON column (a MutableDict, as Tangle maps ``dict``), the
same parent and task-id columns, and the same listener Tangle registers to keep a status
history with ``first_observed_at`` in ``extra_data``. No Tangle code is copied.
"""

# SQLAlchemy evaluates the ``Mapped`` annotations at runtime: ``Optional``, which Python 3.9
# can evaluate, not ``X | None``.
# ruff: noqa: UP045

from __future__ import annotations

import enum
import uuid
from datetime import datetime, timezone
from typing import Any, Optional

from sqlalchemy import JSON, ForeignKey, event
from sqlalchemy.ext.mutable import MutableDict
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

HISTORY = "container_execution_status_history"


class ContainerExecutionStatus(str, enum.Enum):
    INVALID = "INVALID"
    UNINITIALIZED = "UNINITIALIZED"
    QUEUED = "QUEUED"
    WAITING_FOR_UPSTREAM = "WAITING_FOR_UPSTREAM"
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    SYSTEM_ERROR = "SYSTEM_ERROR"
    CANCELLING = "CANCELLING"
    CANCELLED = "CANCELLED"
    SKIPPED = "SKIPPED"


class TangleBase(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: MutableDict.as_mutable(JSON)}  # noqa: RUF012


class ExecutionNode(TangleBase):
    __tablename__ = "execution_node"

    id: Mapped[str] = mapped_column(primary_key=True, default=lambda: uuid.uuid4().hex)
    task_spec: Mapped[dict[str, Any]] = mapped_column(default=dict)
    parent_execution_id: Mapped[Optional[str]] = mapped_column(
        ForeignKey("execution_node.id"), default=None
    )
    task_id_in_parent_execution: Mapped[Optional[str]] = mapped_column(default=None)
    container_execution_status: Mapped[Optional[ContainerExecutionStatus]] = mapped_column(
        default=None, index=True
    )
    extra_data: Mapped[Optional[dict[str, Any]]] = mapped_column(default=None)


@event.listens_for(ExecutionNode.container_execution_status, "set")
def _keep_history(node: ExecutionNode, value: Any, _old: Any, _initiator: Any) -> None:
    """What Tangle's orchestrator does on every status assignment."""
    if value is None:
        return
    extra = dict(node.extra_data or {})
    history = list(extra.get(HISTORY, []))
    if history and history[-1]["status"] == value.value:
        return
    history.append(
        {"status": value.value, "first_observed_at": datetime.now(timezone.utc).isoformat()}
    )
    extra[HISTORY] = history
    node.extra_data = extra
