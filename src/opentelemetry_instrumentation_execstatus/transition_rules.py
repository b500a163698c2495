"""The transition rules: whether a reported status change applies, and what it changes.

Plain decisions over plain values (an execution's recorded status and since-when, the reported
status and its time, a database's previous status and since-when), with no SDK, no tracer, no
instrument and no lock, so that every rule can be tested on its own. The tracker asks under the
execution's lock and carries out the answer, a ``Change``: the record's new status and
since-when, how ``execution.active`` moves, which status was left and since when (the
histogram sample and the span's status-change event), and whether the span opens now.

Live executions, whose status this process follows itself (``live_change``):
- the first status begins the execution: it enters ``execution.active`` and its span opens
  then; there is no sample, as no status was left;
- the same canonical status again changes nothing, nor does anything after a final status
  (a late event of an execution that has ended);
- a non-final status stamped before the one the execution is in has been overtaken by it and
  is dropped; a final one still ends the execution, its sample clamped to 0 where recorded.

Persisted executions, whose status lives in a database several processes write
(``persisted_change``):
- the database's previous status and since-when, when given, win over this process's record:
  they cover a change another process made, or one made before a restart; without them the
  record stands in; with neither, the row is new: its first status, no sample, no span yet;
- the status the row already had changes nothing to record, though this process may have been
  behind: the record takes it, and its since-when when that is known;
- any other change moves ``execution.active`` from the previous status to the new one,
  whoever counted the previous one (each writer adds its own deltas, so their sum over the
  writers is the number of rows in each status); a row back from a final status only enters
  the new one. The span, when the execution has none yet, opens at this first change seen
  here, backdated to when the previous status began.

A key whose execution has ended may be reported again (``starts_anew``), and an execution may
have to be ended by this process although no final status was reported (``abandoned``).
"""

from __future__ import annotations

from typing import Optional

from opentelemetry_instrumentation_execstatus.semconv import ExecutionLevel, ExecutionStatus

Change = tuple[
    ExecutionStatus,  # status: the execution's status from now on...
    Optional[int],  # since_ns: ...and since when, as recorded (None: unknown, no later sample)
    Optional[ExecutionStatus],  # leaving: execution.active has one less in this status...
    Optional[ExecutionStatus],  # entering: ...and one more in this one (None: no series)
    Optional[ExecutionStatus],  # left: the status left, for the sample and the span's event
    Optional[int],  # left_since_ns: when ``left`` began, the sample's start (None: no sample)
    Optional[ExecutionStatus],  # span_opens_in: the span, if there is none yet, opens in it...
    Optional[int],  # span_opens_at_ns: ...at this time
]
"""What one applied status change does, field by field as commented; the time of the change is
the caller's. A plain tuple: one is built for each change of every execution, the tracker's
hot path, where a NamedTuple would cost a Python call more; the tracker unpacks it."""


FINAL_STATUSES = frozenset(status for status in ExecutionStatus if status.is_final)
"""The statuses that end an execution: ``status in FINAL_STATUSES`` is ``status.is_final``
without the call to a property, on every change."""


_ITEM = ExecutionLevel.ITEM  # read once: an enum member read from its class costs a call's time


def counted(status: ExecutionStatus | None) -> ExecutionStatus | None:
    """The ``execution.active`` series an execution in ``status`` counts in: None for no status
    and for a final one (an ended execution is in flight no more)."""
    if status is None or status in FINAL_STATUSES:
        return None
    return status


def live_change(
    recorded: ExecutionStatus | None,
    recorded_since_ns: int | None,
    current: ExecutionStatus,
    at_ns: int,
) -> Change | None:
    """A change to ``current`` at ``at_ns`` of a live execution recorded in ``recorded`` since
    ``recorded_since_ns`` (None and None before its first status); None when it is dropped."""
    entering = None if current in FINAL_STATUSES else current  # ``counted(current)``
    if recorded is None:
        return (current, at_ns, None, entering, None, None, current, at_ns)
    if recorded is current or recorded in FINAL_STATUSES:
        return None  # the same canonical status, or a late event after the end
    if recorded_since_ns is not None and at_ns < recorded_since_ns and entering is not None:
        return None  # an older event arriving late: the execution has moved past it
    # ``recorded`` is not final: it leaves its own series.
    return (current, at_ns, recorded, entering, recorded, recorded_since_ns, None, None)


