"""routilux 1.1, the real framework on its real threads: what the instrumentation adds per step.

A step is what the adapter instruments as one: one execution of a routine's logic. The
pipeline is a chain of ``STEPS`` routines whose logic only passes a number on (no sleep, no I/O),
so routilux's own cost of a step (queues, thread hand-offs, hooks, activation policy) is all the
work there is. Each iteration posts one job to a running worker, waits until the worker's task
queue has processed every task of it (the first routine runs on the thread pool, the rest on
the worker's event-loop thread; ``task_queue.join()`` returns only after the last routine's logic
and everything around it has returned), then completes the job with ``Runtime.complete_job``, as
a user does. So one iteration is one pipeline run (``RUN bench_chain``, ended by the completion)
and ``STEPS`` step spans, and its per-step figure carries its share of the run's own cost.

Each timed block starts a fresh ``Runtime`` and worker (untimed, after instrumenting), so the
instrumented cases see the worker start as a user's process does and keep its busy/available
state per step; the block ends with ``Runtime.shutdown`` (untimed, before uninstrumenting).

Cases, timed side by side in interleaved rounds:

- bare: routilux not instrumented;
- execstatus, SDK: instrumented with a real SDK (batch span processor, metric reader);
- execstatus, no SDK: instrumented with no providers and no global provider ever set, the
  API-only path a process takes when the instrumentation is installed but OpenTelemetry is not
  configured.

Validity: with the SDK, every job made a run span and ``STEPS`` step spans, all exported (none
dropped), with metric points and nothing left in flight; with no SDK, routilux was patched; a
bare job after all the blocks emits nothing. Otherwise the script exits non-zero: it measured
nothing.
"""

from __future__ import annotations

from typing import Any, Callable

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
from routilux.core import Flow, FlowRegistry, Routine, Runtime, get_worker_manager
from routilux.core import runtime as routilux_runtime

from opentelemetry_instrumentation_execstatus import telemetry

SUITE = "routilux"
FLOW_ID = "bench_chain"
STEPS = 10
SPANS_PER_JOB = STEPS + 1  # the run and its steps


# -- the pipeline -----------------------------------------------------------------------------


def _take_new(slots: dict[str, Any], worker_state: Any) -> tuple[bool, dict, str]:
    """Activation policy: run as soon as the slot has new data, consuming all of it."""
    slot = slots["value"]
    if slot.get_unconsumed_count():
        return True, {"value": slot.consume_all_new()}, "new_data"
    return False, {}, "no_new_data"


class PassOn(Routine):
    """Trivial work: take the number received, emit it plus one (the last routine emits
    nothing)."""

    def __init__(self, last: bool) -> None:
        super().__init__()
        self._last = last
        self.add_slot("value")
        self.add_event("value")
        self.set_activation_policy(_take_new)

    def logic(self, value: list[Any], *, worker_state: Any, **_: Any) -> None:
        if not self._last:
            self.emit("value", worker_state=worker_state, number=value[-1]["number"] + 1)


def register_flow() -> None:
    flow = Flow(flow_id=FLOW_ID)
    for index in range(STEPS):
        flow.add_routine(PassOn(last=index == STEPS - 1), f"step_{index}")
    for index in range(STEPS - 1):
        flow.connect(f"step_{index}", "value", f"step_{index + 1}", "value")
    FlowRegistry.get_instance().register_by_name(FLOW_ID, flow)


class Chain:
    """A runtime with one worker running the flow: started and stopped around a timed block."""

    def __init__(self) -> None:
        self._runtime: Runtime | None = None
        self._worker_id = ""
        self._executor: Any = None

    def start(self) -> None:
        self._runtime = Runtime(thread_pool_size=0)  # workers run on routilux's shared pool
        worker_state = self._runtime.exec(FLOW_ID)
        self._worker_id = worker_state.worker_id
        self._executor = get_worker_manager().get_worker(self._worker_id)

    def stop(self) -> None:
        if self._runtime is not None:
            self._runtime.shutdown(wait=True)
            self._runtime = None

    def run(self, iterations: int) -> None:
        """``iterations`` jobs, one after the other, each waited for and completed."""
        runtime, executor = self._runtime, self._executor
        assert runtime is not None
        for _ in range(iterations):
            _, job = runtime.post(
                FLOW_ID, "step_0", "value", {"number": 0}, worker_id=self._worker_id
            )
            executor.task_queue.join()
            runtime.complete_job(job.job_id)


