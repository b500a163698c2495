"""The up-down counters whose values the package keeps itself: ``execution.active`` and
``execution.worker.count``, reported to the SDK when it collects (asynchronous instruments).

Keeping the value here rather than calling a synchronous counter's ``add`` at every change:
- a forked child starts from 0: the SDK's copy of a synchronous counter would go on exporting
  the parent's in-flight executions, forever, from a process that will never see them end;
- no SDK fault can leave a count off by one (an ``add`` that raised after its pair succeeded);
- a transition changes two integers under one lock instead of making two SDK calls.

The values live as long as the meter: ``instrument()`` after ``uninstrument()`` on the same
meter provider goes on counting on the same instrument, instead of registering a second stream
of the same name.
"""

from __future__ import annotations

import threading
import weakref
from collections import defaultdict
from collections.abc import Hashable, Iterable, Mapping
from typing import Any, Callable, Generic, TypeVar

from opentelemetry.metrics import CallbackOptions, Meter, Observation

from opentelemetry_instrumentation_execstatus.forking import after_fork_in_child

K = TypeVar("K", bound=Hashable)
Attributes = Mapping[str, str]


class ObservedCounts(Generic[K]):
    """Counts by label key (a tuple of enum members), and the attributes each key exports."""

    def __init__(self, attributes: Callable[..., Attributes]) -> None:
        self._attributes = attributes
        self._lock = threading.Lock()
        # A key met for the first time starts at 0 (a defaultdict makes it in C, no call).
        self._values: defaultdict[K, int] = defaultdict(int)
        after_fork_in_child(self._after_fork)

    def move(self, leaving: K | None, entering: K | None) -> None:
        """One unit leaves ``leaving`` and enters ``entering`` (either may be None)."""
        if leaving is None and entering is None:
            return
        with self._lock:
            values = self._values
            if leaving is not None:
                values[leaving] -= 1
            if entering is not None:
                values[entering] += 1

    def observe(self, _options: CallbackOptions | None = None) -> Iterable[Observation]:
        """The SDK's callback: every key ever counted, 0 included, so a series that emptied
        reads 0 rather than its last non-zero value."""
        with self._lock:
            items = list(self._values.items())
        return [Observation(value, self._attributes(*key)) for key, value in items]

    def _after_fork(self) -> None:
        self._lock = threading.Lock()
        self._values = defaultdict(int, dict.fromkeys(self._values, 0))


_BY_METER: weakref.WeakKeyDictionary[Any, dict[str, ObservedCounts[Any]]] = (
    weakref.WeakKeyDictionary()
)
_BY_METER_LOCK = threading.Lock()


def _reset_lock_after_fork() -> None:
    global _BY_METER_LOCK
    _BY_METER_LOCK = threading.Lock()


after_fork_in_child(_reset_lock_after_fork)


def observed_up_down_counter(
    meter: Meter,
    name: str,
    unit: str,
    description: str,
    attributes: Callable[..., Attributes],
) -> ObservedCounts[Any]:
    """The counts behind ``meter``'s asynchronous up-down counter ``name``, created with it
    on first use."""
    with _BY_METER_LOCK:
        try:
            counters = _BY_METER.setdefault(meter, {})
        except TypeError:  # a meter that cannot be weakly referenced: its own counts each time
            counters = {}
        counts = counters.get(name)
        if counts is None:
            counts = counters[name] = ObservedCounts(attributes)
            meter.create_observable_up_down_counter(
                name, callbacks=[counts.observe], unit=unit, description=description
            )
    return counts
