"""Fork with threads inside the package: the child starts clean and never hangs.

A lock that another thread of the parent holds at ``os.fork()`` stays held forever in the
child, where that thread does not exist; the parent's executions and workers in flight are not
the child's, which will never see them end. So a forked child must be able to report at once
(every lock of the package re-created) and must count from 0, while the parent goes on
unchanged.

Every child runs its part, writes a JSON result to a pipe and leaves with ``os._exit`` (never
returning into pytest). The parent waits for it at most ``CHILD_TIMEOUT`` seconds, then kills
it: a child that hangs fails the test, it never hangs the suite.
"""

from __future__ import annotations

import functools
import importlib
import json
import os
import random
import select
import signal
import threading
import time
import traceback
import warnings
import weakref
from collections.abc import Iterator
from typing import Any, Callable

import pytest
from checks import SpanLedger, ledger_for, settled
from figures import FIGURES
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.metrics.view import DropAggregation, View
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from support import Telemetry, held_by_another_thread, known_workers

from opentelemetry_instrumentation_execstatus import ExecStatusInstrumentor, api, telemetry

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="POSIX only: needs os.fork()")

CHILD_TIMEOUT = 10.0  # seconds a child may take for a few dozen reports: far more than enough
GAUGES = ("execution.active", "execution.worker.count")


# -- running code in a forked child ------------------------------------------------------


def in_child(work: Callable[[], dict[str, Any]], timeout: float = CHILD_TIMEOUT) -> dict[str, Any]:
    """Fork; the child runs ``work()`` and sends back its JSON-able result (or its traceback).

    The parent reads the pipe until the child closes it by exiting, at most ``timeout``
    seconds; a child still running then is killed and the test fails as hung.
    """
    read_end, write_end = os.pipe()
    with warnings.catch_warnings():  # 3.12+ warns that forking with threads may deadlock:
        warnings.simplefilter("ignore", DeprecationWarning)  # that is what is tested here
        pid = os.fork()
    if pid == 0:
        _child_main(read_end, write_end, work)  # never returns
    os.close(write_end)
    FIGURES.forks += 1
    try:
        data = _read_until_eof(read_end, time.monotonic() + timeout)
    finally:
        os.close(read_end)
    if data is None:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        pytest.fail(f"the forked child did not finish within {timeout:.0f} s: hung (killed)")
    _, status = os.waitpid(pid, 0)  # it closed the pipe by exiting
    payload = json.loads(data) if data else {"error": f"no result, wait status {status}"}
    if "error" in payload:
        pytest.fail(f"the forked child failed:\n{payload['error']}")
    return payload["result"]


def _child_main(read_end: int, write_end: int, work: Callable[[], dict[str, Any]]) -> None:
    code = 1
    try:
        os.close(read_end)
        try:
            payload: dict[str, Any] = {"result": work()}
        except BaseException as exc:
            payload = {"error": "".join(traceback.format_exception(type(exc), exc, None))}
            payload["error"] += "".join(traceback.format_tb(exc.__traceback__))
        view = memoryview(json.dumps(payload, default=repr).encode())
        while view:
            view = view[os.write(write_end, view) :]
        code = 0
    finally:
        os._exit(code)


def _read_until_eof(fd: int, deadline: float) -> bytes | None:
    """Everything written to ``fd`` until its writer closed it; None at the deadline."""
    chunks = []
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return None
        readable, _, _ = select.select([fd], [], [], remaining)
        if readable:
            chunk = os.read(fd, 65536)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)


def live_telemetry() -> Any:
    live = telemetry.current()
    assert live is not None, "not instrumented"
    return live


def readings(otel: Telemetry) -> dict[str, dict[str, int]]:
    """Every ``execution.active`` series by level and status (``pipeline running``) and every
    ``execution.worker.count`` series by state, as the SDK's reader reads them (JSON-able)."""
    active = {
        f"{p.attributes['execution.level']} {p.attributes['execution.status']}": p.value
        for p in otel.points("execution.active")
    }
    workers = {
        p.attributes["cicd.worker.state"]: p.value for p in otel.points("execution.worker.count")
    }
    return {"execution.active": active, "execution.worker.count": workers}


def nonzero(values: dict[str, dict[str, int]]) -> dict[str, dict[str, int]]:
    return {name: {k: v for k, v in series.items() if v} for name, series in values.items()}


