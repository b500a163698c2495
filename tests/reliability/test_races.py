"""Ordering and eviction races: many threads reporting through the public API at once.

Thread timing is never forced and never asserted; what is asserted are the invariants that
must hold whatever the interleaving: once every execution has ended nothing is in flight, every
span that was started has ended exactly once, ``execution.active`` and
``execution.worker.count`` read 0, and with no eviction every execution has exactly the span,
status, parent and histogram samples its script gives it. A barrier holds every thread's
executions in flight together, so the in-flight table is really contended at its peak.
"""

from __future__ import annotations

import logging
import random
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any, Callable

import pytest
from checks import ledger_for, settled
from figures import FIGURES
from support import known_workers

from opentelemetry_instrumentation_execstatus import api, telemetry

THREADS = 16
RUNS_PER_THREAD = 100  # a run and its step: 200 executions per thread, 3,200 in flight at once
PEAK = THREADS * RUNS_PER_THREAD * 2
ROUNDS = 2
TIMEOUT = 60.0  # seconds for any thread or barrier: a deadlock fails the test, never hangs it

FINAL = {"succeeded", "cached", "failed", "system_error", "skipped", "cancelled", "unknown"}


# -- helpers ------------------------------------------------------------------------------


class SpanMisuse(logging.Handler):
    """Counts the SDK's warnings about a span used after its end.

    A second ``end()`` is invisible to a span processor (the SDK ignores it, with a warning),
    and so are attributes set on an ended span: this is how "ended exactly once" is seen.
    """

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if "ended span" in message or "started span" in message:
            self.messages.append(message)


@pytest.fixture
def span_misuse() -> Iterator[SpanMisuse]:
    handler = SpanMisuse()
    logger = logging.getLogger("opentelemetry.sdk.trace")
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)


@pytest.fixture
def long_time_slices() -> Iterator[None]:
    """Each thread keeps the GIL for 20 ms instead of 5 before it is asked to let go.

    Nothing is slept and no order is forced: a thread preempted in the middle of a report just
    finds much more done by the others when it resumes (with a cap of 1,000, a thousand other
    executions started: its own one, inserted but not yet begun, may be the oldest and be
    evicted, the race that used to leave counts and spans behind).
    """
    previous = sys.getswitchinterval()
    sys.setswitchinterval(0.02)
    try:
        yield
    finally:
        sys.setswitchinterval(previous)


def run_threads(
    count: int, target: Callable[[int], None], barrier: threading.Barrier | None = None
) -> None:
    """Run ``target(index)`` on ``count`` threads and wait for all of them, at most TIMEOUT.

    A thread that raises breaks the barrier (so the others fail fast instead of waiting out
    its timeout) and its exception is re-raised here; a thread still running at the deadline
    fails the test (daemon threads: a deadlock cannot keep the interpreter alive).
    """
    errors: list[BaseException] = []

    def body(index: int) -> None:
        try:
            target(index)
        except BaseException as exc:
            errors.append(exc)
            if barrier is not None:
                barrier.abort()

    threads = [
        threading.Thread(target=body, args=(index,), name=f"race-{index}", daemon=True)
        for index in range(count)
    ]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + TIMEOUT
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    stuck = [thread.name for thread in threads if thread.is_alive()]
    assert not stuck, f"threads still running after {TIMEOUT:.0f} s (a deadlock?): {stuck}"
    if errors:
        raise errors[0]


def tracker() -> Any:
    live = telemetry.current()
    assert live is not None, "not instrumented"
    return live.tracker


def final_status(span: Any) -> Any:
    return span.attributes.get("execution.status")


def run_id_of(span: Any) -> Any:
    return span.attributes.get("cicd.pipeline.run.id") or span.attributes.get(
        "cicd.pipeline.task.run.id"
    )


# -- many threads, many executions, with and without eviction ------------------------------


def fails(index: int) -> bool:
    return index % 7 == 0


def step_first(index: int) -> bool:
    """Out of order: the step's first event comes before its run's (the run is not in flight
    yet, so the step is a root)."""
    return index % 6 == 0


def ghost(index: int) -> bool:
    """An end without a start: a final status for an id never reported before."""
    return index % 11 == 0


def start_run(run: str, index: int) -> None:
    step = f"{run}/step"
    if step_first(index):
        api.report_status(step, "running", name=f"step-{index % 8}", parent_id=run)
    api.report_status(run, "queued", level="pipeline", pipeline=f"race-{index % 4}")
    api.report_status(run, "running")
    if index % 4 == 0:
        api.report_status(run, "running")  # a duplicate: same status again
    if not step_first(index):
        api.report_status(step, "running", name=f"step-{index % 8}", parent_id=run)


