"""asyncio cancellation: thousands of tasks reporting executions, a third of them cancelled.

An orchestrator on asyncio reports ``cancelled`` from its task's ``except CancelledError``
and re-raises; some tasks die without reporting anything. Those stay in flight, counted in
``execution.active``, until ``uninstrument()`` (or the interpreter's exit) ends them as
``cancelled``, so that every span that was started is ended and exported. Health probes and
drains inside cancelled tasks let the ``CancelledError`` through unchanged (the very object):
a cancelled probe gave no verdict and is not counted, a cancelled drain is a failure.
"""

from __future__ import annotations

import asyncio
import traceback
from collections import Counter
from typing import Any, Callable

import pytest
from checks import encodes_as_otlp, gauge_values, ledger_for, settled
from figures import FIGURES

from opentelemetry_instrumentation_execstatus import ExecStatusInstrumentor, api, telemetry

TASKS = 3000
TIMEOUT = 30.0  # seconds for any phase on the event loop: a lost wake-up fails, never hangs


def cancelled(index: int) -> bool:
    return index % 3 == 0


def reports_its_cancel(index: int) -> bool:
    """Half of the cancelled tasks report it (as an orchestrator does); the rest report
    nothing at all and leave their execution in flight."""
    return index % 6 == 0


def fails(index: int) -> bool:
    return index % 10 == 1


def expected_status(index: int) -> str:
    if cancelled(index):
        return "cancelled"  # reported by the task, or given by uninstrument()
    return "failed" if fails(index) else "succeeded"


class Midway:
    """Set once ``count`` tasks have reached the middle of their work: cancelling then hits
    every cancelled task while it awaits, whatever the scheduling."""

    def __init__(self, count: int) -> None:
        self.remaining = count
        self.event = asyncio.Event()

    def arrive(self) -> None:
        self.remaining -= 1
        if self.remaining == 0:
            self.event.set()


async def never() -> None:
    await asyncio.Event().wait()  # only a cancellation ends this


async def execution(index: int, midway: Midway) -> None:
    """One pipeline run with one step, reported from its own task."""
    run, step = f"a-{index}", f"a-{index}/work"
    api.report_status(run, "queued", level="pipeline", pipeline="async")
    await asyncio.sleep(0)
    api.report_status(run, "running")
    api.report_status(step, "running", name="work", parent_id=run)
    try:
        await asyncio.sleep(0)
        midway.arrive()
        if cancelled(index):
            await never()
        await asyncio.sleep(0.001 * (index % 3))
        final = "failed" if fails(index) else "succeeded"
        api.report_status(step, final, error="ValueError" if fails(index) else None)
        api.report_status(run, final)
    except asyncio.CancelledError:
        if reports_its_cancel(index):
            api.report_status(step, "cancelled")
            api.report_status(run, "cancelled")
        raise


def run_on_loop(body: Callable[[], Any]) -> Any:
    return asyncio.run(asyncio.wait_for(body(), TIMEOUT))


async def run_and_cancel(count: int, task: Callable[[int, Midway], Any]) -> list[Any]:
    """Start ``count`` tasks, cancel the chosen ones once every task is midway, and return
    each task's outcome (None, or the exception it ended with)."""
    midway = Midway(count)
    tasks = [asyncio.ensure_future(task(index, midway)) for index in range(count)]
    await midway.event.wait()
    for index, each in enumerate(tasks):
        if cancelled(index):
            each.cancel()
    return await asyncio.gather(*tasks, return_exceptions=True)


def spans_settled_after_uninstrument(otel: Any, ledger: Any) -> None:
    """``checks.settled`` without a live instrumentation: every span ended, every count 0."""
    assert telemetry.current() is None
    assert ledger.started == ledger.ended, f"{ledger.started - ledger.ended} spans never ended"
    for name, values in gauge_values(otel).items():
        assert set(values.values()) <= {0}, f"{name} not back to 0: {values}"
    encodes_as_otlp(otel)