def child_pipeline(otel: Telemetry, ledger: SpanLedger, run: str | None = None) -> dict[str, Any]:
    """The child's own small pipeline and workers, through every public call that takes a
    lock of the package; returns what the child saw, from the start of its life to the end.
    ``run`` is the run's id (default: one of the child's own; the parent may have it in
    flight: that is the parent's execution, not the child's)."""
    live = live_telemetry()
    seen: dict[str, Any] = {
        "in_flight_at_start": live.tracker.in_flight_count(),
        "workers_at_start": known_workers(live),
        "gauges_at_start": nonzero(readings(otel)),
    }
    started, ended = ledger.started, ledger.ended  # the parent's, copied at the fork
    pipeline = f"forked-{os.getpid()}"  # a name not admitted yet: the name limiter's lock
    run = run or f"{pipeline}/run"
    # An id that cannot be hashed fails inside the tracker, which logs it (once) and goes on:
    # that takes the internal-error log's lock.
    api.report_status(["an", "unhashable", "id"], "running")
    api.report_status(run, "queued", level="pipeline", pipeline=pipeline)
    api.report_status(run, "running")
    api.report_status(f"{run}/extract", "running", name="extract", parent_id=run)
    api.report_worker_spawn(success=True)
    api.report_worker_state(f"{pipeline}/worker", "busy")
    with api.health_check():
        pass
    seen["gauges_midway"] = nonzero(readings(otel))
    api.report_status(f"{run}/extract", "succeeded")
    api.report_status(run, "succeeded")
    api.report_worker_state(f"{pipeline}/worker", None)
    live.tracker.end_in_flight(0)  # what the child's exit would do: nothing of the parent's
    seen.update(
        in_flight_at_end=live.tracker.in_flight_count(),
        gauges_at_end=nonzero(readings(otel)),
        spans_started=ledger.started - started,
        spans_ended=ledger.ended - ended,
        own_spans=sorted(
            f"{span.name}:{span.attributes.get('execution.status')}"
            for span in otel.spans()
            if span.attributes.get("cicd.pipeline.name") == pipeline
        ),
        pipeline=pipeline,
    )
    return seen


def check_child_pipeline(seen: dict[str, Any]) -> None:
    pipeline = seen["pipeline"]
    assert seen["gauges_at_start"] == {name: {} for name in GAUGES}, (
        f"the child exports the parent's counts: {seen['gauges_at_start']}"
    )
    assert seen["in_flight_at_start"] == 0, "the child started with the parent's executions"
    assert seen["workers_at_start"] == 0, "the child started with the parent's workers"
    assert seen["gauges_midway"] == {
        "execution.active": {"pipeline running": 1, "step running": 1},
        "execution.worker.count": {"busy": 1},
    }, "the child's own counts, and nothing else"
    assert seen["own_spans"] == sorted(["extract:succeeded", f"RUN {pipeline}:succeeded"])
    assert seen["spans_started"] == seen["spans_ended"] == 2, "the child's spans"
    assert seen["in_flight_at_end"] == 0
    assert seen["gauges_at_end"] == {name: {} for name in GAUGES}, "not back to 0 in the child"


def reinstrumenting_child_pipeline() -> dict[str, Any]:
    """The child uninstruments and instruments again, on providers of its own: this takes the
    locks of instrument creation (the observed counts' registry, the fork callbacks') and of
    removing patches (the active patcher's)."""
    ExecStatusInstrumentor().uninstrument()
    fresh = Telemetry()
    ExecStatusInstrumentor().instrument(
        tracer_provider=fresh.tracer_provider, meter_provider=fresh.meter_provider
    )
    return child_pipeline(fresh, ledger_for(fresh))


# -- (a) a lock of the package held by another thread at the fork ------------------------


def package_module(name: str) -> Any:
    """A module of the package, imported when a case needs it (not every version has it)."""
    return importlib.import_module(f"opentelemetry_instrumentation_execstatus.{name}")


