"""orcapod 0.1, the real framework and sync orchestrator: what the instrumentation adds per item.

An item is what the adapter instruments as one execution below a node: one data item through
one function pod (orcapod's ``on_data_start`` / ``on_data_end`` pair; level ``item``, on the
histogram always, a span only with ``item_spans=true``). The pipeline is a source of ``ITEMS``
numbers through two function pods that add one and double (no sleep, no I/O), so orcapod's own
cost of an item (hashing, Arrow tables, the store) is all the work there is: ``ITEMS_PER_RUN``
items per run, and the per-item figure carries its share of the run's and nodes' own cost
(three stage spans, one run span).

Two benchmarks, each timing its cases side by side in interleaved rounds:

- computed: every item is computed. Each iteration runs a fresh ``PipelineJob`` on a fresh
  in-memory store (built before the timed block, as many as it runs), so nothing is cached.
- cache hit: every item is served from orcapod's cache. Each timed block first runs one job
  once (untimed), then each iteration runs it again: orcapod's cheapest path, where the
  instrumentation's share is largest.

Cases:

- bare: orcapod not instrumented;
- execstatus, SDK: instrumented with a real SDK (batch span processor, metric reader), with
  the default options (no item spans);
- execstatus, SDK, item spans: the same with ``item_spans=True``, a span per item;
- execstatus, no SDK: instrumented with no providers and no global provider ever set, the
  API-only path a process takes when the instrumentation is installed but OpenTelemetry is not
  configured.

Validity, for each benchmark: with the SDK, every run made a run span and a span per node
(and per item with item spans), all exported (none dropped), every item on the histogram and
nothing left in flight; with no SDK, orcapod was patched; a bare run after all the blocks emits
nothing. Otherwise the script exits non-zero: it measured nothing.
"""

from __future__ import annotations

from typing import Union

from harness import (
    Case,
    Results,
    Row,
    Sdk,
    arguments,
    compare,
    finish,
    instrumented_without_sdk,
    instrumenting,
    require,
    scale,
    then,
    uninstrument,
    versions,
)
from orcapod import Pipeline, PipelineJob, function_pod
from orcapod.databases import InMemoryArrowDatabase
from orcapod.pipeline import sync_orchestrator
from orcapod.pipeline.sync_orchestrator import SyncPipelineOrchestrator
from orcapod.sources import DictSource

from opentelemetry_instrumentation_execstatus import telemetry

SUITE = "orcapod"
PIPELINE = "bench_numbers"
ITEMS = 4
PODS = 2
ITEMS_PER_RUN = ITEMS * PODS
NODES = 1 + PODS  # the source and the function pods
SPANS_PER_RUN = 1 + NODES
TRANSITION_HISTOGRAM = "execution.status_transition.duration"
WITH_SDK = "execstatus, SDK"
WITH_ITEM_SPANS = "execstatus, SDK, item spans"
NO_SDK = "execstatus, no SDK"


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


Workload = Union[FreshJobs, CachedJob]


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


def cases(workload: Workload, sdk: Sdk) -> tuple[Case, list[Case], dict[str, Counted]]:
    """The bare case, the instrumented ones and their counted runs. The workload is prepared
    untimed before each block, after instrumenting; the SDK's queue is flushed after each
    block, so no export of one block runs during the next."""
    bare = Case("bare", workload.run, ITEMS_PER_RUN, setup=workload.prepare)
    counted: dict[str, Counted] = {}
    subjects = []
    for name, options in (
        (WITH_SDK, sdk.providers),
        (WITH_ITEM_SPANS, {**sdk.providers, "item_spans": True}),
        (NO_SDK, {}),
    ):
        runs = counted[name] = Counted(workload)
        subjects.append(
            Case(
                name,
                runs.run,
                ITEMS_PER_RUN,
                setup=then(instrumenting(**options), runs.prepare),
                teardown=then(uninstrument, sdk.tracer_provider.force_flush),
            )
        )
    return bare, subjects, counted


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


def check(
    label: str, bare: Case, subjects: list[Case], sdk: Sdk, counted: dict[str, Counted]
) -> dict[str, str]:
    """Fail unless each case did what its name says: with the SDK, a run span and a span per
    node for every run (and per item with item spans), none dropped, every item on the
    histogram, nothing left in flight; the adapter in place on the API-only path; nothing at
    all when bare."""
    with_sdk, item_spans, _ = subjects
    exported = sdk.spans_exported()
    made = counted[WITH_SDK].runs * SPANS_PER_RUN + counted[WITH_ITEM_SPANS].runs * (
        SPANS_PER_RUN + ITEMS_PER_RUN
    )
    require(exported > 0, f"{label}: the instrumented cases exported no spans")
    require(exported == made, f"{label}: {exported} spans exported for {made} made (dropped?)")

    spans, items = _one_run(with_sdk, sdk)
    require(
        (spans, items) == (SPANS_PER_RUN, ITEMS_PER_RUN),
        f"{label}: one instrumented run made {spans} spans and {items} item transitions, "
        f"expected {SPANS_PER_RUN} (a run and {NODES} nodes) and {ITEMS_PER_RUN}",
    )
    spans_with_items, items = _one_run(item_spans, sdk)
    require(
        (spans_with_items, items) == (SPANS_PER_RUN + ITEMS_PER_RUN, ITEMS_PER_RUN),
        f"{label}: one run with item spans made {spans_with_items} spans and {items} item "
        f"transitions, expected {SPANS_PER_RUN + ITEMS_PER_RUN} and {ITEMS_PER_RUN}",
    )
    require(_one_run(bare, sdk) == (0, 0), f"{label}: the bare case emitted telemetry")
    require(not _patched() and telemetry.current() is None, "orcapod left instrumented")

    require(
        instrumented_without_sdk(_patched), f"{label}: the no-SDK case does not instrument orcapod"
    )
    return {
        f"{label}: spans per run of {ITEMS_PER_RUN} items": (
            f"{spans} (a run and {NODES} nodes), {spans_with_items} with item spans; "
            f"{exported} exported in all, none dropped"
        )
    }


def _benchmark(
    label: str, workload: Workload, iterations: int, rounds: int, note: str
) -> tuple[list[Row], dict[str, str]]:
    sdk = Sdk.create()
    bare, subjects, counted = cases(workload, sdk)
    rows = compare(
        SUITE,
        f"per item, {label}: instrumented vs bare",
        baseline=bare,
        subjects=subjects,
        unit="item",
        iterations=iterations,
        rounds=rounds,
        note=note,
    )
    facts = check(label, bare, subjects, sdk, counted)
    sdk.shutdown()
    return rows, facts


def computed(quick: bool) -> tuple[list[Row], dict[str, str]]:
    iterations, rounds = scale(quick, 10, 21)
    note = f"{ITEMS} numbers through {PODS} function pods, a fresh job and store per run"
    return _benchmark("computed", FreshJobs(iterations), iterations, rounds, note)


def cache_hit(quick: bool) -> tuple[list[Row], dict[str, str]]:
    iterations, rounds = scale(quick, 60, 17)
    note = f"{ITEMS} numbers through {PODS} function pods, the same job run again"
    return _benchmark("cache hit", CachedJob(), iterations, rounds, note)


def main() -> None:
    options = arguments(__doc__.splitlines()[0])
    results = Results(SUITE, versions=versions("orcapod"))
    for benchmark in (computed, cache_hit):
        rows, facts = benchmark(options.quick)
        results.rows += rows
        results.facts.update(facts)
    finish(results, options.out)


if __name__ == "__main__":
    main()
