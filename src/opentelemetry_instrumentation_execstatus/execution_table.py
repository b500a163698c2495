"""The executions in flight, by key, and the keys of those recently ended; both bounded.

One lock guards both tables, and only them: it is held for a few dict operations, never
across an SDK call nor while an execution's own lock is held, so executions never wait for
each other's telemetry. Reads of one key take no lock (a dict read is atomic).

The in-flight table is capped at ``max_in_flight``: admitting one more pushes out the oldest,
which the caller then ends (it will not see it end). Ended keys are remembered, in the same
bounded number, with when they ended, so that a late or duplicate event of an ended execution
is dropped instead of starting a second, empty span, while a later new start under the same
id is a new execution.

A forked child owns none of the parent's executions (the parent ends them): it starts with
empty tables and a new lock.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable

from opentelemetry_instrumentation_execstatus import clock
from opentelemetry_instrumentation_execstatus.execution import Execution
from opentelemetry_instrumentation_execstatus.forking import after_fork_in_child
from opentelemetry_instrumentation_execstatus.semconv import ExecutionStatus
from opentelemetry_instrumentation_execstatus.transition_rules import starts_anew


class EndedKeys(OrderedDict[Hashable, int]):
    """Keys of recently ended executions and when they ended, the oldest forgotten first.

    An OrderedDict drops its oldest key in O(1); a dict's first key, after many deletions at
    the front, is found by scanning past every deleted slot. Lookups (``get``) take no lock;
    changes are made under the table's.
    """

    def __init__(self, limit: int) -> None:
        super().__init__()
        self._limit = limit

    def remember(self, key: Hashable, at_ns: int) -> None:
        """``key`` ended at ``at_ns``. An end stamped in the future (a clock running ahead) is
        remembered as now, or it would swallow a re-run reported until then."""
        now_ns = clock.now_ns()
        self[key] = at_ns if at_ns <= now_ns else now_ns  # ``min()``, written out: a third the cost
        self.move_to_end(key)
        if len(self) > self._limit:
            self.popitem(last=False)


class ExecutionTable(dict[Hashable, Execution]):
    """The executions in flight by key (a dict: ``get`` and ``len`` take no lock), and the
    ended keys; both changed only through these methods, under one lock."""

    def __init__(self, max_in_flight: int) -> None:
        super().__init__()
        self._max_in_flight = max_in_flight
        self._lock = threading.Lock()
        self.ended = EndedKeys(max_in_flight)
        after_fork_in_child(self._after_fork)

    def admit(
        self,
        key: Hashable,
        fresh: Execution,
        current: ExecutionStatus,
        at_ns: int,
        stored: ExecutionStatus | None,
    ) -> tuple[Execution | None, list[tuple[Hashable, Execution]]]:
        """Put ``fresh`` in flight under ``key``, for its change to ``current`` at ``at_ns``
        (``stored``: the database's previous status), unless an execution is already there (a
        racing creator won: that one is returned), or the key has ended and this change does
        not start anew (``transition_rules.starts_anew``): None. Also returns the executions
        the cap pushed out, for the caller to end."""
        evicted: list[tuple[Hashable, Execution]] = []
        with self._lock:
            existing = self.get(key)
            if existing is not None:
                return existing, evicted
            ended_at = self.ended.get(key)
            if ended_at is not None:
                if not starts_anew(fresh.persisted, current, at_ns, stored, ended_at):
                    return None, evicted
                del self.ended[key]
            self[key] = fresh
            while len(self) > self._max_in_flight:
                oldest = next(iter(self))
                evicted.append((oldest, self.pop(oldest)))
                self.ended.remember(oldest, at_ns)
        return fresh, evicted

    def forget(self, key: Hashable, execution: Execution, at_ns: int) -> None:
        """``execution`` (ended at ``at_ns``) leaves the table; its key is remembered as ended."""
        with self._lock:
            if self.get(key) is execution:
                del self[key]
            self.ended.remember(key, at_ns)

    def in_flight(self) -> list[tuple[Hashable, Execution]]:
        """Every execution in flight now, with its key."""
        with self._lock:
            return list(self.items())

    def any_live(self) -> bool:
        """Is an execution this process will finish still in flight? Database rows are not:
        another process, or a later run of this one, may change them next."""
        with self._lock:
            return any(not execution.persisted for execution in self.values())

    def _after_fork(self) -> None:
        self._lock = threading.Lock()
        self.clear()  # the child's only thread runs this, before any code of the child
        self.ended = EndedKeys(self._max_in_flight)
