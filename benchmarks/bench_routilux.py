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
"""

from __future__ import annotations

from typing import Any, Callable

from harness import Case, Results, Row, Sdk, arguments, compare, finish, require, scale, versions
from routilux.core import Flow, FlowRegistry, Routine, Runtime, get_worker_manager
from routilux.core import runtime as routilux_runtime

from opentelemetry_instrumentation_execstatus import ExecStatusInstrumentor, telemetry

SUITE = "routilux"
INSTRUMENTOR = ExecStatusInstrumentor()
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


def _then(*actions: Callable[[], object]) -> Callable[[], None]:
    def run() -> None:
        for action in actions:
            action()

    return run


def _uninstrument() -> None:
    INSTRUMENTOR.uninstrument()


def cases(chain: Chain, sdk: Sdk) -> tuple[Case, list[Case]]:
    bare = Case("bare", chain.run, STEPS, setup=chain.start, teardown=chain.stop)
    with_sdk = Case(
        "execstatus, SDK",
        chain.run,
        STEPS,
        setup=_then(lambda: INSTRUMENTOR.instrument(**sdk.providers), chain.start),
        teardown=_then(chain.stop, _uninstrument),
    )
    no_sdk = Case(
        "execstatus, no SDK",
        chain.run,
        STEPS,
        setup=_then(INSTRUMENTOR.instrument, chain.start),
        teardown=_then(chain.stop, _uninstrument),
    )
    return bare, [with_sdk, no_sdk]


def _one_iteration(case: Case) -> None:
    if case.setup is not None:
        case.setup()
    try:
        case.run(1)
    finally:
        if case.teardown is not None:
            case.teardown()


# -- validity ---------------------------------------------------------------------------------


def _patched() -> bool:
    method = vars(routilux_runtime.Runtime)["_check_routine_activation"]
    return hasattr(method, "__wrapped__")


def check(bare: Case, subjects: list[Case], sdk: Sdk) -> dict[str, str]:
    """Fail unless each case did what its name says: spans for every step with the SDK, the
    adapter in place on the API-only path, nothing at all when bare."""
    with_sdk, no_sdk = subjects
    require(sdk.spans_exported() > 0, "the instrumented case exported no spans")

    before = sdk.spans_exported()
    _one_iteration(with_sdk)
    spans_per_job = sdk.spans_exported() - before
    require(
        spans_per_job == SPANS_PER_JOB,
        f"one instrumented job made {spans_per_job} spans, expected {SPANS_PER_JOB} "
        f"(a run and {STEPS} steps)",
    )

    before = sdk.spans_exported()
    _one_iteration(bare)
    require(sdk.spans_exported() == before, "the bare case made spans")
    require(not _patched() and telemetry.current() is None, "routilux left instrumented")

    require(no_sdk.setup is not None, "the no-SDK case does not instrument")
    no_sdk.setup()  # type: ignore[misc]
    try:
        live = telemetry.current()
        require(_patched() and live is not None, "the no-SDK case did not patch routilux")
        require(live.tracker.is_off(), "the no-SDK case found an SDK")  # type: ignore[union-attr]
    finally:
        no_sdk.teardown()  # type: ignore[misc]
    return {"spans per job (a run and its steps), SDK case": str(spans_per_job)}


def main() -> None:
    options = arguments(__doc__.splitlines()[0])
    iterations, rounds = scale(options.quick, 500, 11)
    register_flow()
    sdk = Sdk.create()
    bare, subjects = cases(Chain(), sdk)
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
    facts = check(bare, subjects, sdk)
    sdk.shutdown()
    results = Results(SUITE, versions=versions("routilux"))
    results.rows += rows
    results.facts.update(facts)
    finish(results, options.out)


if __name__ == "__main__":
    main()
