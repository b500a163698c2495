"""Status columns of SQLAlchemy-mapped models: every committed change of status is a transition.

Orchestrators that keep their executions in a database (seed 000's Tangle) assign a status
column from many code paths. Naming the column once makes every assignment a transition of the
core, with no change to those code paths and no extra query:

- The attribute "set" event sees every assignment, in memory, with the time it happened and the
  value it replaced. That value is read only if it is already loaded (no ``active_history``, which
  would SELECT an expired one); when it is not, the transaction's earlier changes or this
  process's record of the row stand in.
- Nothing is emitted until the session commits, and then in order, with the assignment times.
  Flushing before the commit loses nothing, because nothing is taken from the session's dirty
  set. An assignment that is rolled back (with its transaction or its savepoint) is dropped: it
  never happened for the database, nor for the other processes that read it.
- The row's identity, name and parent are read from its loaded state, never through attribute
  access, which could load them. The duration of the previous status starts at the model's
  "status changed at" value when it has one (persisted, so a restart in between changes
  nothing), else at this process's record of the change.
- Whatever a row holds, it affects that change of that row only. A column may hold anything
  (a JSON column's dict, a pickled array whose ``==`` has no truth value), and a listener that
  raised would lose the change and, since the value stays in the row, the row's next change
  too, leaving it in flight for good. So reading a status or a time never raises: a status the
  map cannot look up is ``unknown``, like any unmapped one; a time that cannot be read is
  absent; a comparison that cannot decide keeps the change. Values are handed to the core as
  they are, and the core cleans them (timestamps, text; a parent that cannot be a key is none).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import Decimal
from enum import Enum
from typing import Any, Callable, Optional, Union

from sqlalchemy import event, inspect
from sqlalchemy.orm import Session, SessionTransaction
from sqlalchemy.orm.attributes import QueryableAttribute
from sqlalchemy.orm.base import NO_VALUE
from sqlalchemy.orm.state import InstanceState

from opentelemetry_instrumentation_execstatus import clock, telemetry
from opentelemetry_instrumentation_execstatus.forking import after_fork_in_child
from opentelemetry_instrumentation_execstatus.identity import Identity
from opentelemetry_instrumentation_execstatus.normalize import to_enum, to_status
from opentelemetry_instrumentation_execstatus.safety import guarded, report_internal_error
from opentelemetry_instrumentation_execstatus.semconv import (
    ExecutionLevel,
    ExecutionStatus,
    Orchestrator,
)

Attribute = Union[QueryableAttribute, str]
"""A mapped attribute (``Job.name``) or its key (``"name"``)."""

StatusMap = Union[Mapping[Any, Any], Callable[[Any, Mapping[str, Any]], Any]]
"""Raw value -> canonical status; a callable also gets the row's loaded values."""

ChangedAt = Union[Attribute, Callable[[Mapping[str, Any], Any], Optional[clock.Timestamp]]]
"""Where the previous status's start is stored: a column, or a callable given the row's loaded
values and the previous raw status (for a history kept in a JSON column)."""

_TOUCHED = "opentelemetry_instrumentation_execstatus.touched"


@dataclass
class _Change:
    """One assignment, held until its transaction commits."""

    raw: Any
    status: ExecutionStatus
    at: clock.Instant
    previous: ExecutionStatus | None
    previous_since: clock.Timestamp | None
    transaction: SessionTransaction | None


@dataclass(frozen=True)
class _Facts:
    """Who a row is: its execution key and the names its spans carry."""

    key: tuple[str, str, tuple[Any, ...]]
    run_id: Any
    name: Any
    pipeline: Any
    parent_key: tuple[str, str, tuple[Any, ...]] | None


@dataclass
class _Row:
    """A row's changes in the current transaction, kept in its ``InstanceState.info``."""

    changes: list[_Change] = field(default_factory=list)
    facts: _Facts | None = None