def end_run(run: str, index: int, began_at: float, late_events: bool) -> None:
    step = f"{run}/step"
    final = "failed" if fails(index) else "succeeded"
    error = ValueError("boom") if fails(index) else None
    api.report_status(step, final, error=error)
    if index % 3 == 0:
        api.report_status(step, final, error=error)  # the same final status, repeated
    if late_events and index % 5 == 0:
        # An event of the step's life (by its timestamp) that arrives after its end.
        api.report_status(step, "running", timestamp=began_at)
    if ghost(index):
        api.report_status(f"{run}/ghost", "succeeded", name="ghost", parent_id=run)
    api.report_status(run, final)
    if index % 4 == 0:
        api.report_status(run, "cancelled")  # a second, different final status: a duplicate


def expected_counts(rounds: int) -> dict[str, int]:
    indexes = range(RUNS_PER_THREAD)
    per_thread = {
        "runs": RUNS_PER_THREAD,
        "failed": sum(fails(i) for i in indexes),
        "ghosts": sum(ghost(i) for i in indexes),
        "roots": sum(step_first(i) for i in indexes),
    }
    return {name: value * THREADS * rounds for name, value in per_thread.items()}


def check_exact_outcome(otel: Any, rounds: int) -> None:
    """With no eviction, every execution has exactly the span its script gives it."""
    expected = expected_counts(rounds)
    spans = otel.spans()
    runs = {run_id_of(s): s for s in spans if s.attributes["execution.level"] == "pipeline"}
    steps = [s for s in spans if s.name.startswith("step-")]
    ghosts = [s for s in spans if s.name == "ghost"]
    assert len(runs) == expected["runs"], "one span per run"
    assert len(steps) == expected["runs"], "one span per step"
    assert len(ghosts) == expected["ghosts"], "one span per end without a start"
    assert len(spans) == 2 * expected["runs"] + expected["ghosts"], "no other span"
    by_status = Counter((s.attributes["execution.level"], final_status(s)) for s in spans)
    ok = expected["runs"] - expected["failed"]
    assert by_status == {
        ("pipeline", "succeeded"): ok,
        ("pipeline", "failed"): expected["failed"],
        ("step", "succeeded"): ok + expected["ghosts"],
        ("step", "failed"): expected["failed"],
    }, "a repeated or second final status changed an ended span"
    roots = 0
    for span in steps + ghosts:
        run = runs[run_id_of(span).rsplit("/", 1)[0]]
        if span.parent is None:
            roots += 1
        else:
            assert span.parent.span_id == run.context.span_id, f"{span.name}: wrong parent"
    assert roots == expected["roots"], "only steps reported before their run are roots"
    assert otel.transition_counts(execution_level="pipeline") == {
        ("queued", "running"): expected["runs"],
        ("running", "succeeded"): ok,
        ("running", "failed"): expected["failed"],
    }
    assert otel.transition_counts(execution_level="step") == {
        ("running", "succeeded"): ok,  # no sample for a ghost's only status, nor late events
        ("running", "failed"): expected["failed"],
    }


@pytest.mark.parametrize(
    "max_in_flight",
    [
        pytest.param(10_000, id="no-eviction"),
        pytest.param(1000, id="cap-1000"),
        pytest.param(5, id="cap-5"),
    ],
)
def test_sixteen_threads_of_executions_settle(
    instrument, span_misuse, long_time_slices, max_in_flight
):
    """16 threads, 3,200 executions in flight together at each round's peak, duplicated,
    out-of-order and repeated events, ends without starts: every count returns to 0, every
    span ends once; with no eviction the outcome is exact, with eviction the cap holds."""
    otel = instrument(max_in_flight=max_in_flight)
    ledger = ledger_for(otel)
    # Late events (an event of a step's life arriving after its end) are dropped because its
    # key is remembered as ended; that memory is bounded by the cap too, so under eviction a
    # late event may find its key forgotten and start an execution: they are tested without.
    late_events = max_in_flight >= PEAK
    peaks: list[int] = []
    barrier = threading.Barrier(
        THREADS, action=lambda: peaks.append(tracker().in_flight_count()), timeout=TIMEOUT
    )

    def worker(thread: int) -> None:
        for round_ in range(ROUNDS):
            began_at = time.time()
            runs = [f"r{round_}-{thread}-{index}" for index in range(RUNS_PER_THREAD)]
            for index, run in enumerate(runs):
                start_run(run, index)
            barrier.wait()  # every thread's executions are in flight now
            for index, run in enumerate(runs):
                end_run(run, index, began_at, late_events)
            barrier.wait()  # every execution of this round has ended

    run_threads(THREADS, worker, barrier)

    # Each round: peak at the first barrier, then (the second barrier) all ended.
    assert peaks[0::2] == [min(max_in_flight, PEAK)] * ROUNDS, "in flight at the peak"
    assert peaks[1::2] == [0] * ROUNDS, "left in flight after every execution ended"
    assert not span_misuse.messages, f"spans used after their end: {span_misuse.messages[:3]}"
    settled(otel, ledger)
    spans = otel.spans()
    statuses = Counter(final_status(span) for span in spans)
    assert set(statuses) <= FINAL, f"spans ended without a final status: {statuses}"
    executions = ROUNDS * THREADS * RUNS_PER_THREAD * 2 + expected_counts(ROUNDS)["ghosts"]
    FIGURES.executions += executions
    assert len(tracker().executions.ended) <= max_in_flight, "ended keys remembered beyond the cap"
    if max_in_flight >= PEAK:
        check_exact_outcome(otel, ROUNDS)
        FIGURES.spans(executions, len(spans))
    else:
        assert statuses["unknown"] > 0, "the cap was reached, yet nothing ended as unknown"


