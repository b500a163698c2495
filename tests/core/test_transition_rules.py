"""The transition rules alone: plain values in, a decision out; no SDK, no tracker, no lock.

Each test states the whole ``Change`` (or its absence) a rule must decide, so any wrong part of
a decision (the status or since-when recorded, how ``execution.active`` moves, the status left
and since when for the sample and the event, whether and when the span opens) fails it.
"""

from __future__ import annotations

import ast
import inspect

import pytest

from opentelemetry_instrumentation_execstatus import transition_rules
from opentelemetry_instrumentation_execstatus.semconv import ExecutionLevel, ExecutionStatus
from opentelemetry_instrumentation_execstatus.transition_rules import (
    Change,
    abandoned,
    counted,
    live_change,
    persisted_change,
    starts_anew,
    wants_span,
)

QUEUED = ExecutionStatus.QUEUED
RUNNING = ExecutionStatus.RUNNING
RETRYING = ExecutionStatus.RETRYING
SUCCEEDED = ExecutionStatus.SUCCEEDED
FAILED = ExecutionStatus.FAILED
CANCELLED = ExecutionStatus.CANCELLED
UNKNOWN = ExecutionStatus.UNKNOWN
FINAL = [status for status in ExecutionStatus if status.is_final]


def change(
    status: ExecutionStatus,
    since_ns: int | None,
    *,
    leaving: ExecutionStatus | None = None,
    entering: ExecutionStatus | None = None,
    left: ExecutionStatus | None = None,
    left_since_ns: int | None = None,
    span_opens_in: ExecutionStatus | None = None,
    span_opens_at_ns: int | None = None,
) -> Change:
    """The change the rules must decide, field by field by name."""
    return (
        status,
        since_ns,
        leaving,
        entering,
        left,
        left_since_ns,
        span_opens_in,
        span_opens_at_ns,
    )


def test_the_rules_import_nothing_of_opentelemetry():
    """Plain code: the module imports no OpenTelemetry API or SDK, only the package's enums."""
    tree = ast.parse(inspect.getsource(transition_rules))
    imported = [
        node.module if isinstance(node, ast.ImportFrom) else alias.name
        for node in ast.walk(tree)
        if isinstance(node, (ast.Import, ast.ImportFrom))
        for alias in node.names
    ]
    assert imported, "no import found: the check would pass vacuously"
    assert all(not name.startswith("opentelemetry.") for name in imported if name), imported
    assert "opentelemetry" not in imported


# -- what execution.active counts ----------------------------------------------------------


@pytest.mark.parametrize("status", FINAL)
def test_a_final_status_is_not_counted_as_active(status):
    assert counted(status) is None


@pytest.mark.parametrize("status", [QUEUED, RUNNING, RETRYING, UNKNOWN])
def test_a_non_final_status_is_counted_as_itself(status):
    assert counted(status) is status


def test_no_status_is_not_counted():
    assert counted(None) is None


# -- live executions -------------------------------------------------------------------------


def test_a_live_first_status_enters_active_and_opens_the_span_without_a_sample():
    assert live_change(None, None, QUEUED, 100) == change(
        QUEUED, 100, entering=QUEUED, span_opens_in=QUEUED, span_opens_at_ns=100
    )


def test_a_live_first_status_that_is_final_opens_the_span_but_counts_nothing():
    assert live_change(None, None, SUCCEEDED, 100) == change(
        SUCCEEDED, 100, span_opens_in=SUCCEEDED, span_opens_at_ns=100
    )


def test_a_live_change_moves_active_and_samples_the_status_left():
    assert live_change(QUEUED, 100, RUNNING, 250) == change(
        RUNNING, 250, leaving=QUEUED, entering=RUNNING, left=QUEUED, left_since_ns=100
    )


def test_a_live_final_status_leaves_active_without_entering_a_series():
    assert live_change(RUNNING, 250, FAILED, 400) == change(
        FAILED, 400, leaving=RUNNING, left=RUNNING, left_since_ns=250
    )


def test_a_live_change_to_unknown_is_counted_under_unknown():
    """``unknown`` is not final: the execution is still in flight, in an unknown status."""
    assert live_change(RUNNING, 100, UNKNOWN, 200) == change(
        UNKNOWN, 200, leaving=RUNNING, entering=UNKNOWN, left=RUNNING, left_since_ns=100
    )


def test_the_same_live_status_again_is_dropped():
    assert live_change(RUNNING, 100, RUNNING, 500) is None


@pytest.mark.parametrize("late", [QUEUED, RUNNING, SUCCEEDED, CANCELLED, UNKNOWN])
def test_anything_after_a_live_final_status_is_dropped(late):
    assert live_change(SUCCEEDED, 100, late, 500) is None