@dataclass(eq=False)
class StatusColumn:
    """An instrumented status column; ``instrument_status_column`` makes one."""

    attribute: QueryableAttribute
    id_key: str | None
    name_key: str | None
    pipeline_key: str | None
    parent_key: str | None
    changed_at: ChangedAt | None
    statuses: StatusMap | None
    level: ExecutionLevel
    orchestrator: Orchestrator
    _listeners: list[tuple[Any, str, Callable[..., Any]]] = field(default_factory=list)

    def __post_init__(self) -> None:
        mapper = inspect(self.attribute.class_)
        # The base table names the row even under joined inheritance, where a subclass row
        # spans two tables but keeps the base's primary key; foreign keys point to it too.
        self._table: str = mapper.base_mapper.local_table.name
        self._primary_key = tuple(
            mapper.get_property_by_column(column).key for column in mapper.primary_key
        )
        # The parent's table: the one the parent column's foreign key points to, else this one.
        parent_column = mapper.columns.get(self.parent_key) if self.parent_key else None
        foreign_keys = getattr(parent_column, "foreign_keys", ())
        self._parent_table = next((fk.column.table.name for fk in foreign_keys), self._table)

    def remove(self) -> None:
        """Stop instrumenting the column (its listeners are removed, and the session
        listeners with the last column's)."""
        for target, name, listener in self._listeners:
            if event.contains(target, name, listener):
                event.remove(target, name, listener)
        self._listeners.clear()
        _stop_listening_to_sessions(self)

    # -- listeners -------------------------------------------------------------------------

    def _listen(self) -> None:
        owner = self.attribute.class_
        for target, name, listener in (
            (self.attribute, "set", self._on_set),
            (owner, "after_insert", self._on_flushed),
            (owner, "after_update", self._on_flushed),
        ):
            event.listen(target, name, listener, raw=True, propagate=True)
            self._listeners.append((target, name, listener))
        _listen_to_sessions(self)

    @guarded
    def _on_set(self, state: InstanceState, value: Any, old: Any, _initiator: Any) -> None:
        if value is None or telemetry.current() is None:
            return
        row: _Row | None = state.info.get(self)
        loaded = old is not NO_VALUE and old is not None
        if row is not None and row.changes and (not loaded or _follows(old, row.changes[-1].raw)):
            previous: ExecutionStatus | None = row.changes[-1].status
            previous_since: clock.Timestamp | None = row.changes[-1].at
        else:
            # No change of this transaction stands before this one (or they were undone): the
            # database's value is the loaded one, or the one loaded before an uncommitted
            # change (a session closed without commit leaves its objects modified).
            row = state.info[self] = _Row()
            stored = state.committed_state.get(self.attribute.key, old)
            known = stored is not NO_VALUE and stored is not None
            previous = self._canonical(stored, state.dict) if known else None
            previous_since = self._stored_since(state, stored) if known else None
        if loaded:
            try:
                if old == value:
                    return  # the value it had: no change
            except Exception:  # == raised, or has no truth value (numpy): kept as a change,
                pass  # which the core ignores if its canonical status is the one it had
        session = state.session
        transaction = None
        if session is not None:
            transaction = session.get_nested_transaction() or session.get_transaction()
            _touched(session)[(state, self)] = None
        row.changes.append(
            _Change(
                value,
                self._canonical(value, state.dict),
                clock.now(),
                previous,
                previous_since,
                transaction,
            )
        )

    @guarded
    def _on_flushed(self, _mapper: Any, _connection: Any, state: InstanceState) -> None:
        """A row written by a flush: its identity is known now (and the object alive). An
        object assigned before it joined the session is registered here, so its changes are
        emitted with that session's commit."""
        row: _Row | None = state.info.get(self)
        if row is None or not row.changes:
            return
        row.facts = self._facts(state)
        if state.session is not None:
            _touched(state.session)[(state, self)] = None

    # -- emission --------------------------------------------------------------------------

    def _emit(self, state: InstanceState) -> None:
        """The row's committed changes, in order, through the core (called at commit)."""
        row: _Row | None = state.info.pop(self, None)
        live = telemetry.current()
        if row is None or row.facts is None or live is None:
            return
        facts = row.facts
        for change in row.changes:
            live.tracker.transition(
                facts.key,
                change.status,
                Identity(
                    self.orchestrator,
                    self.level,
                    name=facts.name,
                    pipeline=facts.pipeline,
                    run_id=facts.run_id,
                    parent=facts.parent_key,
                ),
                persisted=True,
                timestamp=change.at,
                previous_status=change.previous,
                previous_since=change.previous_since,
            )

    def _facts(self, state: InstanceState) -> _Facts:
        """Who the row is, read at flush, while the object is surely alive and loaded."""
        loaded = state.dict
        identity = tuple(loaded.get(key) for key in self._primary_key)
        if self.id_key is not None:
            run_id = loaded.get(self.id_key)
        else:
            run_id = identity[0] if len(identity) == 1 else "/".join(map(str, identity))
        # A parent value that cannot be a key (a JSON column's list) is no parent: the core
        # keeps the row's execution, without one.
        parent = loaded.get(self.parent_key) if self.parent_key else None
        return _Facts(
            key=("sqlalchemy", self._table, identity),
            run_id=run_id,
            name=loaded.get(self.name_key) if self.name_key else None,
            pipeline=loaded.get(self.pipeline_key) if self.pipeline_key else None,
            parent_key=None if parent is None else ("sqlalchemy", self._parent_table, (parent,)),
        )

    def _drop(self, state: InstanceState, rolled_back: SessionTransaction) -> bool:
        """Forget the changes made inside ``rolled_back``; True if none are left."""
        row: _Row | None = state.info.get(self)
        kept = [c for c in row.changes if not _inside(c.transaction, rolled_back)] if row else []
        if row is not None and kept:
            row.changes = kept
            return False
        state.info.pop(self, None)
        return True

    # -- reading the row -------------------------------------------------------------------

    def _canonical(self, raw: Any, loaded: Mapping[str, Any]) -> ExecutionStatus:
        """``raw``'s canonical status. Total, as the rule it applies: anything unmapped is
        ``unknown``, including a value the map cannot look up (unhashable, as a JSON column's
        dict or list; a ``__hash__`` or ``==`` that raises) and whatever a status function
        raises (reported once: that is a bug of the function, not a status)."""
        statuses = self.statuses
        try:
            if statuses is None:
                return to_status(raw)
            if callable(statuses):
                return to_status(statuses(raw, loaded))
            for candidate in (raw, raw.value if isinstance(raw, Enum) else None):
                if candidate is not None and candidate in statuses:
                    return to_status(statuses[candidate])
        except Exception:
            if callable(statuses):
                report_internal_error(f"the status function of {self.attribute}")
        return ExecutionStatus.UNKNOWN

    def _stored_since(self, state: InstanceState, old: Any) -> clock.Timestamp | None:
        """When the status being replaced began, as stored in the row (never loaded for it).
        None when the row cannot say, as when a ``changed_at`` function raises (reported once):
        the core then measures from its own record, and the change is kept."""
        changed_at = self.changed_at
        if changed_at is None:
            return None
        if callable(changed_at) and not isinstance(changed_at, QueryableAttribute):
            try:
                value = changed_at(state.dict, old)
            except Exception:
                report_internal_error(f"the changed_at function of {self.attribute}")
                return None
        else:
            key = _key_of(changed_at)
            # The value as loaded from the database, even if this transaction already set it anew.
            value = state.committed_state.get(key, state.dict.get(key))
        return _as_timestamp(value)