def persisted_change(
    recorded: ExecutionStatus | None,
    recorded_since_ns: int | None,
    current: ExecutionStatus,
    at_ns: int,
    stored: ExecutionStatus | None,
    stored_since_ns: int | None,
) -> Change | None:
    """A change to ``current`` at ``at_ns`` of a database row, measured from the database's
    previous status ``stored`` (entered at ``stored_since_ns``) when it gives one, else from
    this process's record; None when it is dropped."""
    if recorded is not None and recorded in FINAL_STATUSES:
        return None  # a late event after the end
    if stored is not None:
        previous: ExecutionStatus | None = stored
        since = stored_since_ns
        if since is None and recorded is stored:
            since = recorded_since_ns
    else:
        previous, since = recorded, recorded_since_ns
    if previous is None:  # a new row: its first status
        return (current, at_ns, None, counted(current), None, None, None, None)
    if previous is current:  # nothing changed, though this process may have been behind
        # None: when the status began is unknown, so the next change records no sample.
        kept_since = since if since is not None or recorded is None else recorded_since_ns
        return (current, kept_since, None, None, None, None, None, None)
    return (
        current,
        at_ns,
        counted(previous),
        counted(current),
        previous,
        since,
        previous,
        at_ns if since is None else since,
    )


def abandoned(
    recorded: ExecutionStatus | None,
    recorded_since_ns: int | None,
    at_ns: int,
    *,
    persisted: bool,
    evicted: bool,
) -> Change | None:
    """How an execution this process will not see end is ended at ``at_ns``; None when its
    status does not change.

    Pushed out by the in-flight cap (``evicted``), it becomes ``unknown`` and leaves
    ``execution.active``, with no sample and no event: nothing says it ended, nor when. At exit
    or ``uninstrument()`` it is cancelled now, as if that had been reported. An execution with
    no status yet, or a final one, has nothing to end; a database row keeps its status and its
    count, as the database still holds it, for whichever process changes the row next.
    """
    if recorded is None or recorded in FINAL_STATUSES or persisted:
        return None
    if evicted:
        unknown = ExecutionStatus.UNKNOWN
        return (unknown, recorded_since_ns, recorded, None, None, None, None, None)
    return live_change(recorded, recorded_since_ns, ExecutionStatus.CANCELLED, at_ns)


def handed_off(recorded: ExecutionStatus | None, recorded_since_ns: int | None) -> Change | None:
    """How an execution that goes on in another process leaves this one; None when it has
    nothing to leave (no status yet, or a final one).

    It keeps its status and leaves ``execution.active`` here, with no sample and no event: the
    process that takes it over carries on from that status and measures the time in it from
    when it began, which travels with the work (a task's message headers).
    """
    if recorded is None or recorded in FINAL_STATUSES:
        return None
    return (recorded, recorded_since_ns, recorded, None, None, None, None, None)


def starts_anew(
    persisted: bool,
    current: ExecutionStatus,
    at_ns: int,
    stored: ExecutionStatus | None,
    ended_at_ns: int,
) -> bool:
    """Does a change for a key whose execution ended at ``ended_at_ns`` start a new execution?

    A non-final status that happened at or after that end does (a re-run under the same id);
    one that happened before it is a late event of the ended execution, and a final status
    is a duplicate end. A database row also starts anew when the database says it comes back
    from a final status, or holds no status yet (a new row reusing the id).
    """
    final = current in FINAL_STATUSES
    if not final and at_ns >= ended_at_ns:
        return True
    return persisted and (stored is None or (stored in FINAL_STATUSES and not final))


def wants_span(emit_span: bool, level: ExecutionLevel, item_spans: bool) -> bool:
    """Does an execution get a span of its own? Not when the orchestrator traces it itself
    (``emit_span=False``), and an item only when item spans are switched on."""
    return emit_span and (level is not _ITEM or item_spans)
