"""Celery 5: what the instrumentation adds to each task, run eagerly and through a worker.

The adapter patches nothing: it connects a receiver to each of 16 ``celery.signals``
(``adapters.celery._RECEIVERS``). The task returns a constant, so what is timed is Celery's
own per-task machinery plus whatever telemetry rides on it. The peer is
opentelemetry-instrumentation-celery ("contrib"), on a second real SDK: a ``run/<task>`` span
per task and one ``flower.task.runtime.seconds`` sample, and, where the task is published, an
``apply_async/<task>`` span; next to it, ours makes no span of its own and puts its status
events in contrib's ``run/<task>`` span.

Three workloads: two in this process, each one interleaved measurement (``harness.measure``)
of its cases, and one through a real broker and a real prefork worker, in processes of their
own (``bench_celery_worker``: its figures, what each case emits there and how it is checked):

- **eager** (``task_always_eager``: ``delay()`` runs the task in the caller's thread, with
  only the running side's signals; unit: a task, its ``EagerResult`` read): bare; ours with a
  real SDK (``Sdk``) and its equal floor (``EqualFloor``: the SDK calls one task made, made
  again by hand); ours with no SDK (no provider passed, none set globally: the API's no-op
  path) against what stands for a wrapt pass-through, a no-op receiver on each signal the
  adapter connects to, connected as it connects its own (``NoOpReceivers``: as many
  receivers on the same signals, checked); contrib alone and its own equal floor, so that ours
  is held to what contrib adds plus the SDK cost of what we emit beyond it
  (``harness.added_against_peer``); and ours with contrib (contrib turned on first), what a
  user with both gets, against contrib alone, with the equal floor of the two together: what
  ours adds to contrib's task against the SDK cost of what it adds to contrib's span.
- **through a worker**, in this process: Celery's own test worker
  (``celery.contrib.testing.worker.start_worker``, the solo pool on a thread) consuming from
  the in-memory transport (polled every 10 ms when idle), results in the in-memory cache
  backend. An iteration publishes ``BATCH`` tasks with ``delay()``, then reads each result
  back; the unit is a task. The worker stores a task's result before it sends
  ``task_success`` and ``task_postrun``, so an iteration also waits for its last task's
  ``task_postrun`` receivers to have run (a receiver connected after the telemetry's, in
  every case alike): no block's telemetry spills into the next. Cases: bare, ours with a real
  SDK, its equal floor, contrib alone. One worker runs across every block (started before the
  measurement and the floor's record, stopped after the checks): its stop waits out the
  consumer's drain timeouts, about 4 s, and the telemetry of both instrumentations is
  connected to signals, turned on and off around each block as in the eager workload. Contrib
  has no equal floor here: its calls are made in two threads (the ``apply_async`` span in
  the caller's, the ``run`` span in the worker's), so the order of one batch's calls is not
  the next's and no record of it can be replayed. The worker's polling makes this
  workload's figures noisy: a task costs about 0.7 ms bare, most of it waiting.

Validity: every span and histogram sample each case should have made is checked against the
tasks it ran (none dropped, none missing); what each emits per task (its spans, their status
events, its samples) is read back from an in-memory SDK and checked against what is stated
below (``EMITTED``); each floor must make, counted, the SDK calls it was recorded from; the
no-SDK case must really be instrumented; the no-op receivers must be as many, on the same
signals, as the adapter's; a bare run after every instrumented block, eager and through the
worker, must leave every SDK untouched. Otherwise the script exits non-zero.
"""

from __future__ import annotations

import statistics
import threading
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from functools import partial
from typing import Any, Callable, NamedTuple

from bench_celery_worker import (
    BARE,
    BOTH,
    CONTRIB,
    CONTRIB_RUNTIME,
    OURS,
    SUITE,
    TASK,
    TRANSITIONS,
    through_a_prefork_worker,
)
from celery import Celery, signals
from celery.contrib.testing.worker import start_worker
from harness import (
    ADDED,
    INSTRUMENTOR,
    Case,
    EqualFloor,
    NoOpHooks,
    Results,
    Row,
    Samples,
    Sdk,
    added_against_floor,
    added_against_peer,
    added_cost_ratio,
    arguments,
    finish,
    instrumented_without_sdk,
    measure,
    ratio_rows,
    require,
    scale,
    versions,
)
from opentelemetry.instrumentation.celery import CeleryInstrumentor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import HistogramDataPoint, InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from opentelemetry_instrumentation_execstatus.adapters.celery import _RECEIVERS

