"""Turning whatever an orchestrator reports into bounded, typed label values.

Rules (seed 004's, made strict): values are trimmed; a value outside its enum becomes the
enum's fallback (``unknown`` or ``other``), never passed through; names beyond a cardinality
cap become ``_OTHER``; durations that come out negative (clock skew, out-of-order events)
are clamped to 0.
"""

from __future__ import annotations

import math
import threading
from enum import Enum
from typing import Any, TypeVar

from opentelemetry_instrumentation_execstatus.semconv import ExecutionStatus

E = TypeVar("E", bound=Enum)

OTHER_NAME = "_OTHER"
MAX_NAME_LENGTH = 128


def to_enum(enum_cls: type[E], value: Any, fallback: E) -> E:
    """``value`` as a member of ``enum_cls``: a member, its value, or its name, any case."""
    if isinstance(value, enum_cls):
        return value
    if isinstance(value, Enum):  # another framework's enum: use its value
        value = value.value
    if not isinstance(value, str):
        return fallback
    text = value.strip().lower()
    try:
        return enum_cls(text)
    except ValueError:
        member = enum_cls.__members__.get(text.upper())
        return member if member is not None else fallback


# Every spelling ``to_enum`` accepts without trimming or case folding: members (a str-valued
# member hashes and compares as its value), values and names. Looked up first on every change.
_STATUS_BY_TEXT: dict[str, ExecutionStatus] = {
    **{member.value: member for member in ExecutionStatus},
    **{name: member for name, member in ExecutionStatus.__members__.items()},
}


def to_status(value: Any) -> ExecutionStatus:
    """A canonical status, or ``unknown`` for anything we don't know."""
    if isinstance(value, str):
        status = _STATUS_BY_TEXT.get(value)
        if status is not None:
            return status
    return to_enum(ExecutionStatus, value, ExecutionStatus.UNKNOWN)


def clamp_seconds(value: float) -> float:
    """Durations are never negative nor NaN: both become 0."""
    if value > 0 and not math.isinf(value):
        return float(value)
    return 0.0


def clean_text(value: Any, limit: int = MAX_NAME_LENGTH) -> str | None:
    """A trimmed, length-capped string, or None when there is nothing to say."""
    if value is None:
        return None
    text = value if isinstance(value, str) else str(value)
    text = text.strip()
    if not text:
        return None
    return text[:limit]


class NameLimiter:
    """Admits the first ``limit`` distinct names; every later newcomer becomes ``_OTHER``.

    Pipeline and step names go on metric attributes, where each distinct value is a new time
    series. Keeping the first names seen (rather than evicting) keeps series stable over time.
    """

    def __init__(self, limit: int) -> None:
        self._limit = max(0, limit)
        self._admitted: set[str] = set()
        self._lock = threading.Lock()

    def admit(self, name: str | None) -> str | None:
        if name is None:
            return None
        if name in self._admitted:  # lock-free fast path: set membership is atomic
            return name
        with self._lock:
            if name in self._admitted:
                return name
            if len(self._admitted) < self._limit:
                self._admitted.add(name)
                return name
        return OTHER_NAME