def test_cancelled_tasks_end_their_executions(instrument):
    """3,000 tasks, a third cancelled while awaiting: the cancelled ones that report it end
    ``cancelled``, the silent ones stay in flight (and counted) until ``uninstrument()`` ends
    them as ``cancelled``; then every started span has ended and every count is 0."""
    otel = instrument()
    ledger = ledger_for(otel)

    outcomes = run_on_loop(lambda: run_and_cancel(TASKS, execution))

    kinds = Counter(type(outcome).__name__ for outcome in outcomes)
    assert kinds == {"NoneType": TASKS - TASKS // 3, "CancelledError": TASKS // 3}, kinds
    silent = [i for i in range(TASKS) if cancelled(i) and not reports_its_cancel(i)]
    live = telemetry.current()
    assert live is not None
    assert live.tracker.in_flight_count() == 2 * len(silent), "only the silent ones in flight"
    active = otel.sums_by("execution.active", "execution.level", "execution.status")
    assert {key: value for key, value in active.items() if value} == {
        ("pipeline", "running"): len(silent),
        ("step", "running"): len(silent),
    }

    ExecStatusInstrumentor().uninstrument()  # the fixture's own uninstrument is then a no-op

    spans_settled_after_uninstrument(otel, ledger)
    spans = otel.spans()
    assert len(spans) == 2 * TASKS, "a span per run and per step"
    status_of = {
        span.attributes.get("cicd.pipeline.run.id")
        or span.attributes["cicd.pipeline.task.run.id"]: (span.attributes["execution.status"])
        for span in spans
    }
    for index in range(TASKS):
        expected = expected_status(index)
        assert status_of[f"a-{index}"] == status_of[f"a-{index}/work"] == expected, index
    assert otel.transition_counts(execution_level="pipeline")[("running", "cancelled")] == (
        TASKS // 3
    ), "the silent ones' time running is recorded when uninstrument() ends them"
    FIGURES.executions += 2 * TASKS
    FIGURES.spans(2 * TASKS, len(spans))


# -- health probes and drains in cancelled tasks -----------------------------------------

PROBES = 400


class Witness:
    """What a task saw of its CancelledError: the one raised inside the ``with`` block and the
    one that came out of it."""

    def __init__(self) -> None:
        self.inside: dict[int, BaseException] = {}
        self.outside: dict[int, BaseException] = {}

    def check(self, indexes: list[int]) -> None:
        assert sorted(self.outside) == indexes, "a cancelled task's CancelledError went missing"
        for index in indexes:
            inside, outside = self.inside[index], self.outside[index]
            assert outside is inside, f"task {index}: CancelledError replaced on its way out"
            frames = [frame.name for frame in traceback.extract_tb(outside.__traceback__)]
            assert "never" in frames, f"task {index}: traceback lost its origin: {frames}"


def probe_kind(index: int) -> str:
    """Cancelled mid-probe, or else it passes, raises, or finds the worker unhealthy."""
    if cancelled(index):
        return "cancelled"
    return ("pass", "raises", "unhealthy")[(index // 3) % 3]


async def probe(index: int, midway: Midway, witness: Witness) -> None:
    kind = probe_kind(index)
    try:
        with api.health_check() as check:
            try:
                await asyncio.sleep(0)
                midway.arrive()
                if kind == "cancelled":
                    await never()
                if kind == "raises":
                    raise ConnectionError("worker unreachable")
                if kind == "unhealthy":
                    check.failed()
            except asyncio.CancelledError as exc:
                witness.inside[index] = exc
                raise
    except asyncio.CancelledError as exc:
        witness.outside[index] = exc
        raise
    except ConnectionError:
        pass


async def drain(index: int, midway: Midway, witness: Witness) -> None:
    try:
        with api.worker_drain():
            try:
                await asyncio.sleep(0)
                midway.arrive()
                if cancelled(index):
                    await never()
                if index % 3 == 1:
                    raise RuntimeError("drain failed")
            except asyncio.CancelledError as exc:
                witness.inside[index] = exc
                raise
    except asyncio.CancelledError as exc:
        witness.outside[index] = exc
        raise
    except RuntimeError:
        pass


def test_cancelled_health_probes_are_not_counted(instrument):
    """400 probes, a third cancelled mid-probe: CancelledError comes out of ``health_check()``
    as the same object with its traceback, the cancelled probes count nothing, and the others
    count exactly pass / fail."""
    otel = instrument()
    ledger = ledger_for(otel)
    witness = Witness()

    run_on_loop(lambda: run_and_cancel(PROBES, lambda i, m: probe(i, m, witness)))

    witness.check([i for i in range(PROBES) if cancelled(i)])
    kinds = Counter(probe_kind(index) for index in range(PROBES))
    checks = otel.sums_by("execution.worker.health_checks", "execution.worker.health.result")
    assert checks == {"pass": kinds["pass"], "fail": kinds["raises"] + kinds["unhealthy"]}
    settled(otel, ledger)


def test_cancelled_drains_count_as_failures(instrument):
    """400 drains, a third cancelled mid-drain: CancelledError comes out of ``worker_drain()``
    unchanged; a cancelled drain is a failure with no duration, like one that raised."""
    otel = instrument()
    ledger = ledger_for(otel)
    witness = Witness()

    run_on_loop(lambda: run_and_cancel(PROBES, lambda i, m: drain(i, m, witness)))

    witness.check([i for i in range(PROBES) if cancelled(i)])
    completed = sum(not cancelled(i) and i % 3 != 1 for i in range(PROBES))
    drains = otel.sums_by("execution.worker.drains", "execution.worker.outcome")
    assert drains == {"success": completed, "failure": PROBES - completed}
    (duration,) = otel.points("execution.worker.drain.duration")
    assert duration.count == completed, "a duration for a drain that did not complete"
    settled(otel, ledger)


def test_a_health_probe_with_its_timeout_inside_counts_a_timeout_as_failed(instrument):
    """A probe's deadline belongs inside its block: there a worker that never answers raises
    ``TimeoutError`` and counts as ``fail``. A timeout outside the block (``wait_for(probe())``)
    reaches the block as a cancellation, which cannot be told from the caller's own, so it
    is not counted (README, "Worker lifecycles")."""
    otel = instrument()

    async def probe_a_hung_worker() -> None:
        with api.health_check():
            await asyncio.wait_for(never(), 0.01)

    async def outside() -> None:
        with api.health_check():
            await never()

    async def body() -> None:
        with pytest.raises(asyncio.TimeoutError):
            await probe_a_hung_worker()
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(outside(), 0.01)

    run_on_loop(body)
    checks = otel.sums_by("execution.worker.health_checks", "execution.worker.health.result")
    assert checks == {"fail": 1}