EAGER_TASKS_PER_BLOCK = 400  # below the batch span processor's queue (2048): none dropped
EAGER_ROUNDS = 40
BATCH = 50  # tasks published, then read back, per iteration through the worker
BATCHES_PER_BLOCK = 4  # 400 spans a block at most (contrib's two per task)
WORKER_ROUNDS = 40
TIMEOUT = 30.0
RESULT_POLL = 0.001  # seconds between reads of a result not stored yet

OURS_NO_SDK = "execstatus, no SDK"
NO_OP = "no-op receivers on the same signals"

EAGER, WORKER = "eager", "worker"

# What each emits per task: its spans (name, with the statuses of its status-change events),
# and its histogram samples by metric.
Emitted = tuple[dict[str, float], dict[str, float]]
EMITTED: dict[tuple[str, str], Emitted] = {
    (EAGER, OURS): ({f"{TASK} (running, succeeded)": 1}, {TRANSITIONS: 1}),
    (EAGER, CONTRIB): ({f"run/{TASK}": 1}, {CONTRIB_RUNTIME: 1}),
    (EAGER, BOTH): ({f"run/{TASK} (running, succeeded)": 1}, {TRANSITIONS: 1, CONTRIB_RUNTIME: 1}),
    (WORKER, OURS): ({f"{TASK} (queued, pending, running, succeeded)": 1}, {TRANSITIONS: 3}),
    (WORKER, CONTRIB): ({f"apply_async/{TASK}": 1, f"run/{TASK}": 1}, {CONTRIB_RUNTIME: 1}),
}

CONTRIB_INSTRUMENTOR = CeleryInstrumentor()


# -- the telemetry, on and off ------------------------------------------------------------------


class Telemetry(NamedTuple):
    """What turns an instrumentation on with given providers (``instrument()`` keywords), and
    what turns it off."""

    on: Callable[[dict[str, Any]], object]
    off: Callable[[], object]


def _both_on(providers: dict[str, Any]) -> None:
    CONTRIB_INSTRUMENTOR.instrument(**providers)
    INSTRUMENTOR.instrument(**providers)


def _both_off() -> None:
    INSTRUMENTOR.uninstrument()
    CONTRIB_INSTRUMENTOR.uninstrument()


TELEMETRY = {
    OURS: Telemetry(
        lambda providers: INSTRUMENTOR.instrument(**providers), INSTRUMENTOR.uninstrument
    ),
    CONTRIB: Telemetry(
        lambda providers: CONTRIB_INSTRUMENTOR.instrument(**providers),
        CONTRIB_INSTRUMENTOR.uninstrument,
    ),
    BOTH: Telemetry(_both_on, _both_off),
}


# -- the workloads ------------------------------------------------------------------------------


def _app(name: str, **conf: Any) -> Celery:
    """An app with the benchmark's one task, returning a constant."""
    app = Celery(name, set_as_current=False)
    app.conf.update(conf)

    @app.task(shared=False, name=TASK)
    def constant() -> int:
        return 1

    return app


EAGER_APP = _app("bench_eager", task_always_eager=True)
WORKER_APP = _app(
    "bench_worker",
    broker_url="memory://",
    result_backend="cache+memory://",
    broker_transport_options={"polling_interval": 0.01},
)


class EagerTasks:
    """``delay()`` of the task, run eagerly, its result read, ``iterations`` times; counted,
    so that a case's spans can be checked against the tasks it ran."""

    units = 1

    def __init__(self) -> None:
        self.done = 0

    def __call__(self, iterations: int) -> None:
        delay = EAGER_APP.tasks[TASK].delay
        for _ in range(iterations):
            delay().get()
        self.done += iterations


