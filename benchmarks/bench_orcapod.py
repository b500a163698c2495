"""orcapod 0.1, the real framework and sync orchestrator: what the instrumentation adds per item.

An item is what the adapter instruments as one execution below a node: one data item through
one function pod (orcapod's ``on_data_start`` / ``on_data_end`` pair; level ``item``, on the
histogram always, a span only with ``item_spans=true``). The pipeline is a source of ``ITEMS``
numbers through two function pods that add one and double (no sleep, no I/O), so orcapod's own
cost of an item (hashing, Arrow tables, the store) is all the work there is: ``ITEMS_PER_RUN``
items per run, and the per-item figure carries its share of the run's and nodes' own cost
(three stage spans, one run span).

Four benchmarks, each timing its cases side by side in interleaved rounds:

- observer calls: the computed workload's runs with orcapod's own work taken out
  (``ObserverCalls``): the real, patched ``SyncPipelineOrchestrator.run``, called as
  ``PipelineJob.run`` calls it, on a graph whose one node makes again the observer calls the
  nodes of a recorded computed run made (run, nodes, items, with fresh copies of its tags).
  Every hook of the instrumentation runs as in a real run, the same SDK calls are made, and a
  bare item costs microseconds instead of milliseconds: this is where what the instrumentation
  adds, and its ratio to its equal floor, can be measured to a few percent.
- computed: every item is computed. Each iteration runs a fresh ``PipelineJob`` on a fresh
  in-memory store (built before the timed block, as many as it runs), so nothing is cached.
- cache hit: every item is served from orcapod's cache. Each timed block first runs one job
  once (untimed), then each iteration runs it again: orcapod's cheapest path, where the
  instrumentation's share is largest.
- no SDK, per orchestrator call: ``SyncPipelineOrchestrator.run`` on an empty graph, the one
  patched call with nothing around it. What the no-SDK path adds is a few microseconds per
  run (``run`` is the only patched call, one per run of ``ITEMS_PER_RUN`` items; with no SDK
  the orchestrator is called as it was, no observer of ours); against an item's milliseconds
  that is far below the noise of the real workloads, so it is held to its goal here, per call.

Cases of observer calls, computed and cache hit:

- bare: orcapod not instrumented;
- execstatus, SDK: instrumented with a real SDK (batch span processor, metric reader), with
  the default options (no item spans);
- the same SDK calls by hand (``harness.EqualFloor``): the spans, events, attributes and
  histogram records one run of the case above made, recorded and made again on the same SDK,
  with nothing else: what its telemetry has to cost. What the instrumented case adds over bare
  is held to this (``added per item vs the same SDK calls``);
- execstatus, SDK, item spans: the same with ``item_spans=True``, a span per item, and its
  own equal floor;
- execstatus, no SDK: instrumented with no providers and no global provider ever set, the
  API-only path a process takes when the instrumentation is installed but OpenTelemetry is not
  configured;
- wrapt pass-through: every function the adapter patches wrapped by a wrapt wrapper that only
  calls it (``harness.PassThrough``). The adapter has no ``OnImport`` entry: its observer is
  handed to orcapod by the patched call itself, so this is all the pass-through there is.

A real item costs milliseconds of orcapod's own work (hashing, Arrow tables, the store), so in
computed and cache hit an instrumented case's added microseconds per item are a difference of
two large numbers, each as noisy as the machine: each round's difference is taken between
blocks of the same round, and the median is over many rounds, but on a loaded machine their
rows against the floor stay rough (observer calls gives the precise one).

Validity, for observer calls, computed and cache hit: with the SDK, every run made a run span
and a span per node (and per item with item spans), all exported (none dropped) with the
floors' own, each floor replays a run's spans, every item is on the histogram and nothing is
left in flight; with no SDK, orcapod was patched; a bare or pass-through run after all the
blocks emits nothing. Otherwise the script exits non-zero: it measured nothing.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Union

import sdk_calls
from harness import (
    Case,
    EqualFloor,
    PassThrough,
    Results,
    Row,
    Samples,
    Sdk,
    added_against_floor,
    added_cost_ratio,
    arguments,
    compare,
    finish,
    instrumented_without_sdk,
    instrumenting,
    measure,
    ratio_rows,
    require,
    scale,
    then,
    uninstrument,
    versions,
)
from orcapod import Pipeline, PipelineJob, function_pod
from orcapod.core.datagrams import Tag
from orcapod.databases import InMemoryArrowDatabase
from orcapod.pipeline import sync_orchestrator
from orcapod.pipeline.dag import OrcaDAG
from orcapod.pipeline.observer import NoOpLogger, NoOpObserver
from orcapod.pipeline.sync_orchestrator import SyncPipelineOrchestrator
from orcapod.sources import DictSource

from opentelemetry_instrumentation_execstatus import telemetry
from opentelemetry_instrumentation_execstatus.adapters.orcapod import OrcapodAdapter

SUITE = "orcapod"
PIPELINE = "bench_numbers"
ITEMS = 4
PODS = 2
ITEMS_PER_RUN = ITEMS * PODS
NODES = 1 + PODS  # the source and the function pods
SPANS_PER_RUN = 1 + NODES
TRANSITION_HISTOGRAM = "execution.status_transition.duration"
NO_OP_LOGGER = NoOpLogger()
BARE = "bare"
WITH_SDK = "execstatus, SDK"
WITH_ITEM_SPANS = "execstatus, SDK, item spans"
NO_SDK = "execstatus, no SDK"
PASS_THROUGH = "wrapt pass-through"
# The instrumented cases with an SDK: their options beyond the providers, their spans per run.
WITH_SDK_CASES = {
    WITH_SDK: ({}, SPANS_PER_RUN),
    WITH_ITEM_SPANS: ({"item_spans": True}, SPANS_PER_RUN + ITEMS_PER_RUN),
}


# -- the pipeline -----------------------------------------------------------------------------


@function_pod(output_keys="y")
def add_one(x: int) -> int:
    return x + 1


@function_pod(output_keys="z")
def double(y: int) -> int:
    return 2 * y


def build() -> PipelineJob:
    """A runnable job over a fresh in-memory store: nothing cached."""
    numbers = DictSource(
        [{"id": i, "x": i} for i in range(ITEMS)], tag_columns="id", source_id="numbers"
    )
    with Pipeline(PIPELINE) as pipeline:
        double.pod(add_one.pod(numbers))
    return PipelineJob.from_pipeline(
        pipeline, store=InMemoryArrowDatabase(), sources={"numbers": numbers}
    )


def run_job(job: PipelineJob) -> None:
    job.run(orchestrator=SyncPipelineOrchestrator())


class FreshJobs:
    """Jobs never run yet, built before each timed block (``prepare``), one run per iteration."""

    runs_per_prepare = 0

    def __init__(self, size: int) -> None:
        self._size = size
        self._jobs: list[PipelineJob] = []

    def prepare(self) -> None:
        while len(self._jobs) < self._size:
            self._jobs.append(build())

    def run(self, iterations: int) -> None:
        require(len(self._jobs) >= iterations, "fewer fresh jobs built than iterations")
        jobs, self._jobs = self._jobs[:iterations], self._jobs[iterations:]
        for job in jobs:
            run_job(job)

    def recorded(self) -> Callable[[int], None]:
        """The same runs for an equal floor's record, any number of them: each iteration
        builds its job (no SDK call) and runs it."""

        def run(iterations: int) -> None:
            for _ in range(iterations):
                run_job(build())

        return run


class CachedJob:
    """One job, run once when a timed block starts (``prepare``), then again per iteration."""

    runs_per_prepare = 1

    def __init__(self) -> None:
        self._job: PipelineJob | None = None

    def prepare(self) -> None:
        self._job = build()
        run_job(self._job)

    def run(self, iterations: int) -> None:
        job = self._job
        assert job is not None
        for _ in range(iterations):
            run_job(job)

    def recorded(self) -> Callable[[int], None]:
        """The same runs for an equal floor's record: a job of its own, computed once now
        (not instrumented), then served from the cache at every iteration."""
        job = build()
        run_job(job)

        def run(iterations: int) -> None:
            for _ in range(iterations):
                run_job(job)

        return run


class _RecordingView:
    """An observer that notes every call orcapod makes on it (and on the views it hands out
    with ``contextualize``) into ``log``: (view, hook, arguments, keywords)."""

    def __init__(self, log: list[tuple[int, str, tuple, dict]], views: list[int], index: int):
        self._log = log
        self._views = views  # [views handed out so far], shared
        self._index = index

    def contextualize(self, *identity_path: str) -> _RecordingView:
        self._log.append((self._index, "contextualize", identity_path, {}))
        self._views[0] += 1
        return _RecordingView(self._log, self._views, self._views[0])

    def create_data_logger(self, tag: Any, data: Any) -> NoOpLogger:
        self._log.append((self._index, "create_data_logger", (tag, data), {}))
        return NO_OP_LOGGER

    def __getattr__(self, hook: str) -> Callable[..., None]:
        if not hook.startswith("on_"):
            raise AttributeError(hook)

        def noted(*args: Any, **kwargs: Any) -> None:
            self._log.append((self._index, hook, args, kwargs))

        return noted


class _ReplayedNodes:
    """orcapod's graph reduced to the observer calls its nodes made in one recorded run: one
    source-like node whose ``execute`` makes them again, in order, on the observer (and the
    views of it) it is given, with fresh copies of the recorded tags."""

    node_type = "source"

    def __init__(self, calls: list[tuple[int, str, tuple, dict]]) -> None:
        self._calls = calls

    def topological_sort(self) -> list[_ReplayedNodes]:
        return [self]

    def execute(self, *, observer: Any) -> list:
        views = [observer]
        for view, hook, args, kwargs in self._calls:
            if hook == "contextualize":
                views.append(views[view].contextualize(*args))
            else:
                getattr(views[view], hook)(*args, **kwargs)
        return []


class ObserverCalls:
    """The computed workload's runs with orcapod's own work taken out: the real (patched)
    ``SyncPipelineOrchestrator.run``, called as ``PipelineJob.run`` calls it, on a graph whose
    one node makes the observer calls the nodes of a recorded computed run made (the run's,
    each node's and each item's, with copies of its tags, fresh as orcapod's are). Every hook
    of the instrumentation runs as in the real run, on a unit of microseconds instead of
    milliseconds: what the instrumentation adds is measured where it can be.

    ``prepare`` copies the tags for as many runs as a timed block makes (a tag's values are
    read from its Arrow table on first use, and cached: each run needs tags never read)."""

    runs_per_prepare = 0

    def __init__(self, size: int) -> None:
        self._size = size
        log: list[tuple[int, str, tuple, dict]] = []
        build().run(orchestrator=SyncPipelineOrchestrator(), observer=_RecordingView(log, [0], 0))
        (run_start,) = [call for call in log if call[1] == "on_run_start"]
        self._run_id, self._pipeline_uri = run_start[2][0], run_start[3]["pipeline_uri"]
        self._calls = [call for call in log if call[1] not in ("on_run_start", "on_run_end")]
        require(
            sum(call[1] == "on_data_start" for call in self._calls) == ITEMS_PER_RUN,
            "the recorded run did not start every item",
        )
        self._graphs: list[_ReplayedNodes] = []

    def _fresh(self) -> _ReplayedNodes:
        copies: dict[int, Any] = {}

        def fresh(argument: Any) -> Any:
            if not isinstance(argument, Tag):
                return argument
            if id(argument) not in copies:  # one copy per tag: start and end get the same
                copies[id(argument)] = argument.copy(include_cache=False)
            return copies[id(argument)]

        return _ReplayedNodes(
            [
                (view, hook, tuple(fresh(argument) for argument in args), kwargs)
                for view, hook, args, kwargs in self._calls
            ]
        )

    def prepare(self) -> None:
        while len(self._graphs) < self._size:
            self._graphs.append(self._fresh())

    def run(self, iterations: int) -> None:
        require(len(self._graphs) >= iterations, "fewer fresh tags copied than iterations")
        graphs, self._graphs = self._graphs[:iterations], self._graphs[iterations:]
        for graph in graphs:
            self._orchestrate(graph)

    def recorded(self) -> Callable[[int], None]:
        def run(iterations: int) -> None:
            for _ in range(iterations):
                self._orchestrate(self._fresh())

        return run

    def _orchestrate(self, graph: _ReplayedNodes) -> None:
        SyncPipelineOrchestrator().run(
            graph,
            observer=NoOpObserver(),
            run_id=self._run_id,
            pipeline_uri=self._pipeline_uri,
            materialize_results=True,
        )


Workload = Union[FreshJobs, CachedJob, ObserverCalls]


# -- the cases --------------------------------------------------------------------------------


class Counted:
    """A case's runs, timed or not, counted (to check that every span made was exported)."""

    def __init__(self, workload: Workload) -> None:
        self._workload = workload
        self.runs = 0

    def prepare(self) -> None:
        self._workload.prepare()
        self.runs += self._workload.runs_per_prepare

    def run(self, iterations: int) -> None:
        self._workload.run(iterations)
        self.runs += iterations


class Replayed:
    """An equal floor as a case, its iterations counted (its spans are exported with the
    instrumented cases'), the SDK's queue flushed after each block as theirs is."""

    def __init__(self, floor: EqualFloor, sdk: Sdk) -> None:
        self.floor = floor
        self.iterations = 0
        replay = floor.case()

        def run(iterations: int) -> None:
            replay.run(iterations)
            self.iterations += iterations

        self.case = dataclasses.replace(replay, run=run, teardown=sdk.tracer_provider.force_flush)


@dataclasses.dataclass
class Cases:
    bare: Case
    instrumented: dict[str, Case]  # by name: with the SDK (with and without item spans), none
    pass_through: Case
    counted: dict[str, Counted]  # the instrumented cases' runs, by case name
    floors: dict[str, Replayed]  # by the name of the case they are the floor of

    def timed(self) -> list[Case]:
        """Every case, each floor next to its subject."""
        ordered = [self.bare]
        for name, case in self.instrumented.items():
            ordered.append(case)
            if name in self.floors:
                ordered.append(self.floors[name].case)
        return [*ordered, self.pass_through]


def cases(workload: Workload, sdk: Sdk) -> Cases:
    """The bare case, the instrumented ones with their counted runs, their floors and the
    pass-through. The workload is prepared untimed before each block, after instrumenting;
    the SDK's queue is flushed after each block, so no export of one block runs during the
    next. The floors are recorded first, from runs of their own."""
    recorded = workload.recorded()
    floors = {
        name: Replayed(EqualFloor.record(name, sdk, recorded, units=ITEMS_PER_RUN, **options), sdk)
        for name, (options, _spans) in WITH_SDK_CASES.items()
    }
    counted: dict[str, Counted] = {}
    instrumented: dict[str, Case] = {}
    for name, options in (
        (WITH_SDK, sdk.providers),
        (WITH_ITEM_SPANS, {**sdk.providers, "item_spans": True}),
        (NO_SDK, {}),
    ):
        runs = counted[name] = Counted(workload)
        instrumented[name] = Case(
            name,
            runs.run,
            ITEMS_PER_RUN,
            setup=then(instrumenting(**options), runs.prepare),
            teardown=then(uninstrument, sdk.tracer_provider.force_flush),
        )
    pass_through = PassThrough(OrcapodAdapter)
    return Cases(
        bare=Case(BARE, workload.run, ITEMS_PER_RUN, setup=workload.prepare),
        instrumented=instrumented,
        pass_through=Case(
            PASS_THROUGH,
            workload.run,
            ITEMS_PER_RUN,
            setup=then(pass_through.setup, workload.prepare),
            teardown=pass_through.teardown,
        ),
        counted=counted,
        floors=floors,
    )


# -- validity ---------------------------------------------------------------------------------


def _patched() -> bool:
    method = vars(sync_orchestrator.SyncPipelineOrchestrator)["run"]
    return hasattr(method, "__wrapped__")


def _item_transitions(sdk: Sdk) -> int:
    """Item status changes recorded on the histogram so far (cumulative)."""
    data = sdk.reader.get_metrics_data()
    if data is None:
        return 0
    return sum(
        point.count
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
        if metric.name == TRANSITION_HISTOGRAM
        for point in metric.data.data_points
        if point.attributes.get("execution.level") == "item"
    )


def _one_run(case: Case, sdk: Sdk) -> tuple[int, int]:
    """Spans and item transitions one iteration of ``case`` adds; nothing left in flight."""
    if case.setup is not None:
        case.setup()
    try:
        spans, items = sdk.spans_exported(), _item_transitions(sdk)
        case.run(1)
        live = telemetry.current()
        require(
            live is None or live.tracker.in_flight_count() == 0,
            f"{case.name}: executions still in flight after a run",
        )
    finally:
        if case.teardown is not None:
            case.teardown()
    return sdk.spans_exported() - spans, _item_transitions(sdk) - items


def check(label: str, timed: Cases, sdk: Sdk, exported_before: int) -> dict[str, str]:
    """Fail unless each case did what its name says: with the SDK, a run span and a span per
    node for every run (and per item with item spans), none dropped, every item on the
    histogram, nothing left in flight; each floor a run's spans per iteration; the adapter in
    place on the API-only path; nothing at all when bare."""
    exported = sdk.spans_exported() - exported_before
    made = 0
    for name, (_options, spans_per_run) in WITH_SDK_CASES.items():
        floor = timed.floors[name]
        replayed_spans = round(floor.floor.calls_per_unit[sdk_calls.SPAN] * ITEMS_PER_RUN)
        require(
            replayed_spans == spans_per_run,
            f"{label}: the floor of {name} makes {replayed_spans} spans a run, not {spans_per_run}",
        )
        made += (timed.counted[name].runs + floor.iterations) * spans_per_run
    require(exported > 0, f"{label}: the instrumented cases exported no spans")
    require(exported == made, f"{label}: {exported} spans exported for {made} made (dropped?)")

    spans, items = _one_run(timed.instrumented[WITH_SDK], sdk)
    require(
        (spans, items) == (SPANS_PER_RUN, ITEMS_PER_RUN),
        f"{label}: one instrumented run made {spans} spans and {items} item transitions, "
        f"expected {SPANS_PER_RUN} (a run and {NODES} nodes) and {ITEMS_PER_RUN}",
    )
    spans_with_items, items = _one_run(timed.instrumented[WITH_ITEM_SPANS], sdk)
    require(
        (spans_with_items, items) == (SPANS_PER_RUN + ITEMS_PER_RUN, ITEMS_PER_RUN),
        f"{label}: one run with item spans made {spans_with_items} spans and {items} item "
        f"transitions, expected {SPANS_PER_RUN + ITEMS_PER_RUN} and {ITEMS_PER_RUN}",
    )
    require(_one_run(timed.bare, sdk) == (0, 0), f"{label}: the bare case emitted telemetry")
    require(_one_run(timed.pass_through, sdk) == (0, 0), f"{label}: the pass-through emitted")
    require(not _patched() and telemetry.current() is None, "orcapod left instrumented")

    require(
        instrumented_without_sdk(_patched), f"{label}: the no-SDK case does not instrument orcapod"
    )
    return {
        f"{label}: spans per run of {ITEMS_PER_RUN} items": (
            f"{spans} (a run and {NODES} nodes), {spans_with_items} with item spans; "
            f"{exported} exported in all, none dropped"
        ),
        **{
            f"{label}: equal floor of {name}": floor.floor.describe()
            for name, floor in timed.floors.items()
        },
    }


def _rows(label: str, samples: Samples, timed: Cases, note: str) -> list[Row]:
    """Each case against bare, and what each case with the SDK adds against its floor."""
    benchmark = f"per item, {label}"
    rows = ratio_rows(
        samples,
        SUITE,
        f"{benchmark}: instrumented vs bare",
        BARE,
        [*timed.instrumented, PASS_THROUGH],
        unit="item",
        note=note,
    )
    for name, floor in timed.floors.items():
        rows.append(
            added_against_floor(
                samples,
                SUITE,
                f"{benchmark}: added per item vs the same SDK calls",
                name,
                floor.floor,
                bare=BARE,
                unit="item",
            )
        )
    return rows


def _benchmark(
    label: str, workload: Workload, iterations: int, rounds: int, note: str
) -> tuple[list[Row], dict[str, str]]:
    sdk = Sdk.create()
    timed = cases(workload, sdk)
    exported_before = sdk.spans_exported()
    samples = measure(timed.timed(), iterations=iterations, rounds=rounds)
    rows = _rows(label, samples, timed, note)
    facts = check(label, timed, sdk, exported_before)
    sdk.shutdown()
    return rows, facts


# computed and cache hit: short blocks, many rounds. The noise that matters is the machine's
# (other processes), in bursts: a round a burst falls in is an outlier the median discards, and
# a shorter block is hit by fewer; what the added cost per item is measured to is set by how
# many rounds there are.


def computed(quick: bool) -> tuple[list[Row], dict[str, str]]:
    iterations, rounds = scale(quick, 5, 41)
    note = f"{ITEMS} numbers through {PODS} function pods, a fresh job and store per run"
    return _benchmark("computed", FreshJobs(iterations), iterations, rounds, note)


def cache_hit(quick: bool) -> tuple[list[Row], dict[str, str]]:
    iterations, rounds = scale(quick, 30, 41)
    note = f"{ITEMS} numbers through {PODS} function pods, the same job run again"
    return _benchmark("cache hit", CachedJob(), iterations, rounds, note)


# -- no SDK, per orchestrator call ------------------------------------------------------------


def _empty_runs(iterations: int) -> None:
    """The patched call, on a graph with no node: orcapod's own cost of a run, and nothing
    else (a run id, a no-op observer, an empty topological sort)."""
    orchestrator, graph = SyncPipelineOrchestrator(), OrcaDAG()
    for _ in range(iterations):
        orchestrator.run(graph)


def no_sdk(quick: bool) -> tuple[list[Row], dict[str, str]]:
    iterations, rounds = scale(quick, 20000, 15)
    pass_through = PassThrough(OrcapodAdapter)
    benchmark = "no SDK, per orchestrator call"
    timed = compare(
        SUITE,
        f"{benchmark}: instrumented vs bare",
        Case(BARE, _empty_runs),
        [
            Case(
                PASS_THROUGH,
                _empty_runs,
                setup=pass_through.setup,
                teardown=pass_through.teardown,
            ),
            Case(NO_SDK, _empty_runs, setup=instrumenting(), teardown=uninstrument),
        ],
        unit="call",
        iterations=iterations,
        rounds=rounds,
        note="SyncPipelineOrchestrator.run on an empty graph",
    )
    row = added_cost_ratio(
        timed, NO_SDK, PASS_THROUGH, f"{benchmark}: added per call vs a wrapt pass-through"
    )
    row.goal = 2.0
    require(instrumented_without_sdk(_patched), "no SDK: the case does not instrument orcapod")
    facts = {
        "no SDK: patched calls per item": (
            f"{pass_through.calls_per_unit(FreshJobs(0).recorded(), ITEMS_PER_RUN):g} "
            f"(one orchestrator run per {ITEMS_PER_RUN} items), "
            f"{pass_through.calls_per_unit(_empty_runs, 1):g} per empty run"
        )
    }
    return [*timed, row], facts


def observer_calls(quick: bool) -> tuple[list[Row], dict[str, str]]:
    iterations, rounds = scale(quick, 200, 21)
    note = "a computed run's observer calls, orcapod's own work taken out"
    return _benchmark("observer calls", ObserverCalls(iterations), iterations, rounds, note)


def main() -> None:
    options = arguments(__doc__.splitlines()[0])
    results = Results(SUITE, versions=versions("orcapod"))
    for benchmark in (observer_calls, computed, cache_hit, no_sdk):
        rows, facts = benchmark(options.quick)
        results.rows += rows
        results.facts.update(facts)
    finish(results, options.out)


if __name__ == "__main__":
    main()