def test_a_live_non_final_status_stamped_before_the_current_one_is_dropped():
    """Out of order: ``queued`` stamped at 100 arrives after ``running`` stamped at 200."""
    assert live_change(RUNNING, 200, QUEUED, 100) is None


def test_a_live_status_stamped_at_the_same_time_as_the_current_one_applies():
    assert live_change(QUEUED, 200, RUNNING, 200) == change(
        RUNNING, 200, leaving=QUEUED, entering=RUNNING, left=QUEUED, left_since_ns=200
    )


def test_a_live_final_status_stamped_before_the_current_one_still_ends_the_execution():
    """Its sample starts after it ends (the writer clamps it to 0): the end is not lost."""
    assert live_change(RUNNING, 200, SUCCEEDED, 100) == change(
        SUCCEEDED, 100, leaving=RUNNING, left=RUNNING, left_since_ns=200
    )


# -- persisted executions ------------------------------------------------------------------


def test_a_new_row_enters_active_with_no_sample_and_no_span_yet():
    assert persisted_change(None, None, QUEUED, 100, None, None) == change(
        QUEUED, 100, entering=QUEUED
    )


def test_the_databases_previous_status_and_since_win_over_the_record():
    """Another process moved the row to ``running`` at 200; this one still has ``queued``."""
    assert persisted_change(QUEUED, 100, SUCCEEDED, 300, RUNNING, 200) == change(
        SUCCEEDED,
        300,
        leaving=RUNNING,
        left=RUNNING,
        left_since_ns=200,
        span_opens_in=RUNNING,
        span_opens_at_ns=200,
    )


def test_a_row_first_seen_here_moves_from_the_databases_status_backdating_its_span():
    """After a restart: nothing recorded here, the database says ``queued`` since 100."""
    assert persisted_change(None, None, RUNNING, 300, QUEUED, 100) == change(
        RUNNING,
        300,
        leaving=QUEUED,
        entering=RUNNING,
        left=QUEUED,
        left_since_ns=100,
        span_opens_in=QUEUED,
        span_opens_at_ns=100,
    )


def test_without_the_databases_since_the_records_since_serves_for_the_same_status():
    assert persisted_change(QUEUED, 100, RUNNING, 300, QUEUED, None) == change(
        RUNNING,
        300,
        leaving=QUEUED,
        entering=RUNNING,
        left=QUEUED,
        left_since_ns=100,
        span_opens_in=QUEUED,
        span_opens_at_ns=100,
    )


def test_without_the_databases_since_another_status_gives_no_sample_and_a_span_from_now():
    """The database says ``running``, this process had ``queued``: when ``running`` began is
    unknown, so there is no sample, and the span starts at this change."""
    assert persisted_change(QUEUED, 100, SUCCEEDED, 300, RUNNING, None) == change(
        SUCCEEDED, 300, leaving=RUNNING, left=RUNNING, span_opens_in=RUNNING, span_opens_at_ns=300
    )


def test_without_the_databases_previous_status_the_record_stands_in():
    assert persisted_change(QUEUED, 100, RUNNING, 300, None, None) == change(
        RUNNING,
        300,
        leaving=QUEUED,
        entering=RUNNING,
        left=QUEUED,
        left_since_ns=100,
        span_opens_in=QUEUED,
        span_opens_at_ns=100,
    )


def test_a_persisted_change_stamped_before_the_record_still_applies():
    """The database orders a row's changes: unlike a live event, an earlier stamp is no
    reason to drop one (its sample, negative, is clamped to 0 by the writer)."""
    assert persisted_change(RUNNING, 500, SUCCEEDED, 300, RUNNING, 500) == change(
        SUCCEEDED,
        300,
        leaving=RUNNING,
        left=RUNNING,
        left_since_ns=500,
        span_opens_in=RUNNING,
        span_opens_at_ns=500,
    )


def test_a_row_back_from_a_final_status_only_enters_the_new_one():
    """A re-run of a finished row: ``succeeded`` was never counted as active, so nothing
    leaves it; the time spent in it is still sampled."""
    assert persisted_change(None, None, RUNNING, 900, SUCCEEDED, 400) == change(
        RUNNING,
        900,
        entering=RUNNING,
        left=SUCCEEDED,
        left_since_ns=400,
        span_opens_in=SUCCEEDED,
        span_opens_at_ns=400,
    )


