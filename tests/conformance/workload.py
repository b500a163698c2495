"""What a conformance check runs on a framework: one step, told how to end, and what the host
saw of the run.

Every scenario drives its real framework with one pipeline whose one step calls a ``Step``.
The step returns a value, raises a ``ValueError`` or raises ``KeyboardInterrupt``, as the check
asks, and notes how many executions were in flight while it ran: its own and its enclosing
ones when something records, none when nothing does. What the host got back is an
``Outcome``; ``as_seen`` makes two runs' outcomes comparable, so that a check can say "exactly
what a bare run gives".
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any

from opentelemetry_instrumentation_execstatus import telemetry


class Behaviour(str, Enum):
    """How the step ends."""

    RETURN = "return"
    RAISE = "raise"
    INTERRUPT = "interrupt"


STEP_VALUE = 42
"""What a step that returns returns."""

STEP_ERROR = "the step's own exception"
"""What ``as_seen`` shows in place of the step's exception, wherever the host received it."""


class Step:
    """The body of a scenario's one step: one call, one ending."""

    def __init__(self, behaviour: Behaviour) -> None:
        self.behaviour = behaviour
        self.error: BaseException | None = {
            Behaviour.RETURN: None,
            Behaviour.RAISE: ValueError("the step failed"),
            Behaviour.INTERRUPT: KeyboardInterrupt(),
        }[behaviour]
        self.in_flight: list[int] = []
        """Executions in flight at each call (-1: not instrumented)."""

    def __call__(self) -> int:
        live = telemetry.current()
        self.in_flight.append(-1 if live is None else live.tracker.in_flight_count())
        if self.error is not None:
            raise self.error
        return STEP_VALUE


@dataclass(frozen=True)
class Outcome:
    """What the host saw of one run."""

    result: Any
    """What the framework handed back, as plain data: its own statuses, the step's output, the
    exceptions its error handlers received."""

    raised: BaseException | None
    """What reached the caller of the run, if anything did."""


def as_seen(outcome: Outcome, step: Step) -> tuple[Any, Any]:
    """``outcome`` in a form two runs compare by: each run raises a new exception, so the
    step's own is ``STEP_ERROR`` wherever it appears, and any other is its type and message."""
    return _plain(outcome.result, step), _plain(outcome.raised, step)


def _plain(value: Any, step: Step) -> Any:
    if isinstance(value, BaseException):
        if value is step.error:
            return STEP_ERROR
        return (type(value).__qualname__, str(value), _plain(value.__cause__, step))
    if isinstance(value, Mapping):
        return {key: _plain(item, step) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return tuple(_plain(item, step) for item in value)
    return value