def instrument_status_column(
    status: QueryableAttribute,
    *,
    id: Attribute | None = None,
    name: Attribute | None = None,
    pipeline: Attribute | None = None,
    parent: Attribute | None = None,
    changed_at: ChangedAt | None = None,
    statuses: StatusMap | None = None,
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

    The listeners do nothing while the instrumentation is off, so this may be called before
    ``instrument()``. Returns the instrumented column; ``remove()`` undoes this call.
    """
    column = StatusColumn(
        attribute=status,
        id_key=_key_of(id) if id is not None else None,
        name_key=_key_of(name) if name is not None else None,
        pipeline_key=_key_of(pipeline) if pipeline is not None else None,
        parent_key=_key_of(parent) if parent is not None else None,
        changed_at=changed_at,
        statuses=statuses,
        level=to_enum(ExecutionLevel, level, ExecutionLevel.STEP),
        orchestrator=to_enum(Orchestrator, orchestrator, Orchestrator.UNKNOWN),
    )
    column._listen()
    return column


def _key_of(attribute: Attribute) -> str:
    return attribute if isinstance(attribute, str) else attribute.key


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


def _as_timestamp(value: Any) -> clock.Timestamp | None:
    """A stored time: datetimes without a zone are UTC, as databases store them."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return None
    if isinstance(value, datetime):
        return value if value.tzinfo is not None else value.replace(tzinfo=timezone.utc)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value
    if isinstance(value, Decimal):  # epoch seconds from a Numeric column
        try:
            return float(value)
        except ValueError:  # a signalling NaN
            return None
    return None


def _inside(transaction: SessionTransaction | None, rolled_back: SessionTransaction) -> bool:
    """Was a change made in ``transaction`` undone by rolling back ``rolled_back``?"""
    if transaction is None:  # made outside any transaction: only the outermost undoes it
        return rolled_back.parent is None
    while transaction is not None:
        if transaction is rolled_back:
            return True
        transaction = transaction.parent
    return False


# -- session events, shared by every instrumented column ----------------------------------------

# The instrumented columns; the session listeners are installed while there is one.
_listening_columns: set[StatusColumn] = set()
_listening_lock = threading.Lock()


def _reset_lock_after_fork() -> None:
    global _listening_lock
    _listening_lock = threading.Lock()


after_fork_in_child(_reset_lock_after_fork)


def _touched(session: Session) -> dict[tuple[InstanceState, StatusColumn], None]:
    return session.info.setdefault(_TOUCHED, {})


def _session_listeners() -> tuple[tuple[str, Callable[..., Any]], ...]:
    return (
        ("after_commit", _after_commit),
        ("after_soft_rollback", _after_soft_rollback),
        ("after_transaction_end", _after_transaction_end),
    )


def _listen_to_sessions(column: StatusColumn) -> None:
    """Installed once for every session, with the first column: cheap when a session changed
    no status."""
    with _listening_lock:
        first = not _listening_columns
        _listening_columns.add(column)
        if first:
            for name, listener in _session_listeners():
                event.listen(Session, name, listener)


def _stop_listening_to_sessions(column: StatusColumn) -> None:
    """Removed with the last column, so that nothing of the instrumentation stays behind."""
    with _listening_lock:
        if column not in _listening_columns:
            return
        _listening_columns.discard(column)
        if not _listening_columns:
            for name, listener in _session_listeners():
                if event.contains(Session, name, listener):
                    event.remove(Session, name, listener)


@guarded
def _after_commit(session: Session) -> None:
    # Runs before the commit expires the instances: their loaded values are still there.
    touched = session.info.pop(_TOUCHED, None)
    for state, column in touched or ():
        column._emit(state)


@guarded
def _after_soft_rollback(session: Session, rolled_back: SessionTransaction) -> None:
    touched = session.info.get(_TOUCHED)
    if not touched:
        return
    for state, column in list(touched):
        if column._drop(state, rolled_back):
            del touched[(state, column)]


@guarded
def _after_transaction_end(session: Session, transaction: SessionTransaction) -> None:
    """A session closed without committing: what it changed was never committed."""
    if transaction.parent is None:
        for state, column in session.info.pop(_TOUCHED, None) or ():
            state.info.pop(column, None)