class _Finished:
    """A ``task_postrun`` receiver noting the tasks whose postrun receivers ran before it."""

    def __init__(self) -> None:
        self._done: set[str] = set()
        self._condition = threading.Condition()

    def __call__(self, task_id: str | None = None, **_: Any) -> None:
        with self._condition:
            self._done.add(str(task_id))
            self._condition.notify_all()

    def wait_for(self, task_id: str) -> None:
        """Until ``task_id`` and, the worker running tasks in order, all before it are done."""
        with self._condition:
            over = self._condition.wait_for(lambda: task_id in self._done, TIMEOUT)
            self._done.clear()
        require(over, f"the worker did not finish task {task_id}")


class WorkerBatches:
    """``BATCH`` tasks published with ``delay()`` to the running worker, then each result
    read back, ``iterations`` times; each batch over once its last task's ``task_postrun``
    receivers have run. Counted, by task."""

    units = BATCH

    def __init__(self) -> None:
        self.done = 0

    def __call__(self, iterations: int) -> None:
        delay = WORKER_APP.tasks[TASK].delay
        finished = _Finished()  # connected after the telemetry's receivers: it runs last
        signals.task_postrun.connect(finished, weak=False)
        try:
            for _ in range(iterations):
                results = [delay() for _ in range(BATCH)]
                for result in results:
                    result.get(timeout=TIMEOUT, interval=RESULT_POLL)
                finished.wait_for(results[-1].id)
        finally:
            signals.task_postrun.disconnect(finished)
        self.done += iterations * BATCH


@contextmanager
def _worker() -> Iterator[None]:
    with start_worker(WORKER_APP, pool="solo", perform_ping_check=False, shutdown_timeout=TIMEOUT):
        yield


# -- the pass-through ---------------------------------------------------------------------------


class NoOpReceivers(NoOpHooks):
    """A no-op receiver on each signal the adapter connects to, connected as it connects its
    own (strongly)."""

    def register(self, hook: Callable[..., Any]) -> list[Callable[[], None]]:
        undo = []
        for name, _method in _RECEIVERS:
            signal = getattr(signals, name)
            signal.connect(hook, weak=False)
            undo.append(partial(signal.disconnect, hook))
        return undo

    def counts(self) -> list[int]:
        return [len(getattr(signals, name).receivers) for name, _method in _RECEIVERS]


def _same_receivers(no_op: NoOpReceivers) -> str:
    """The no-op receivers are the adapter's, one on each of its signals; returns how many
    receiver calls they get per eager task."""
    signals_hooked = no_op.require_same_as(_instrumented, "the adapter")
    calls = no_op.calls_per_unit(EagerTasks(), EagerTasks.units)
    return (
        f"one on each of the adapter's {signals_hooked} signals: {calls:g} receiver calls per task"
    )


@contextmanager
def _instrumented() -> Iterator[None]:
    INSTRUMENTOR.instrument()
    try:
        yield
    finally:
        INSTRUMENTOR.uninstrument()


# -- the cases ----------------------------------------------------------------------------------


def _switched(name: str, tasks: EagerTasks | WorkerBatches, sdk: Sdk | None, on: str) -> Case:
    """``tasks`` with the telemetry ``on`` around each block, on ``sdk`` (None: no provider,
    no SDK), its spans flushed after the block."""
    telemetry = TELEMETRY[on]
    providers = sdk.providers if sdk is not None else {}

    def teardown() -> None:
        telemetry.off()
        if sdk is not None:
            sdk.tracer_provider.force_flush()

    return Case(name, tasks, tasks.units, setup=lambda: telemetry.on(providers), teardown=teardown)


def _floor(name: str, tasks: EagerTasks | WorkerBatches) -> tuple[EqualFloor, Sdk]:
    """The equal floor of ``name``'s telemetry, recorded from ``tasks`` on an SDK of its own."""
    telemetry, sdk = TELEMETRY[name], Sdk.create()
    turned_on = (lambda recorder: telemetry.on(recorder.providers), telemetry.off)
    floor = EqualFloor.record(name, sdk, tasks, units=tasks.units, peer=turned_on)
    return floor, sdk


def _floor_case(floor: EqualFloor, sdk: Sdk) -> Case:
    """The floor's replay, its spans flushed after each block as the instrumented cases' are."""
    return replace(floor.case(), teardown=sdk.tracer_provider.force_flush)


class Subject(NamedTuple):
    """A case that emits: its tasks, counted, and the SDK it emits to."""

    tasks: EagerTasks | WorkerBatches
    sdk: Sdk


