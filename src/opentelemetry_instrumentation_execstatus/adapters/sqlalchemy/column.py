"""Registering a status column: its listeners, and what each committed change reports.

The attribute "set" event sees every assignment, in memory, with the time it happened and the
value it replaced. That value is read only if it is already loaded (no ``active_history``,
which would SELECT an expired one); when it is not, the transaction's earlier changes or this
process's record of the row stand in. A comparison that cannot decide (``==`` raising, or
without a truth value) keeps the change, which the core ignores if its canonical status is the
one it had. The change is held by the transaction buffer (``transactions``) until its commit;
the row's "after insert" and "after update" events read who it is at flush.

While nothing records (no SDK, OpenTelemetry disabled, instrumentation suppressed), an
assignment is not read at all, as a framework call made then is not observed: it costs a
dictionary lookup and the core's off check. Only an assignment that follows a change this
transaction holds is kept even then, so that the changes committed together stay whole and in
order.
"""

from __future__ import annotations

from typing import Any, Callable

from sqlalchemy import event
from sqlalchemy.orm.attributes import QueryableAttribute
from sqlalchemy.orm.base import NO_VALUE
from sqlalchemy.orm.state import InstanceState

from opentelemetry_instrumentation_execstatus.adapters.base import Adapter
from opentelemetry_instrumentation_execstatus.adapters.sqlalchemy import transactions
from opentelemetry_instrumentation_execstatus.adapters.sqlalchemy.adapter import DECLARED
from opentelemetry_instrumentation_execstatus.adapters.sqlalchemy.rows import (
    Attribute,
    ChangedAt,
    RowReader,
    Statuses,
    StoredStatus,
)
from opentelemetry_instrumentation_execstatus.identity import Identity
from opentelemetry_instrumentation_execstatus.normalize import to_enum
from opentelemetry_instrumentation_execstatus.safety import report_internal_error
from opentelemetry_instrumentation_execstatus.semconv import ExecutionLevel, Orchestrator

# Where a listener's own error is reported (once), as ``safety.guarded`` names it.
_ON_SET = f"{__name__}.StatusColumn._on_set"
_ON_FLUSHED = f"{__name__}.StatusColumn._on_flushed"


class StatusColumn:
    """An instrumented status column; ``instrument_status_column`` makes one.

    Its committed changes are reported through ``reporter``, the adapter it belongs to, and
    nothing is held or reported while that is None (the instrumentation is off). A column the
    application declares gets the ``sqlalchemy`` adapter while the instrumentation is on; a
    preset's column (Tangle's) is made with its own adapter.
    """

    def __init__(
        self,
        rows: RowReader,
        *,
        level: ExecutionLevel,
        orchestrator: Orchestrator,
        reporter: Adapter | None = None,
    ) -> None:
        self.rows = rows
        self.level = level
        self.orchestrator = orchestrator
        self.reporter = reporter
        self._listeners: list[tuple[Any, str, Callable[..., Any]]] = []

    @property
    def attribute(self) -> QueryableAttribute:
        return self.rows.attribute

    def listen(self) -> None:
        """Start seeing the column's assignments and the rows' flushes."""
        owner = self.attribute.class_
        for target, name, listener in (
            (self.attribute, "set", self._on_set),
            (owner, "after_insert", self._on_flushed),
            (owner, "after_update", self._on_flushed),
        ):
            event.listen(target, name, listener, raw=True, propagate=True)
            self._listeners.append((target, name, listener))
        transactions.listen_to_sessions(self)

    def remove(self) -> None:
        """Stop instrumenting the column (its listeners are removed, and the session
        listeners with the last column's); changes not yet committed are not reported."""
        for target, name, listener in self._listeners:
            if event.contains(target, name, listener):
                event.remove(target, name, listener)
        self._listeners.clear()
        transactions.stop_listening_to_sessions(self)
        DECLARED.forget(self)
        self.reporter = None

    # -- listeners -------------------------------------------------------------------------
    # Guarded inline rather than by ``safety.guarded``: they run for every assignment and
    # flush of the column, and the decorator's extra call (its argument packing) costs more
    # than all the rest of what they do while nothing records.

    def _on_set(self, state: InstanceState, value: Any, old: Any, _initiator: Any) -> None:
        try:
            reporter = self.reporter
            if value is None or reporter is None:
                return
            row = transactions.pending(state, self)
            held = row is not None and row.changes
            if not held and reporter.is_off():
                return  # nothing records now: not a change to hold (see the module's docstring)
            loaded = state.dict
            replaced = old is not NO_VALUE and old is not None  # a loaded value it replaces
            if held and (not replaced or _follows(old, row.changes[-1].raw)):
                before = StoredStatus(row.changes[-1].status, row.changes[-1].at)
            else:
                # No change of this transaction stands before this one (or they were undone):
                # the database's value is the one before it.
                row = transactions.start(state, self)
                before = self.rows.stored(state, old, loaded)
            if replaced:
                try:
                    if old == value:
                        return  # the value it had: no change
                except Exception:  # == raised, or has no truth value (numpy): kept as a change,
                    pass  # which the core ignores if its canonical status is the one it had
            status = self.rows.status(value, loaded)
            transactions.hold(state, self, row, value, status, before.status, before.since)
        except Exception:
            report_internal_error(_ON_SET)

    def _on_flushed(self, _mapper: Any, _connection: Any, state: InstanceState) -> None:
        """A row written by a flush: its identity is known now (and the object alive). An
        object assigned before it joined the session is registered here, so its changes are
        reported with that session's commit."""
        try:
            row = transactions.pending(state, self)
            if row is None or not row.changes:
                return
            row.facts = self.rows.facts(state.dict)
            transactions.touch(state, self)
        except Exception:
            report_internal_error(_ON_FLUSHED)

    # -- reporting -------------------------------------------------------------------------

    def committed(self, row: transactions.PendingRow) -> None:
        """The row's changes are committed: each one is a transition, in order, with the time
        it was assigned (called by the transaction buffer at commit)."""
        reporter = self.reporter
        facts = row.facts
        if reporter is None or facts is None:
            return
        key = reporter.key(*facts.row)
        identity = Identity(
            self.orchestrator,
            self.level,
            name=facts.name,
            pipeline=facts.pipeline,
            run_id=facts.run_id,
            parent=None if facts.parent is None else reporter.key(*facts.parent),
        )
        for change in row.changes:
            reporter.report(
                key,
                change.status,
                identity,
                timestamp=change.at,
                persisted=True,
                previous_status=change.previous,
                previous_since=change.previous_since,
            )


