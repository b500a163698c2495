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

Cases, timed side by side in interleaved rounds (one ``measure``):

- bare: routilux not instrumented;
- execstatus, SDK: instrumented with a real SDK (batch span processor, metric reader);
- its equal floor: the SDK calls one job of it made (recorded from one whole job, a run and its
  steps, after a warm-up; two jobs in a row must make the same calls), made again by hand on
  an SDK of the same kind (``harness.EqualFloor``). Row: what the SDK case adds per step over
  bare, against the floor's cost per step (goal 1.10);
- execstatus, no SDK: instrumented with no providers and no global provider ever set, the
  API-only path a process takes when the instrumentation is installed but OpenTelemetry is not
  configured;
- wrapt pass-through: every function the adapter patches wrapped by a plain pass-through
  (``harness.PassThrough``). The adapter's ``OnImport`` makes ``Routine._logic`` a data
  descriptor (its one read per step is how a step is seen); a descriptor that only returns the
  instance's own value stands for it. Row: what the no-SDK case adds per step over bare,
  against what the pass-through adds (goal 2.0). The patched calls and ``_logic`` reads per
  step are in the facts.

Validity: with the SDK, every job made a run span and ``STEPS`` step spans, all exported (none
dropped), with metric points and nothing left in flight; with no SDK, routilux was patched; a
bare job after all the blocks emits nothing. Otherwise the script exits non-zero: it measured
nothing.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Callable, NamedTuple

