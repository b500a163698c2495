"""A model built like Tangle's ``ExecutionNode`` (``cloud_pipelines_backend.backend_types_sql``).

Tangle is not on the package registries, so the tests instrument this model with the Tangle
preset: the same status enum, the same ``extra_data`` JSON column (a MutableDict, as Tangle
maps ``dict``), the same parent and task-id columns, and the same listener Tangle registers to
keep a status history with ``first_observed_at`` in ``extra_data``. No Tangle code is copied.
"""

from __future__ import annotations

import enum
import uuid
from datetime import datetime, timezone
from typing import Any

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
    parent_execution_id: Mapped[str | None] = mapped_column(
        ForeignKey("execution_node.id"), default=None
    )
    task_id_in_parent_execution: Mapped[str | None] = mapped_column(default=None)
    container_execution_status: Mapped[ContainerExecutionStatus | None] = mapped_column(
        default=None, index=True
    )
    extra_data: Mapped[dict[str, Any] | None] = mapped_column(default=None)


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