def test_the_status_the_row_already_had_records_nothing_but_catches_up():
    """This process was behind (it had ``queued``); the database already said ``running``
    since 200: no move, no sample, no span; the record takes ``running`` since 200."""
    assert persisted_change(QUEUED, 100, RUNNING, 300, RUNNING, 200) == change(RUNNING, 200)


def test_the_same_status_with_no_since_anywhere_leaves_since_unknown():
    """A row first seen here, already in its status since an unknown time: a later change
    must not measure from this report."""
    assert persisted_change(None, None, RUNNING, 300, RUNNING, None) == change(RUNNING, None)


def test_the_same_status_without_the_databases_since_keeps_the_records():
    assert persisted_change(RUNNING, 100, RUNNING, 300, RUNNING, None) == change(RUNNING, 100)


def test_catching_up_with_no_since_known_keeps_the_records_since_rather_than_forget_it():
    """This process had ``queued`` since 100; the database says ``running``, since it does
    not say when: the record takes ``running`` and keeps 100, it does not become unknown."""
    assert persisted_change(QUEUED, 100, RUNNING, 300, RUNNING, None) == change(RUNNING, 100)


@pytest.mark.parametrize("stored", [None, RUNNING, SUCCEEDED])
def test_anything_after_a_recorded_final_status_of_a_row_is_dropped(stored):
    assert persisted_change(SUCCEEDED, 100, RUNNING, 500, stored, 100) is None


# -- a key whose execution has ended -------------------------------------------------------


@pytest.mark.parametrize("persisted", [False, True])
def test_a_non_final_status_at_or_after_the_end_starts_anew(persisted):
    assert starts_anew(persisted, RUNNING, 500, QUEUED, 500)
    assert starts_anew(persisted, RUNNING, 501, QUEUED, 500)


def test_a_live_non_final_status_before_the_end_is_a_late_event():
    assert not starts_anew(False, RUNNING, 499, None, 500)


@pytest.mark.parametrize("at_ns", [100, 500, 900])
def test_a_live_final_status_for_an_ended_key_is_a_duplicate(at_ns):
    assert not starts_anew(False, SUCCEEDED, at_ns, None, 500)


def test_a_row_whose_database_status_is_not_final_before_the_end_is_a_late_event():
    assert not starts_anew(True, SUCCEEDED, 400, RUNNING, 500)
    assert not starts_anew(True, RUNNING, 400, QUEUED, 500)


def test_a_row_back_from_a_final_status_starts_anew_whatever_its_stamp():
    assert starts_anew(True, RUNNING, 400, SUCCEEDED, 500)


def test_a_row_back_from_a_final_status_to_a_final_one_is_a_duplicate():
    assert not starts_anew(True, FAILED, 400, SUCCEEDED, 500)


def test_a_row_with_no_status_in_the_database_is_a_new_row_reusing_the_id():
    assert starts_anew(True, SUCCEEDED, 400, None, 500)
    assert not starts_anew(False, SUCCEEDED, 400, None, 500), "a live execution has no such row"


# -- executions this process will not see end -------------------------------------------------


def test_an_evicted_execution_becomes_unknown_leaving_active_with_no_sample_nor_event():
    assert abandoned(RUNNING, 100, 900, persisted=False, evicted=True) == change(
        UNKNOWN, 100, leaving=RUNNING
    )


def test_an_execution_in_flight_at_exit_is_cancelled_with_its_sample():
    assert abandoned(RUNNING, 100, 900, persisted=False, evicted=False) == change(
        CANCELLED, 900, leaving=RUNNING, left=RUNNING, left_since_ns=100
    )


@pytest.mark.parametrize("evicted", [False, True])
def test_an_abandoned_row_keeps_its_status_and_its_count(evicted):
    assert abandoned(RUNNING, 100, 900, persisted=True, evicted=evicted) is None


@pytest.mark.parametrize("evicted", [False, True])
@pytest.mark.parametrize("recorded", [None, SUCCEEDED])
def test_an_execution_with_no_open_status_has_nothing_to_end(recorded, evicted):
    assert abandoned(recorded, 100, 900, persisted=False, evicted=evicted) is None


# -- who gets a span --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("emit_span", "level", "item_spans", "expected"),
    [
        (True, ExecutionLevel.PIPELINE, False, True),
        (True, ExecutionLevel.STEP, False, True),
        (True, ExecutionLevel.ITEM, False, False),
        (True, ExecutionLevel.ITEM, True, True),
        (False, ExecutionLevel.STEP, True, False),
        (False, ExecutionLevel.ITEM, True, False),
    ],
)
def test_spans_for_what_the_orchestrator_does_not_trace_and_items_only_when_asked(
    emit_span, level, item_spans, expected
):
    assert wants_span(emit_span, level, item_spans) is expected
