"""One adapter per orchestrator: where to hook it and how its statuses map to ours.

Adapters translate framework events into calls on the core (``StatusTracker.transition`` and
``WorkerRecorder``); they never build telemetry themselves. Like botocore's ``extensions/`` in
opentelemetry-python-contrib, each lives in its own module and is listed here.
"""

from __future__ import annotations

import importlib.util
import threading
from abc import ABC, abstractmethod
from typing import ClassVar

from opentelemetry_instrumentation_execstatus.forking import after_fork_in_child
from opentelemetry_instrumentation_execstatus.patching import AnyPatch
from opentelemetry_instrumentation_execstatus.telemetry import Telemetry


class Adapter(ABC):
    """Knows one orchestrator (or one API line of it)."""

    name: ClassVar[str]
    """The orchestrator's short name: the ``orchestrators`` option selects adapters by it."""

    top_module: ClassVar[str]
    """The framework's top-level module; the adapter is enabled only when it is importable."""

    def __init__(self, telemetry: Telemetry) -> None:
        self._telemetry = telemetry
        after_fork_in_child(self._after_fork)

    def _after_fork(self) -> None:
        """Re-create the adapter's locks in a forked child: one that a parent thread held at
        fork would never be released there, and the child's next call would hang."""
        for name, value in list(vars(self).items()):
            new_lock = _NEW_LOCKS.get(type(value))
            if new_lock is not None:
                setattr(self, name, new_lock())

    @classmethod
    def is_available(cls) -> bool:
        # find_spec on a top-level name locates the package without importing it.
        return importlib.util.find_spec(cls.top_module) is not None

    @abstractmethod
    def patches(self) -> list[AnyPatch]:
        """What to wrap; each patch is applied when its module is imported."""


# What makes a new lock of each kind (the lock types themselves cannot be instantiated).
_NEW_LOCKS = {type(threading.Lock()): threading.Lock, type(threading.RLock()): threading.RLock}


def all_adapters() -> list[type[Adapter]]:
    from opentelemetry_instrumentation_execstatus.adapters.loom import LoomAdapter
    from opentelemetry_instrumentation_execstatus.adapters.orcapod import OrcapodAdapter
    from opentelemetry_instrumentation_execstatus.adapters.routilux import RoutiluxAdapter
    from opentelemetry_instrumentation_execstatus.adapters.routilux_legacy import (
        RoutiluxLegacyAdapter,
    )
    from opentelemetry_instrumentation_execstatus.adapters.tangle import TangleAdapter

    return [RoutiluxAdapter, RoutiluxLegacyAdapter, OrcapodAdapter, LoomAdapter, TangleAdapter]