HELD_LOCKS: dict[str, Callable[[Any], Any]] = {
    "worker recorder": lambda live: live.workers._lock,
    "worker counts": lambda live: live.workers._count._lock,
    "execution table": lambda live: live.tracker.executions._lock,
    "an execution": lambda live: (
        live.tracker.executions.get(api._adapter().execution_key("held-run")).lock
    ),
    "execution counts": lambda live: live.tracker._metrics._active._lock,
    "pipeline names": lambda live: live.tracker._metrics._pipeline_names._lock,
    "task names": lambda live: live.tracker._metrics._task_names._lock,
    "error log": lambda live: package_module("safety")._reported_lock,
    "counts registry": lambda live: package_module("counts")._BY_METER_LOCK,
    "fork callbacks": lambda live: package_module("forking")._callbacks_lock,
    "active patcher": lambda live: package_module("patching")._active_patcher._lock,
}
# Locks only instrument() and uninstrument() take.
REINSTRUMENTING = {"counts registry", "fork callbacks", "active patcher"}


@pytest.mark.parametrize("which", list(HELD_LOCKS))
def test_child_reports_while_a_parent_thread_held_a_lock(instrument, which):
    """A thread holds one of the package's locks while the main thread forks: the child's
    status, worker and health reports complete at once, with its own counts."""
    otel = instrument()
    ledger = ledger_for(otel)
    api.report_status("held-run", "running", level="pipeline", pipeline="held")
    api.report_worker_state("held-worker", "available")
    lock = HELD_LOCKS[which](live_telemetry())
    if which in REINSTRUMENTING:
        work = reinstrumenting_child_pipeline
    else:  # the child's run reuses the id the parent has in flight (and whose lock is held)
        work = functools.partial(child_pipeline, otel, ledger, run="held-run")
    with held_by_another_thread(lock, seconds=4 * CHILD_TIMEOUT):
        seen = in_child(work)
    check_child_pipeline(seen)
    api.report_status("held-run", "succeeded")
    api.report_worker_state("held-worker", None)
    assert otel.span("RUN held").attributes["execution.status"] == "succeeded"
    settled(otel, ledger)
    FIGURES.executions += 3  # the parent's run, the child's run and step


# -- (b) the child counts from 0, the parent keeps its own counts --------------------------


def parent_in_flight() -> None:
    """Three runs in flight (one queued, two running a step each) and three workers."""
    api.report_status("p-0", "queued", level="pipeline", pipeline="parent")
    for run in ("p-1", "p-2"):
        api.report_status(run, "queued", level="pipeline", pipeline="parent")
        api.report_status(run, "running")
        api.report_status(f"{run}/load", "running", name="load", parent_id=run)
    api.report_worker_state("w-busy", "busy")
    api.report_worker_state("w-idle", "idle")
    api.report_worker_state("w-gone", "draining")


PARENT_GAUGES = {
    "execution.active": {
        "pipeline queued": 1,
        "pipeline running": 2,
        "step running": 2,
    },
    "execution.worker.count": {"busy": 1, "available": 1, "offline": 1},
}


def test_child_counts_from_zero_and_the_parent_keeps_its_own(instrument):
    """The parent has executions and workers in flight at the fork: the child reads 0 in every
    series right after it (through the SDK's reader), counts only its own work, and ending
    in-flight work at its exit ends none of the parent's; the parent still reads its own
    values, and its executions end normally."""
    otel = instrument()
    ledger = ledger_for(otel)
    parent_in_flight()
    assert nonzero(readings(otel)) == PARENT_GAUGES

    seen = in_child(lambda: child_pipeline(otel, ledger))

    check_child_pipeline(seen)
    assert nonzero(readings(otel)) == PARENT_GAUGES, "the child changed the parent's counts"
    assert live_telemetry().tracker.in_flight_count() == 5
    api.report_status("p-0", "cancelled")
    for run in ("p-1", "p-2"):
        api.report_status(f"{run}/load", "succeeded")
        api.report_status(run, "succeeded")
    for worker in ("w-busy", "w-idle", "w-gone"):
        api.report_worker_state(worker, None)
    statuses = sorted((s.name, s.attributes["execution.status"]) for s in otel.spans())
    assert statuses == [
        ("RUN parent", "cancelled"),
        ("RUN parent", "succeeded"),
        ("RUN parent", "succeeded"),
        ("load", "succeeded"),
        ("load", "succeeded"),
    ]
    settled(otel, ledger)
    FIGURES.executions += 5 + 2
    FIGURES.spans(5, len(statuses))


# -- (c) forks while threads hammer the API ----------------------------------------------