# -- many threads on the same executions -----------------------------------------------------

SHARED = 200  # executions every thread reports, all of it
IDENTITY = {"level": "pipeline", "pipeline": "shared"}  # on every event, as an orchestrator does


def shared_events(base: float) -> list[tuple[str, str, float]]:
    """Every execution's events and when they happened (epoch seconds): whatever order they
    arrive in, an event older than the execution's end cannot start it again."""
    script = [("queued", 0.0), ("running", 1.0), ("running", 1.0), ("succeeded", 2.0)]
    return [
        (f"shared-{index}", status, base + offset)
        for index in range(SHARED)
        for status, offset in script
    ]


def report_shared(events: list[tuple[str, str, float]], timestamps: bool) -> None:
    for key, status, at in events:
        if timestamps:
            api.report_status(key, status, timestamp=at, **IDENTITY)
        else:
            api.report_status(key, status, **IDENTITY)


@pytest.mark.parametrize("timestamps", [True, False], ids=["timestamped", "phased"])
def test_threads_racing_on_the_same_executions_end_each_once(instrument, span_misuse, timestamps):
    """16 threads each report every event of the same 200 executions, each in its own shuffled
    order: exactly one span per execution, ended once with its final status, counts 0.

    ``timestamped``: each event carries when it happened, so a non-final event arriving after
    the end is known to be late. ``phased``: no timestamps (a non-final status after the end
    would be a re-run), so every thread reports its non-final events, then, after a barrier,
    its final ones; all but the first final status of an execution are duplicates.
    """
    otel = instrument()
    ledger = ledger_for(otel)
    events = shared_events(time.time() - 60)
    barrier = threading.Barrier(THREADS, timeout=TIMEOUT)

    def worker(thread: int) -> None:
        mine = list(events)
        random.Random(thread).shuffle(mine)
        barrier.wait()
        if timestamps:
            report_shared(mine, timestamps=True)
            return
        report_shared([event for event in mine if event[1] != "succeeded"], timestamps=False)
        barrier.wait()
        report_shared([event for event in mine if event[1] == "succeeded"], timestamps=False)

    run_threads(THREADS, worker, barrier)

    spans = otel.spans()
    keys = {key for key, _, _ in events}
    assert Counter(run_id_of(span) for span in spans) == dict.fromkeys(keys, 1), (
        "not exactly one span per execution"
    )
    assert {final_status(span) for span in spans} == {"succeeded"}
    assert ledger.started == SHARED, "a span started twice for one execution"
    assert not span_misuse.messages, f"spans used after their end: {span_misuse.messages[:3]}"
    into_final = sum(c for (_, to), c in otel.transition_counts().items() if to == "succeeded")
    assert into_final <= SHARED, "more than one end recorded for an execution"
    settled(otel, ledger)
    FIGURES.executions += SHARED
    FIGURES.spans(SHARED, len(spans))


# -- ids reused across threads ---------------------------------------------------------------

REUSED_IDS = 40
RERUNS_PER_THREAD = 50