# -- what each emits ----------------------------------------------------------------------------


def _histogram_samples(reader: InMemoryMetricReader) -> dict[str, int]:
    """Histogram samples by metric, of the metrics a task's telemetry records."""
    data = reader.get_metrics_data()
    found: Counter[str] = Counter()
    for resource in data.resource_metrics if data else ():
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                if metric.name in (TRANSITIONS, CONTRIB_RUNTIME):
                    found[metric.name] += sum(
                        point.count
                        for point in metric.data.data_points
                        if isinstance(point, HistogramDataPoint)
                    )
    return dict(found)


def _described(span: Any) -> str:
    statuses = [
        event.attributes["execution.status.to"]
        for event in span.events
        if "execution.status.to" in event.attributes
    ]
    return f"{span.name} ({', '.join(statuses)})" if statuses else span.name


def _per_task(counts: dict[str, int], tasks: int) -> dict[str, float]:
    return {name: count / tasks for name, count in counts.items()}


def _observed(workload: str, name: str, tasks: EagerTasks | WorkerBatches) -> str:
    """What ``name`` emits per task, read back from an in-memory SDK (one iteration after a
    warm-up), checked against ``EMITTED``."""
    exporter, reader = InMemorySpanExporter(), InMemoryMetricReader()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    meter_provider = MeterProvider(metric_readers=[reader])
    telemetry = TELEMETRY[name]
    telemetry.on({"tracer_provider": tracer_provider, "meter_provider": meter_provider})
    try:
        tasks(1)
        exporter.clear()
        before = Counter(_histogram_samples(reader))
        tasks(1)
    finally:
        telemetry.off()
    spans = Counter(_described(span) for span in exporter.get_finished_spans())
    samples = Counter(_histogram_samples(reader))
    samples.subtract(before)
    found = (_per_task(spans, tasks.units), _per_task(+samples, tasks.units))
    require(
        found == EMITTED[workload, name],
        f"{workload}: {name} emitted per task {found}, expected {EMITTED[workload, name]}",
    )
    listed = ", ".join(f"{count:g} {span}" for span, count in found[0].items())
    recorded = ", ".join(f"{count:g} {metric}" for metric, count in found[1].items())
    return f"per task: spans: {listed}; histogram samples: {recorded}"


def _require_emitted(workload: str, name: str, subject: Subject) -> None:
    """Every span and sample the case's tasks should have made reached its SDK: none dropped,
    none missing."""
    spans, samples = EMITTED[workload, name]
    tasks = subject.tasks.done
    require(tasks > 0, f"{workload}: {name} ran no task")
    exported, made = subject.sdk.spans_exported(), tasks * sum(spans.values())
    require(exported == made, f"{workload}: {name}: {exported} spans exported for {made} made")
    recorded = _histogram_samples(subject.sdk.reader)
    expected = {metric: tasks * count for metric, count in samples.items()}
    require(recorded == expected, f"{workload}: {name}: samples {recorded}, expected {expected}")


def _bare_emits_nothing(tasks: EagerTasks | WorkerBatches, sdks: Sequence[Sdk]) -> None:
    """A bare run, after every instrumented block, reaches none of the SDKs."""
    before = [(sdk.spans_exported(), _histogram_samples(sdk.reader)) for sdk in sdks]
    tasks(2)
    after = [(sdk.spans_exported(), _histogram_samples(sdk.reader)) for sdk in sdks]
    require(before == after, f"a bare run emitted telemetry: {before} -> {after}")


def _receivers_connected() -> bool:
    """One eager task, then whether the adapter's receivers were connected while it ran."""
    EagerTasks()(1)
    return all(count > 0 for count in NoOpReceivers().counts())


# -- the rows -----------------------------------------------------------------------------------


def _added_against(
    samples: Samples, benchmark: str, subject: str, baseline: str, *, bare: str, goal: float
) -> Row:
    """What ``subject`` adds per task over ``bare`` against what ``baseline`` adds, each the
    median of its differences round by round: a few microseconds on a couple of hundred,
    which a difference of medians would leave to the noise of the bare time."""

    def added(case: str) -> float:
        return statistics.median(s - b for s, b in zip(samples[case], samples[bare]))

    subject_us, baseline_us = added(subject), added(baseline)
    return Row(
        suite=SUITE,
        benchmark=benchmark,
        subject=subject,
        baseline=baseline,
        unit=f"task{ADDED}",
        ratio=subject_us / baseline_us if baseline_us > 0 else float("inf"),
        subject_us=subject_us,
        baseline_us=baseline_us,
        goal=goal,
    )