# -- the cases --------------------------------------------------------------------------------


class Counted:
    """A case's ``run``, counting the iterations it did (to check every span was exported)."""

    def __init__(self, run: Callable[[int], object]) -> None:
        self._run = run
        self.done = 0

    def __call__(self, iterations: int) -> None:
        self._run(iterations)
        self.done += iterations


def cases(chain: Chain, counted: Counted, sdk: Sdk) -> tuple[Case, list[Case]]:
    """Each block starts its runtime after instrumenting and stops it before uninstrumenting;
    the SDK's queue is flushed after, so no export of one block runs during the next. The SDK
    case runs through ``counted``."""
    bare = Case("bare", chain.run, STEPS, setup=chain.start, teardown=chain.stop)
    with_sdk = Case(
        "execstatus, SDK",
        counted,
        STEPS,
        setup=then(instrumenting(**sdk.providers), chain.start),
        teardown=then(chain.stop, uninstrument, sdk.tracer_provider.force_flush),
    )
    no_sdk = Case(
        "execstatus, no SDK",
        chain.run,
        STEPS,
        setup=then(instrumenting(), chain.start),
        teardown=then(chain.stop, uninstrument),
    )
    return bare, [with_sdk, no_sdk]


def _one_iteration(case: Case) -> int:
    """Run one iteration of ``case``; return how many executions were left in flight."""
    if case.setup is not None:
        case.setup()
    try:
        case.run(1)
        live = telemetry.current()
        return 0 if live is None else live.tracker.in_flight_count()
    finally:
        if case.teardown is not None:
            case.teardown()


# -- validity ---------------------------------------------------------------------------------


def _patched() -> bool:
    method = vars(routilux_runtime.Runtime)["_check_routine_activation"]
    return hasattr(method, "__wrapped__")


def check(bare: Case, with_sdk: Case, counted: Counted, sdk: Sdk) -> dict[str, str]:
    """Fail unless each case did what its name says: a span for the run and each step with the
    SDK, none dropped, nothing left in flight; the adapter in place on the API-only path;
    nothing at all when bare."""
    jobs = counted.done
    exported, made = sdk.spans_exported(), jobs * SPANS_PER_JOB
    require(exported > 0, "the instrumented case exported no spans")
    require(exported == made, f"{exported} spans exported for {made} made (dropped?)")
    require(sdk.metric_points() > 0, "the instrumented case recorded no metric point")

    before = sdk.spans_exported()
    in_flight = _one_iteration(with_sdk)
    spans_per_job = sdk.spans_exported() - before
    require(
        spans_per_job == SPANS_PER_JOB,
        f"one instrumented job made {spans_per_job} spans, expected {SPANS_PER_JOB} "
        f"(a run and {STEPS} steps)",
    )
    require(in_flight == 0, f"{in_flight} executions still in flight after a job")

    before_bare = sdk.spans_exported(), sdk.metric_points()
    _one_iteration(bare)
    after_bare = sdk.spans_exported(), sdk.metric_points()
    require(after_bare == before_bare, f"a bare job emitted: {before_bare} -> {after_bare}")
    require(not _patched() and telemetry.current() is None, "routilux left instrumented")

    require(instrumented_without_sdk(_patched), "the no-SDK case does not instrument routilux")
    return {
        "spans per job, SDK case": f"{spans_per_job} (a run and {STEPS} steps)",
        "spans exported, SDK case": f"{exported} for {jobs} jobs, none dropped",
    }


def main() -> None:
    options = arguments(__doc__.splitlines()[0])
    iterations, rounds = scale(options.quick, 500, 21)
    register_flow()
    sdk = Sdk.create()
    chain = Chain()
    counted = Counted(chain.run)
    bare, subjects = cases(chain, counted, sdk)
    rows: list[Row] = compare(
        SUITE,
        "per step: instrumented vs bare",
        baseline=bare,
        subjects=subjects,
        unit="step",
        iterations=iterations,
        rounds=rounds,
        note=f"a chain of {STEPS} routines passing a number on, one job per iteration",
    )
    facts = check(bare, subjects[0], counted, sdk)
    sdk.shutdown()
    results = Results(SUITE, versions=versions("routilux"))
    results.rows += rows
    results.facts.update(facts)
    finish(results, options.out)


if __name__ == "__main__":
    main()