def test_ids_reused_across_threads_are_new_executions(instrument, span_misuse):
    """A pool of 40 ids, each run again and again by whichever of 16 threads gets it, each run
    only after the previous one with that id has ended: every run is its own execution with
    its own span, and counts return to 0."""
    otel = instrument()
    ledger = ledger_for(otel)
    id_locks = [threading.Lock() for _ in range(REUSED_IDS)]
    runs_by_id: Counter[str] = Counter()
    barrier = threading.Barrier(THREADS, timeout=TIMEOUT)

    def worker(thread: int) -> None:
        chooser = random.Random(1000 + thread)
        barrier.wait()
        for attempt in range(RERUNS_PER_THREAD):
            which = chooser.randrange(REUSED_IDS)
            run = f"reused-{which}"
            # The test orders runs of one id (the previous has ended before the next starts);
            # it does nothing to order the tracker's work across ids.
            if not id_locks[which].acquire(timeout=TIMEOUT):
                raise TimeoutError(f"{run} held for {TIMEOUT} s")
            try:
                api.report_status(run, "queued", level="pipeline", pipeline="reused")
                api.report_status(run, "running", attempt=attempt + 1)
                api.report_status(run, "failed" if attempt % 5 == 0 else "succeeded")
                api.report_status(run, "succeeded")  # a duplicate end
                runs_by_id[run] += 1
            finally:
                id_locks[which].release()

    run_threads(THREADS, worker, barrier)

    spans = otel.spans()
    total = THREADS * RERUNS_PER_THREAD
    assert sum(runs_by_id.values()) == total
    assert Counter(run_id_of(span) for span in spans) == runs_by_id, "a re-run was dropped"
    assert otel.transition_counts()[("queued", "running")] == total
    assert not span_misuse.messages, f"spans used after their end: {span_misuse.messages[:3]}"
    settled(otel, ledger)
    FIGURES.executions += total
    FIGURES.spans(total, len(spans))


# -- workers reported from many threads ------------------------------------------------------


def test_worker_states_from_many_threads_return_to_zero(instrument):
    """16 threads move the same 50 workers through every state at once: at any quiet moment
    the counts add up to the workers known, and once every worker is forgotten (several
    times over, from every thread) every ``execution.worker.count`` series reads 0."""
    otel = instrument()
    ledger = ledger_for(otel)
    live = telemetry.current()
    assert live is not None
    workers = [f"worker-{index}" for index in range(50)]
    states = ["spawning", "idle", "busy", "hot", "draining", "available", "offline", "lost"]
    totals: list[tuple[int, int]] = []

    def count_workers() -> None:
        counted = sum(otel.sums("execution.worker.count").values())
        totals.append((counted, known_workers(live)))

    barrier = threading.Barrier(THREADS, action=count_workers, timeout=TIMEOUT)

    def worker(thread: int) -> None:
        chooser = random.Random(2000 + thread)
        for _ in range(400):
            api.report_worker_state(chooser.choice(workers), chooser.choice(states))
        barrier.wait()
        for name in workers[thread % 4 :: 4]:
            api.report_worker_state(name, None)

    run_threads(THREADS, worker, barrier)

    assert totals == [(len(workers), len(workers))], "counts and known workers disagree"
    assert known_workers(live) == 0, "forgotten workers still known"
    settled(otel, ledger)


# -- known defect ----------------------------------------------------------------------------


def test_an_older_event_arriving_late_does_not_move_an_execution_back(instrument):
    """Two threads of an orchestrator report one execution: ``running`` (at t+1) arrives
    before ``queued`` (at t). The late ``queued`` is older than the status the execution is
    in, as a late event after the end is older than the end (and dropped for it): the
    execution stays ``running``, and ``running -> succeeded`` is measured from t+1."""
    otel = instrument()
    ledger = ledger_for(otel)
    t = time.time() - 60
    api.report_status("late", "running", level="pipeline", pipeline="late", timestamp=t + 1)
    api.report_status("late", "queued", timestamp=t)
    api.report_status("late", "succeeded", timestamp=t + 2)
    settled(otel, ledger)
    events = [
        (e.attributes.get("execution.status.from"), e.attributes["execution.status.to"])
        for e in otel.span("RUN late").events
    ]
    assert events == [(None, "running"), ("running", "succeeded")]
    assert otel.transition_counts() == {("running", "succeeded"): 1}


def test_an_end_stamped_in_the_future_does_not_swallow_a_re_run(instrument):
    """A worker whose clock runs an hour ahead ends ``job``; a re-run reported without
    timestamps right after is a new execution, not a late event of the first."""
    otel = instrument()
    ledger = ledger_for(otel)
    api.report_status("job", "running", name="job")
    api.report_status("job", "succeeded", timestamp=time.time() + 3600)
    api.report_status("job", "running", name="job")
    api.report_status("job", "succeeded")
    settled(otel, ledger)
    assert [span.name for span in otel.spans()] == ["job", "job"]
    assert otel.transition_counts() == {("running", "succeeded"): 2}
