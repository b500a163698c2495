"""How a framework's answers become canonical statuses: one table type and one exception rule.

Every adapter reads its framework's status vocabulary through a ``StatusMap`` and decides how a
call that raised ended with ``outcome_of``, so that the same event means the same status on
every orchestrator: an ``Exception`` is a failure, anything else that unwinds a call (an
interrupt, an exit, a cancelled task, a closed generator) is a cancellation, never a failure of
the work itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import Enum
from typing import Any

from opentelemetry_instrumentation_execstatus.normalize import as_text
from opentelemetry_instrumentation_execstatus.semconv import ExecutionStatus


def outcome_of(error: BaseException | None) -> ExecutionStatus:
    """``succeeded`` for no exception, ``failed`` for an ``Exception``, ``cancelled`` for any
    other ``BaseException`` (``KeyboardInterrupt``, ``SystemExit``, ``GeneratorExit``,
    ``asyncio.CancelledError``): the work was stopped from outside, it did not fail."""
    if error is None:
        return ExecutionStatus.SUCCEEDED
    if isinstance(error, Exception):
        return ExecutionStatus.FAILED
    return ExecutionStatus.CANCELLED


def reported_error(error: BaseException | None) -> BaseException | None:
    """The exception a transition reports for ``error``: only a failure's (a cancellation has
    no ``error.type``)."""
    return error if isinstance(error, Exception) else None


class StatusMap:
    """A framework's status vocabulary -> canonical statuses.

    Looks a value up by its text, trimmed and (unless ``case_sensitive``) case-insensitive; an
    enum member is looked up by its value. Anything not in the table, including values that
    are not text at all or whose ``str()`` raises, is ``fallback`` (``unknown``): a framework's
    new status shows as unknown, it never breaks the adapter or passes through as a label.
    """

    __slots__ = ("_case_sensitive", "_fallback", "_table")

    def __init__(
        self,
        table: Mapping[str, ExecutionStatus],
        *,
        case_sensitive: bool = False,
        fallback: ExecutionStatus = ExecutionStatus.UNKNOWN,
    ) -> None:
        self._case_sensitive = case_sensitive
        self._fallback = fallback
        self._table = {self._fold(key): status for key, status in table.items()}

    def __call__(self, raw: Any) -> ExecutionStatus:
        if isinstance(raw, Enum):
            raw = raw.value
        text = raw if type(raw) is str else as_text(raw)
        if text is None:
            return self._fallback
        return self._table.get(self._fold(text), self._fallback)

    def _fold(self, text: str) -> str:
        text = str.strip(text)
        return text if self._case_sensitive else str.lower(text)
