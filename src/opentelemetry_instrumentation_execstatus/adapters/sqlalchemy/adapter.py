"""The ``sqlalchemy`` adapter, and the status columns the application declared, that it reports.

A declaration (``instrument_status_column``) is the application's and lasts until it is
removed, whatever the instrumentation does meanwhile; the reporting is the instrumentation's.
So the declared columns are kept here, and the adapter that ``instrument()`` made with the core
becomes their reporter when SQLAlchemy is imported (its one patch; at once if it already is),
and a column declared later gets it on declaration. Its patch's undo takes it back: after
``uninstrument()`` the columns report nothing, and the next ``instrument()`` hands them its own
adapter. This module imports no SQLAlchemy: the instrumentor lists the adapter everywhere.
"""

from __future__ import annotations

import threading
from types import ModuleType
from typing import Callable, Protocol

from opentelemetry_instrumentation_execstatus.adapters.base import Adapter
from opentelemetry_instrumentation_execstatus.forking import after_fork_in_child
from opentelemetry_instrumentation_execstatus.patching import AnyPatch, OnImport
from opentelemetry_instrumentation_execstatus.semconv import Orchestrator


class Reported(Protocol):
    """A status column, as its reporter sees it."""

    reporter: Adapter | None


class DeclaredColumns:
    """The columns the application declared, and the adapter reporting them (None: off)."""

    def __init__(self) -> None:
        self._columns: set[Reported] = set()
        self._reporter: Adapter | None = None
        self._lock = threading.Lock()
        after_fork_in_child(self._after_fork)

    def declare(self, column: Reported) -> None:
        """Report ``column`` from now on, through the current reporter if there is one."""
        with self._lock:
            self._columns.add(column)
            column.reporter = self._reporter

    def forget(self, column: Reported) -> None:
        """``column`` was removed: no reporter will be handed to it any more."""
        with self._lock:
            self._columns.discard(column)

    def report_through(self, reporter: Adapter) -> Callable[[], None]:
        """Every declared column, and each one declared later, reports through ``reporter``;
        returns what ends that (only if ``reporter`` is still the one)."""
        with self._lock:
            self._reporter = reporter
            for column in self._columns:
                column.reporter = reporter

        def stop() -> None:
            with self._lock:
                if self._reporter is not reporter:
                    return
                self._reporter = None
                for column in self._columns:
                    column.reporter = None

        return stop

    def _after_fork(self) -> None:
        self._lock = threading.Lock()


DECLARED = DeclaredColumns()


class SQLAlchemyAdapter(Adapter):
    """Reports the application's status columns (see ``instrument_status_column``)."""

    name = "sqlalchemy"
    orchestrator = Orchestrator.SQLALCHEMY
    top_module = "sqlalchemy"
    distribution = "sqlalchemy"
    supported = ">= 2.0, < 3"

    def patches(self) -> list[AnyPatch]:
        return [OnImport("sqlalchemy", self._report_declared_columns)]

    def _report_declared_columns(self, _sqlalchemy: ModuleType) -> Callable[[], None]:
        return DECLARED.report_through(self)