class ForkSafeLedger(SpanLedger):
    """The span ledger with its lock re-created in a forked child.

    The test's own instruments must not be what hangs a child: a hammering thread may hold
    this lock at the fork.
    """

    def __init__(self) -> None:
        super().__init__()
        _reinit_lock_after_fork(self)


class ForkSafeSpanExporter(InMemorySpanExporter):
    """The SDK's in-memory exporter with its lock re-created in a forked child (the SDK's own
    batch processor re-creates its state at fork; this test exporter does not)."""

    def __init__(self) -> None:
        super().__init__()
        _reinit_lock_after_fork(self)


def _reinit_lock_after_fork(owner: Any) -> None:
    ref = weakref.ref(owner)

    def reinit() -> None:
        alive = ref()
        if alive is not None:
            alive._lock = threading.Lock()

    os.register_at_fork(after_in_child=reinit)


class ForkSafeTelemetry(Telemetry):
    """The in-memory SDK, minus what of the SDK itself is not fork-safe under threads.

    The SDK does not re-create a metric aggregation's lock at fork: a child forked while a
    hammering thread was recording a histogram sample would hang in the SDK when it records
    under the same attributes or collects (opentelemetry-python #4345). The histogram is
    therefore dropped here; this test is about the package's locks, and the counts it keeps.
    """

    def __init__(self) -> None:  # not Telemetry's: its exporter and views are not these
        self.exporter = ForkSafeSpanExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(
            metric_readers=[self.reader],
            views=[
                View(
                    instrument_name="execution.status_transition.duration",
                    aggregation=DropAggregation(),
                ),
            ],
        )


HAMMERS = 3
FORKS = 20


@pytest.fixture
def fork_safe_instrument() -> Iterator[ForkSafeTelemetry]:
    otel = ForkSafeTelemetry()
    instrumentor = ExecStatusInstrumentor()
    instrumentor.instrument(
        tracer_provider=otel.tracer_provider, meter_provider=otel.meter_provider
    )
    yield otel
    instrumentor.uninstrument()


def test_children_forked_while_threads_hammer_the_api_settle(fork_safe_instrument):
    """Three threads run pipelines, steps and workers non-stop while the main thread forks 20
    times: every child finishes its own pipeline at once and reads its own counts only, and
    the parent settles once the threads stop."""
    otel = fork_safe_instrument
    ledger = ForkSafeLedger()
    otel.tracer_provider.add_span_processor(ledger)
    stop = threading.Event()
    loops = [0] * HAMMERS
    errors: list[BaseException] = []

    def hammer(thread: int) -> None:
        chooser = random.Random(thread)
        try:
            while not stop.is_set():
                run = f"h{thread}-{loops[thread]}"
                api.report_status(run, "queued", level="pipeline", pipeline=f"hammer-{thread}")
                api.report_status(run, "running")
                api.report_worker_state(f"hw-{thread}", chooser.choice(["busy", "idle"]))
                for step in range(3):
                    api.report_status(f"{run}/{step}", "running", name="s", parent_id=run)
                    api.report_status(f"{run}/{step}", chooser.choice(["succeeded", "failed"]))
                api.report_status(run, "succeeded")
                loops[thread] += 1
            api.report_worker_state(f"hw-{thread}", None)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=hammer, args=(t,), daemon=True) for t in range(HAMMERS)]
    for thread in threads:
        thread.start()
    try:
        deadline = time.monotonic() + CHILD_TIMEOUT
        while min(loops) < 2 and time.monotonic() < deadline:  # every label set seen once
            time.sleep(0.001)
        assert min(loops) >= 2, "the hammering threads did not get going"
        in_flight_at_forks = 0
        for _ in range(FORKS):
            in_flight_at_forks += live_telemetry().tracker.in_flight_count()
            check_child_pipeline(in_child(lambda: child_pipeline(otel, ledger)))
        # The threads really were in the middle of their work when the forks came.
        assert in_flight_at_forks > 0, "no execution of the hammering threads was in flight"
    finally:
        stop.set()
        for thread in threads:
            thread.join(CHILD_TIMEOUT)
    assert not any(thread.is_alive() for thread in threads), "a hammering thread hung"
    assert not errors, errors
    settled(otel, ledger)
    FIGURES.executions += sum(loops) * 4 + FORKS * 2
