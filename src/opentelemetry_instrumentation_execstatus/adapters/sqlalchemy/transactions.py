"""The per-session transaction buffer: a row's status changes, held until their commit.

A change of status is a fact for the database, and for the other processes that read it, only
once it is committed. So each assignment is held with the row (in its ``InstanceState.info``,
one entry per column), with the time it happened and the transaction it was made in, and the
session remembers which rows it touched. At commit, the session's rows are handed to their
columns, in order of assignment, before the commit expires the instances (their loaded values
are still there). Flushing before the commit loses nothing, because nothing is taken from the
session's dirty set. Rolling back a transaction or a savepoint drops the changes made inside
it; a session closed without committing drops them all.

The three session listeners are installed on ``Session`` itself, once, while at least one
column is instrumented (cheap for a session that changed no status), and removed with the last
column, so that nothing of the instrumentation stays behind.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, NamedTuple

from sqlalchemy import event
from sqlalchemy.orm import Session, SessionTransaction
from sqlalchemy.orm.state import InstanceState

from opentelemetry_instrumentation_execstatus import clock
from opentelemetry_instrumentation_execstatus.forking import after_fork_in_child
from opentelemetry_instrumentation_execstatus.safety import report_internal_error
from opentelemetry_instrumentation_execstatus.semconv import ExecutionStatus

if TYPE_CHECKING:
    from opentelemetry_instrumentation_execstatus.adapters.sqlalchemy.column import StatusColumn
    from opentelemetry_instrumentation_execstatus.adapters.sqlalchemy.rows import RowFacts

_TOUCHED = "opentelemetry_instrumentation_execstatus.touched"


class Change(NamedTuple):
    """One assignment, held until its transaction commits."""

    raw: Any
    status: ExecutionStatus
    at: clock.Instant
    previous: ExecutionStatus | None
    previous_since: clock.Timestamp | None
    transaction: SessionTransaction | None


@dataclass
class PendingRow:
    """A row's changes of one column in the current transaction, and who the row is (read
    at its flush)."""

    changes: list[Change] = field(default_factory=list)
    facts: RowFacts | None = None


def pending(state: InstanceState, column: StatusColumn) -> PendingRow | None:
    """The row's changes held for ``column``, if any."""
    return state.info.get(column)


def start(state: InstanceState, column: StatusColumn) -> PendingRow:
    """Hold the row's changes for ``column`` anew: no earlier change stands before the next."""
    row = state.info[column] = PendingRow()
    return row


def hold(
    state: InstanceState,
    column: StatusColumn,
    row: PendingRow,
    raw: Any,
    status: ExecutionStatus,
    previous: ExecutionStatus | None,
    previous_since: clock.Timestamp | None,
) -> None:
    """Hold a change, made now, until the row's session commits."""
    session = state.session
    transaction = None
    if session is not None:
        transaction = session.get_nested_transaction() or session.get_transaction()
        _touched(session)[(state, column)] = None
    row.changes.append(Change(raw, status, clock.now(), previous, previous_since, transaction))


def touch(state: InstanceState, column: StatusColumn) -> None:
    """The row's session commits its changes for ``column``: registers an object that was
    assigned before it joined the session."""
    if state.session is not None:
        _touched(state.session)[(state, column)] = None


def _touched(session: Session) -> dict[tuple[InstanceState, StatusColumn], None]:
    return session.info.setdefault(_TOUCHED, {})


def _drop(state: InstanceState, column: StatusColumn, rolled_back: SessionTransaction) -> bool:
    """Forget the changes made inside ``rolled_back``; True if none are left."""
    row = pending(state, column)
    kept = [c for c in row.changes if not _inside(c.transaction, rolled_back)] if row else []
    if row is not None and kept:
        row.changes = kept
        return False
    state.info.pop(column, None)
    return True


def _inside(transaction: SessionTransaction | None, rolled_back: SessionTransaction) -> bool:
    """Was a change made in ``transaction`` undone by rolling back ``rolled_back``?"""
    if transaction is None:  # made outside any transaction: only the outermost undoes it
        return rolled_back.parent is None
    while transaction is not None:
        if transaction is rolled_back:
            return True
        transaction = transaction.parent
    return False


# -- the session listeners, shared by every instrumented column --------------------------------
# Called for every session of the application, whether it changed a status or not: guarded
# inline rather than by ``safety.guarded``, whose extra call (its argument packing) costs more
# than all the rest of what they do for a session that holds nothing.

_WHERE = f"{__name__}."


def after_commit(session: Session) -> None:
    # Runs before the commit expires the instances: their loaded values are still there.
    try:
        touched = session.info.pop(_TOUCHED, None)
        for state, column in touched or ():
            row = state.info.pop(column, None)
            if row is not None:
                column.committed(row)
    except Exception:
        report_internal_error(_WHERE + "after_commit")


def after_soft_rollback(session: Session, rolled_back: SessionTransaction) -> None:
    try:
        touched = session.info.get(_TOUCHED)
        if not touched:
            return
        for state, column in list(touched):
            if _drop(state, column, rolled_back):
                del touched[(state, column)]
    except Exception:
        report_internal_error(_WHERE + "after_soft_rollback")


def after_transaction_end(session: Session, transaction: SessionTransaction) -> None:
    """A session closed without committing: what it changed was never committed."""
    try:
        info = session.info
        if _TOUCHED in info and transaction.parent is None:
            for state, column in info.pop(_TOUCHED):
                state.info.pop(column, None)
    except Exception:
        report_internal_error(_WHERE + "after_transaction_end")


def _session_listeners() -> tuple[tuple[str, Callable[..., Any]], ...]:
    return (
        ("after_commit", after_commit),
        ("after_soft_rollback", after_soft_rollback),
        ("after_transaction_end", after_transaction_end),
    )


# The instrumented columns; the session listeners are installed while there is one.
_listening_columns: set[StatusColumn] = set()
_listening_lock = threading.Lock()


def _reset_lock_after_fork() -> None:
    global _listening_lock
    _listening_lock = threading.Lock()


after_fork_in_child(_reset_lock_after_fork)


def listen_to_sessions(column: StatusColumn) -> None:
    """Installed once for every session, with the first column."""
    with _listening_lock:
        first = not _listening_columns
        _listening_columns.add(column)
        if first:
            for name, listener in _session_listeners():
                event.listen(Session, name, listener)


def stop_listening_to_sessions(column: StatusColumn) -> None:
    """Removed with the last column."""
    with _listening_lock:
        if column not in _listening_columns:
            return
        _listening_columns.discard(column)
        if not _listening_columns:
            for name, listener in _session_listeners():
                if event.contains(Session, name, listener):
                    event.remove(Session, name, listener)