def _added_to_peer(samples: Samples, benchmark: str, both: EqualFloor, peer: EqualFloor) -> Row:
    """What ours adds per task next to contrib (both on, against contrib alone) against the
    SDK cost of what it adds to contrib's telemetry (the floor of both, less contrib's), per
    round: the equal floor of ours where contrib makes the span."""
    added = [b - p for b, p in zip(samples[both.subject], samples[peer.subject])]
    floor = [b - p for b, p in zip(samples[both.name], samples[peer.name])]
    return Row(
        suite=SUITE,
        benchmark=benchmark,
        subject=both.subject,
        baseline=f"{peer.subject} + SDK cost of what we add to it",
        unit=f"task{ADDED}",
        ratio=statistics.median(a / f for a, f in zip(added, floor)),
        subject_us=statistics.median(added),
        baseline_us=statistics.median(floor),
        subject_calls=both.calls_per_unit,
        baseline_calls=peer.calls_per_unit,
    )


def _peer_against_its_floor(samples: Samples, benchmark: str, floor: EqualFloor) -> Row:
    """What contrib adds per task against its own SDK calls (no goal: it is not ours)."""
    row = added_against_floor(samples, SUITE, benchmark, CONTRIB, floor, bare=BARE, unit="task")
    row.goal = None
    return row


class EagerFloors(NamedTuple):
    ours: EqualFloor
    contrib: EqualFloor
    both: EqualFloor


def _eager_rows(samples: Samples, floors: EagerFloors) -> list[Row]:
    per_task = ratio_rows(
        samples,
        SUITE,
        "eager, per task: instrumented vs bare",
        BARE,
        [OURS, OURS_NO_SDK, NO_OP, CONTRIB, BOTH],
        unit="task",
        note="task_always_eager, delay() of a task returning a constant, its result read",
    )
    return [
        *per_task,
        added_against_floor(
            samples,
            SUITE,
            "eager, per task: added per task vs the same SDK calls",
            OURS,
            floors.ours,
            bare=BARE,
            unit="task",
        ),
        _added_against(
            samples,
            "eager, per task: no SDK, added per task vs no-op receivers",
            OURS_NO_SDK,
            NO_OP,
            bare=BARE,
            goal=2.0,
        ),
        _peer_against_its_floor(
            samples, "eager, peers: contrib, added per task vs the same SDK calls", floors.contrib
        ),
        added_cost_ratio(per_task, OURS, CONTRIB, "eager, peers: added per task vs contrib's"),
        added_against_peer(
            samples,
            SUITE,
            "eager, peers: added per task vs contrib's and the SDK calls we make beyond it",
            ours=floors.ours,
            peer=floors.contrib,
            bare=BARE,
            unit="task",
        ),
        *ratio_rows(
            samples,
            SUITE,
            "eager, with contrib: both on vs contrib alone",
            CONTRIB,
            [BOTH],
            unit="task",
            note="contrib's run span, our status events and samples in it",
        ),
        _added_to_peer(
            samples,
            "eager, with contrib: added per task to contrib vs the SDK calls we add to it",
            floors.both,
            floors.contrib,
        ),
    ]


def _worker_rows(samples: Samples, floor: EqualFloor) -> list[Row]:
    per_task = ratio_rows(
        samples,
        SUITE,
        "worker, per task: instrumented vs bare",
        BARE,
        [OURS, CONTRIB],
        unit="task",
        note=f"batches of {BATCH} delay() to a solo worker on a thread, memory transport",
    )
    return [
        *per_task,
        added_against_floor(
            samples,
            SUITE,
            "worker, per task: added per task vs the same SDK calls",
            OURS,
            floor,
            bare=BARE,
            unit="task",
        ),
        added_cost_ratio(per_task, OURS, CONTRIB, "worker, peers: added per task vs contrib's"),
    ]


