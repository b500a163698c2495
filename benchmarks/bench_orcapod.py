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
"""

from __future__ import annotations

import logging
from typing import Any, Callable

from harness import Case, Results, Row, Sdk, arguments, compare, finish, require, scale, versions
from orcapod import Pipeline, PipelineJob, function_pod
from orcapod.databases import InMemoryArrowDatabase
from orcapod.pipeline import sync_orchestrator
from orcapod.pipeline.sync_orchestrator import SyncPipelineOrchestrator
from orcapod.sources import DictSource

from opentelemetry_instrumentation_execstatus import ExecStatusInstrumentor, telemetry

SUITE = "orcapod"
INSTRUMENTOR = ExecStatusInstrumentor()
PIPELINE = "bench_numbers"
ITEMS = 4
PODS = 2
ITEMS_PER_RUN = ITEMS * PODS
NODES = 1 + PODS  # the source and the function pods
SPANS_PER_RUN = 1 + NODES
TRANSITION_HISTOGRAM = "execution.status_transition.duration"


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
    """Jobs never run yet, built before each timed block (``fill``), one used per iteration."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._jobs: list[PipelineJob] = []

    def fill(self) -> None:
        while len(self._jobs) < self._size:
            self._jobs.append(build())

    def run(self, iterations: int) -> None:
        require(len(self._jobs) >= iterations, "fewer fresh jobs built than iterations")
        jobs, self._jobs = self._jobs[:iterations], self._jobs[iterations:]
        for job in jobs:
            run_job(job)


class CachedJob:
    """One job, run once when a timed block starts (``prime``), then run again per iteration."""

    def __init__(self) -> None:
        self._job: PipelineJob | None = None

    def prime(self) -> None:
        self._job = build()
        run_job(self._job)

    def run(self, iterations: int) -> None:
        job = self._job
        assert job is not None
        for _ in range(iterations):
            run_job(job)


# -- the cases --------------------------------------------------------------------------------


def _then(*actions: Callable[[], object]) -> Callable[[], None]:
    def run() -> None:
        for action in actions:
            action()

    return run


def _instrument(**options: Any) -> Callable[[], None]:
    return lambda: INSTRUMENTOR.instrument(**options)


def _uninstrument() -> None:
    INSTRUMENTOR.uninstrument()


def cases(
    run: Callable[[int], object], prepare: Callable[[], object], sdk: Sdk
) -> tuple[Case, list[Case]]:
    """The bare case and the instrumented ones; ``prepare`` runs untimed before each block,
    after instrumenting."""
    bare = Case("bare", run, ITEMS_PER_RUN, setup=prepare)
    subjects = [
        Case(
            name,
            run,
            ITEMS_PER_RUN,
            setup=_then(_instrument(**options), prepare),
            teardown=_uninstrument,
        )
        for name, options in (
            ("execstatus, SDK", sdk.providers),
            ("execstatus, SDK, item spans", {**sdk.providers, "item_spans": True}),
            ("execstatus, no SDK", {}),
        )
    ]
    return bare, subjects


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


def check(label: str, bare: Case, subjects: list[Case], sdk: Sdk) -> dict[str, str]:
    """Fail unless each case did what its name says: a run and node spans and every item on
    the histogram with the SDK, item spans too when asked, the adapter in place on the
    API-only path, nothing at all when bare."""
    with_sdk, item_spans, no_sdk = subjects
    require(sdk.spans_exported() > 0, f"{label}: the instrumented cases exported no spans")

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
    require(_one_run(bare, sdk) == (0, 0), f"{label}: the bare case made spans or metrics")
    require(not _patched() and telemetry.current() is None, "orcapod left instrumented")

    require(no_sdk.setup is not None, f"{label}: the no-SDK case does not instrument")
    no_sdk.setup()  # type: ignore[misc]
    try:
        live = telemetry.current()
        require(_patched() and live is not None, "the no-SDK case did not patch orcapod")
        require(live.tracker.is_off(), "the no-SDK case found an SDK")  # type: ignore[union-attr]
    finally:
        no_sdk.teardown()  # type: ignore[misc]
    return {
        f"{label}: spans per run of {ITEMS_PER_RUN} items, SDK case": (
            f"{spans} (a run and {NODES} nodes); {spans_with_items} with item spans"
        )
    }


def computed(quick: bool, sdk: Sdk) -> tuple[list[Row], dict[str, str]]:
    iterations, rounds = scale(quick, 20, 11)
    jobs = FreshJobs(iterations)
    bare, subjects = cases(jobs.run, jobs.fill, sdk)
    rows = compare(
        SUITE,
        "per item, computed: instrumented vs bare",
        baseline=bare,
        subjects=subjects,
        unit="item",
        iterations=iterations,
        rounds=rounds,
        note=f"{ITEMS} numbers through {PODS} function pods, a fresh job and store per run",
    )
    return rows, check("computed", bare, subjects, sdk)


def cache_hit(quick: bool, sdk: Sdk) -> tuple[list[Row], dict[str, str]]:
    iterations, rounds = scale(quick, 100, 11)
    job = CachedJob()
    bare, subjects = cases(job.run, job.prime, sdk)
    rows = compare(
        SUITE,
        "per item, cache hit: instrumented vs bare",
        baseline=bare,
        subjects=subjects,
        unit="item",
        iterations=iterations,
        rounds=rounds,
        note=f"{ITEMS} numbers through {PODS} function pods, the same job run again",
    )
    return rows, check("cache hit", bare, subjects, sdk)


def main() -> None:
    options = arguments(__doc__.splitlines()[0])
    logging.getLogger("orcapod").setLevel(logging.WARNING)
    sdk = Sdk.create()
    results = Results(SUITE, versions=versions("orcapod"))
    for benchmark in (computed, cache_hit):
        rows, facts = benchmark(options.quick, sdk)
        results.rows += rows
        results.facts.update(facts)
    sdk.shutdown()
    finish(results, options.out)


if __name__ == "__main__":
    main()
