"""A forked child re-creates the locks of the adapters (every adapter inherits it)."""

from __future__ import annotations

import os
import threading

import pytest
from support import held_by_another_thread

from opentelemetry_instrumentation_execstatus import telemetry
from opentelemetry_instrumentation_execstatus.adapters import Adapter
from opentelemetry_instrumentation_execstatus.semconv import Orchestrator

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="POSIX only: needs os.fork()")


class _LockingAdapter(Adapter):
    name = "locking"
    orchestrator = Orchestrator.UNKNOWN
    top_module = "json"
    distribution = None

    def __init__(self, live: telemetry.Telemetry) -> None:
        super().__init__(live)
        self._lock = threading.Lock()
        self._ledger_lock = threading.RLock()

    def patches(self) -> list:
        return []


def test_an_adapters_locks_held_at_fork_are_free_in_the_child(instrument):
    instrument()
    adapter = _LockingAdapter(telemetry.current())
    with held_by_another_thread(adapter._lock, adapter._ledger_lock, seconds=10):
        pid = os.fork()
        if pid == 0:  # the child: both locks must be free at once
            free = adapter._lock.acquire(timeout=2) and adapter._ledger_lock.acquire(timeout=2)
            os._exit(0 if free else 1)
        _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, "the child found an adapter lock held"