from harness import (
    Case,
    EqualFloor,
    PassThrough,
    Results,
    Sdk,
    added_against_floor,
    added_cost_ratio,
    arguments,
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
from routilux.core import Flow, FlowRegistry, Routine, Runtime, get_worker_manager
from routilux.core import runtime as routilux_runtime

from opentelemetry_instrumentation_execstatus import telemetry
from opentelemetry_instrumentation_execstatus.adapters.routilux import RoutiluxAdapter

SUITE = "routilux"
FLOW_ID = "bench_chain"
STEPS = 10
SPANS_PER_JOB = STEPS + 1  # the run and its steps
WITH_SDK = "execstatus, SDK"
NO_SDK = "execstatus, no SDK"
PASS_THROUGH = "wrapt pass-through"


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


class PlainLogicAttribute:
    """What stands, in the pass-through case, for the adapter's ``Routine._logic`` (its
    ``OnImport``): a data descriptor that only hands over the instance's own value. Every read
    of ``_logic`` then pays a Python-level ``__get__``, as it does instrumented; what the
    adapter's descriptor does beyond that (look up the pending activation check, answer
    routilux's fetch with it) is its own cost. ``reads`` counts the reads, when ``counting``."""

    def __init__(self, counting: bool = False) -> None:
        self._counting = counting
        self.reads = 0

    def __get__(self, routine: Any, owner: type | None = None) -> Any:
        if routine is None:
            return self
        if self._counting:
            self.reads += 1
        try:
            return routine.__dict__["_logic"]
        except KeyError:
            raise AttributeError("_logic") from None

    def __set__(self, routine: Any, value: Any) -> None:
        routine.__dict__["_logic"] = value

    def __delete__(self, routine: Any) -> None:
        try:
            del routine.__dict__["_logic"]
        except KeyError:
            raise AttributeError("_logic") from None

    def install(self) -> None:
        Routine._logic = self  # type: ignore[attr-defined]

    def remove(self) -> None:
        if vars(Routine).get("_logic") is self:
            del Routine._logic  # type: ignore[attr-defined]


class Cases(NamedTuple):
    """Every case of the one measurement, and the equal floor its replay case is made from."""

    bare: Case
    with_sdk: Case
    floor: EqualFloor
    floor_sdk: Sdk
    no_sdk: Case
    pass_through: Case

    def all(self) -> list[Case]:
        # The floor's spans are flushed after its block, as the SDK case's are.
        replay = replace(self.floor.case(), teardown=self.floor_sdk.tracer_provider.force_flush)
        return [self.bare, self.with_sdk, replay, self.no_sdk, self.pass_through]


def cases(
    chain: Chain, counted: Counted, sdk: Sdk, floor_sdk: Sdk, pass_through: PassThrough
) -> Cases:
    """Each block starts its runtime after instrumenting and stops it before uninstrumenting;
    the SDK's queue is flushed after, so no export of one block runs during the next. The SDK
    case runs through ``counted``; its floor is recorded from it (warmed up, then one job,
    twice: both must make the same calls) on an SDK of its own, ``floor_sdk``, so that the
    SDK case's spans are counted alone."""
    logic_attribute = PlainLogicAttribute()
    floor = EqualFloor.record(
        WITH_SDK,
        floor_sdk,
        chain.run,
        units=STEPS,
        # How the recorded case is turned on and off: instrumented, then its worker started
        # (the worker's start is seen, as in the SDK case's blocks), and the reverse.
        peer=(
            lambda providers: then(instrumenting(**providers.providers), chain.start)(),
            then(chain.stop, uninstrument),
        ),
    )
    return Cases(
        bare=Case("bare", chain.run, STEPS, setup=chain.start, teardown=chain.stop),
        with_sdk=Case(
            WITH_SDK,
            counted,
            STEPS,
            setup=then(instrumenting(**sdk.providers), chain.start),
            teardown=then(chain.stop, uninstrument, sdk.tracer_provider.force_flush),
        ),
        floor=floor,
        floor_sdk=floor_sdk,
        no_sdk=Case(
            NO_SDK,
            chain.run,
            STEPS,
            setup=then(instrumenting(), chain.start),
            teardown=then(chain.stop, uninstrument),
        ),
        pass_through=Case(
            PASS_THROUGH,
            chain.run,
            STEPS,
            setup=then(pass_through.setup, logic_attribute.install, chain.start),
            teardown=then(chain.stop, logic_attribute.remove, pass_through.teardown),
        ),
    )


def pass_through_calls(chain: Chain, pass_through: PassThrough) -> dict[str, str]:
    """What the pass-through case stands for, per step: the patched calls, and the reads of
    ``Routine._logic``."""
    chain.start()
    try:
        calls = pass_through.calls_per_unit(chain.run, STEPS)
        counting = PlainLogicAttribute(counting=True)
        counting.install()
        try:
            chain.run(1)
            before = counting.reads
            chain.run(1)
            reads = (counting.reads - before) / STEPS
        finally:
            counting.remove()
    finally:
        chain.stop()
    return {
        "pass-through: patched calls per step": f"{calls:g}",
        "pass-through: Routine._logic reads per step (a plain data descriptor)": f"{reads:g}",
    }


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
    sdk, floor_sdk = Sdk.create(), Sdk.create()
    chain = Chain()
    counted = Counted(chain.run)
    pass_through = PassThrough(RoutiluxAdapter)
    timed = cases(chain, counted, sdk, floor_sdk, pass_through)
    samples = measure(timed.all(), iterations=iterations, rounds=rounds)
    rows = ratio_rows(
        samples,
        SUITE,
        "per step: instrumented vs bare",
        timed.bare.name,
        [WITH_SDK, NO_SDK, PASS_THROUGH],
        unit="step",
        note=f"a chain of {STEPS} routines passing a number on, one job per iteration",
    )
    against_floor = added_against_floor(
        samples,
        SUITE,
        "per step: added per step vs the same SDK calls",
        WITH_SDK,
        timed.floor,
        bare=timed.bare.name,
        unit="step",
    )
    against_pass_through = added_cost_ratio(
        rows, NO_SDK, PASS_THROUGH, "per step: no SDK, added per step vs a wrapt pass-through"
    )
    against_pass_through.goal = 2.0
    facts = check(timed.bare, timed.with_sdk, counted, sdk)
    facts["equal floor"] = timed.floor.describe()
    facts.update(pass_through_calls(chain, pass_through))
    sdk.shutdown()
    floor_sdk.shutdown()
    results = Results(SUITE, versions=versions("routilux"))
    results.rows += [*rows, against_floor, against_pass_through]
    results.facts.update(facts)
    finish(results, options.out)


if __name__ == "__main__":
    main()