def instrument_status_column(
    status: QueryableAttribute,
    *,
    id: Attribute | None = None,
    name: Attribute | None = None,
    pipeline: Attribute | None = None,
    parent: Attribute | None = None,
    changed_at: ChangedAt | None = None,
    statuses: Statuses | None = None,
    level: ExecutionLevel | str = ExecutionLevel.STEP,
    orchestrator: Orchestrator | str = Orchestrator.SQLALCHEMY,
) -> StatusColumn:
    """Make every committed assignment of ``status`` (e.g. ``Job.status``) a transition.

    Each row is an execution at ``level``. ``id`` (default: the primary key) becomes
    ``cicd.pipeline.task.run.id`` (``cicd.pipeline.run.id`` for pipelines), ``name`` the span
    and task name, ``pipeline`` the pipeline name, ``parent`` a column holding the parent
    execution's id (its table is taken from the column's foreign key, else this table), whose
    span becomes the parent when it is in flight here. ``changed_at`` is where the row stores
    when its status last changed. ``statuses`` maps raw values to canonical statuses (default:
    by value or name, so ``"RUNNING"`` is ``running``); anything unmapped is ``unknown``.

    The column reports while the instrumentation is on (through its ``sqlalchemy`` adapter),
    so this may be called before or after ``instrument()``. Returns the instrumented column;
    ``remove()`` undoes this call.
    """
    column = StatusColumn(
        RowReader(
            status,
            id=id,
            name=name,
            pipeline=pipeline,
            parent=parent,
            changed_at=changed_at,
            statuses=statuses,
        ),
        level=to_enum(ExecutionLevel, level, ExecutionLevel.STEP),
        orchestrator=to_enum(Orchestrator, orchestrator, Orchestrator.UNKNOWN),
    )
    column.listen()
    DECLARED.declare(column)
    return column


def _follows(old: Any, last: Any) -> bool:
    """Is ``old``, the loaded value an assignment replaces, the transaction's last assigned
    value ``last``? It is the very object unless the row was loaded again since. A comparison
    that cannot decide (``==`` raising, or without a truth value, as a numpy array's) keeps the
    transaction's earlier changes: they are still committed with it."""
    if old is last:
        return True
    try:
        return bool(old == last)
    except Exception:
        return True