# -- the measurements ---------------------------------------------------------------------------


def eager(quick: bool) -> tuple[list[Row], dict[str, str]]:
    """Every eager case in one interleaved measurement, then the checks."""
    subjects = {name: Subject(EagerTasks(), Sdk.create()) for name in (OURS, CONTRIB, BOTH)}
    floors = EagerFloors(*(_floor(name, EagerTasks()) for name in (OURS, CONTRIB, BOTH)))
    no_op = NoOpReceivers()
    cases = [
        Case(BARE, EagerTasks()),
        *(_switched(name, subject.tasks, subject.sdk, name) for name, subject in subjects.items()),
        _switched(OURS_NO_SDK, EagerTasks(), None, OURS),
        Case(NO_OP, EagerTasks(), setup=no_op.setup, teardown=no_op.teardown),
        *(_floor_case(floor, sdk) for floor, sdk in floors),
    ]
    iterations, rounds = scale(quick, EAGER_TASKS_PER_BLOCK, EAGER_ROUNDS)
    samples = measure(cases, iterations=iterations, rounds=rounds)

    for name, subject in subjects.items():
        _require_emitted(EAGER, name, subject)
    require(instrumented_without_sdk(_receivers_connected), f"{OURS_NO_SDK} was not instrumented")
    sdks = [subject.sdk for subject in subjects.values()] + [sdk for _floor, sdk in floors]
    _bare_emits_nothing(EagerTasks(), sdks)
    ours, contrib, both = (floor for floor, _sdk in floors)
    facts = {
        f"{EAGER}: equal floor, ours": ours.describe(),
        f"{EAGER}: equal floor, contrib's": contrib.describe(),
        f"{EAGER}: equal floor, both": both.describe(),
        f"{EAGER}: {NO_OP}": _same_receivers(no_op),
        **{
            f"{EAGER}: {name} emitted": _observed(EAGER, name, EagerTasks())
            for name in (OURS, CONTRIB, BOTH)
        },
    }
    for sdk in sdks:
        sdk.shutdown()
    return _eager_rows(samples, EagerFloors(ours, contrib, both)), facts


def through_a_worker(quick: bool) -> tuple[list[Row], dict[str, str]]:
    """Every case through the one worker in one interleaved measurement, then the checks."""
    subjects = {name: Subject(WorkerBatches(), Sdk.create()) for name in (OURS, CONTRIB)}
    with _worker():
        floor, floor_sdk = _floor(OURS, WorkerBatches())
        cases = [
            Case(BARE, WorkerBatches(), BATCH),
            *(
                _switched(name, subject.tasks, subject.sdk, name)
                for name, subject in subjects.items()
            ),
            _floor_case(floor, floor_sdk),
        ]
        iterations, rounds = scale(quick, BATCHES_PER_BLOCK, WORKER_ROUNDS)
        samples = measure(cases, iterations=iterations, rounds=rounds)

        for name, subject in subjects.items():
            _require_emitted(WORKER, name, subject)
        sdks = [subject.sdk for subject in subjects.values()] + [floor_sdk]
        _bare_emits_nothing(WorkerBatches(), sdks)
        facts = {
            f"{WORKER}: equal floor, ours": floor.describe(),
            **{
                f"{WORKER}: {name} emitted": _observed(WORKER, name, WorkerBatches())
                for name in (OURS, CONTRIB)
            },
        }
    for sdk in sdks:
        sdk.shutdown()
    return _worker_rows(samples, floor), facts


def main() -> None:
    options = arguments(__doc__.splitlines()[0])
    results = Results(
        SUITE, versions=versions("celery", "kombu", "opentelemetry-instrumentation-celery")
    )
    for workload in (eager, through_a_worker, through_a_prefork_worker):
        rows, facts = workload(options.quick)
        results.rows += rows
        results.facts.update(facts)
    results.facts["workload"] = (
        f"a task returning a constant: eagerly (task_always_eager, delay() and its result), and "
        f"through Celery's test worker (solo pool on a thread, memory transport polled every "
        f"10 ms, cache+memory results) in batches of {BATCH} delay() then each result read; "
        f"and through a real prefork worker on Redis (prefork worker: workload); per task"
    )
    finish(results, options.out)


if __name__ == "__main__":
    main()
