"""routilux 1.1: the real framework, real threads, the real SDK with in-memory exporters."""

from __future__ import annotations

import gc
import itertools
import logging
import sys
import threading
import time

import pytest
import routilux.core.hooks as routilux_hooks
import wrapt
from opentelemetry.trace import StatusCode
from routilux.core import Flow, FlowRegistry, Routine, Runtime
from routilux.core.hooks import NullExecutionHooks, set_execution_hooks
from routilux.core.manager import WorkerManager
from routilux.core.runtime import Runtime as RuntimeClass
from support import (
    EXAMPLES,
    console_points,
    console_spans,
    known_workers,
    run_example_instrumented,
    wait_until_settled,
)

from opentelemetry_instrumentation_execstatus import telemetry

sys.path.insert(0, str(EXAMPLES))
import routilux_pipeline

STEPS = ("extract", "transform", "load", "audit")
_flow_ids = itertools.count()


@pytest.fixture
def flow_id() -> str:
    return f"etl_{next(_flow_ids)}"


@pytest.fixture(autouse=True)
def _reset_user_hooks():
    yield
    routilux_hooks.reset_execution_hooks()


def _wait_for_spans(otel, count: int, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while len(otel.spans()) < count and time.monotonic() < deadline:
        time.sleep(0.005)


def _children(otel, run):
    return [
        s for s in otel.spans() if s.parent is not None and s.parent.span_id == run.context.span_id
    ]


def test_jobs_become_runs_and_routines_steps(instrument, flow_id):
    otel = instrument()
    job_ids = routilux_pipeline.run(jobs=2, flow_id=flow_id)
    wait_until_settled()

    runs = [s for s in otel.spans() if s.name == f"RUN {flow_id}"]
    assert sorted(r.attributes["cicd.pipeline.run.id"] for r in runs) == sorted(job_ids)
    assert len(otel.spans()) == 2 + 2 * len(STEPS)
    for run in runs:
        assert run.parent is None
        children = _children(otel, run)
        assert sorted(c.name for c in children) == sorted(STEPS)
        assert {c.context.trace_id for c in children} == {run.context.trace_id}
        # Failed because audit failed; ended when its last routine did, not at shutdown.
        assert run.attributes["execution.status"] == "failed"
        assert run.attributes["cicd.pipeline.result"] == "failure"
        assert run.attributes["error.type"] == "failed"
        assert run.status.status_code is StatusCode.ERROR
        assert run.end_time == max(c.end_time for c in children)
        assert [e.attributes["execution.status.to"] for e in run.events] == [
            "queued",
            "running",
            "failed",
        ]
        by_name = {c.name: c for c in children}
        audit = by_name["audit"]
        assert audit.status.status_code is StatusCode.ERROR
        assert audit.attributes["error.type"] == "ValueError"
        assert audit.attributes["cicd.pipeline.task.run.result"] == "failure"
        assert any(e.name == "exception" for e in audit.events)
        for name in ("extract", "transform", "load"):
            step = by_name[name]
            assert dict(step.attributes) == {
                "execution.orchestrator": "routilux",
                "execution.level": "step",
                "cicd.pipeline.name": flow_id,
                "cicd.pipeline.task.name": name,
                "execution.status": "succeeded",
                "execution.cached": False,
                "cicd.pipeline.task.run.result": "success",
            }
        assert by_name["extract"].end_time <= by_name["transform"].start_time

    pipeline = otel.transitions(execution_level="pipeline")
    assert set(pipeline) == {("queued", "running"), ("running", "failed")}
    assert pipeline[("queued", "running")].count == 2
    assert pipeline[("running", "failed")].count == 2
    assert pipeline[("running", "failed")].sum >= 2 * 0.06  # 20 + 30 + 10 ms of sleeps per job
    for name, minimum in (("extract", 0.02), ("transform", 0.03), ("load", 0.01)):
        ((key, point),) = otel.transitions(cicd_pipeline_task_name=name).items()
        assert key == ("running", "succeeded")
        assert point.count == 2
        assert 2 * minimum <= point.sum < 2 * minimum + 5.0
        assert point.attributes["cicd.pipeline.name"] == flow_id
    assert set(otel.transitions(cicd_pipeline_task_name="audit")) == {("running", "failed")}
    assert set(otel.sums("execution.active").values()) == {0}


def test_worker_counters(instrument, flow_id):
    otel = instrument()
    routilux_pipeline.run(jobs=2, flow_id=flow_id)
    wait_until_settled()

    def by(metric, key):
        return {dict(k)[key]: v for k, v in otel.sums(metric).items()}

    assert by("execution.worker.spawns", "execution.worker.outcome") == {"success": 2}
    assert by("execution.worker.health_checks", "execution.worker.health.result") == {"pass": 2}
    assert by("execution.worker.drains", "execution.worker.outcome") == {"success": 2}
    (drain,) = otel.points("execution.worker.drain.duration")
    assert drain.count == 2
    counts = by("execution.worker.count", "cicd.worker.state")
    assert counts.get("available") == 0 and counts.get("busy", 0) == 0
    assert {dict(k)["execution.orchestrator"] for k in otel.sums("execution.worker.spawns")} == {
        "routilux"
    }


def test_worker_timeout_is_a_failed_health_check(instrument, flow_id):
    otel = instrument()

    class Slow(Routine):
        def __init__(self) -> None:
            super().__init__()
            self.add_slot("trigger")
            self.set_activation_policy(routilux_pipeline._take_new("trigger"))

        def logic(self, trigger, **_):
            done.wait(5)

    done = threading.Event()
    flow = Flow(flow_id=flow_id, execution_timeout=0.3)
    flow.add_routine(Slow(), "slow")
    FlowRegistry.get_instance().register_by_name(flow_id, flow)
    with Runtime(thread_pool_size=2) as runtime:
        worker_state, _ = runtime.post(flow_id, "slow", "trigger", {})
        assert worker_state.wait_for_completion(flow, worker_state, timeout=5)
        done.set()
    wait_until_settled()
    results = {
        dict(k)["execution.worker.health.result"]: v
        for k, v in otel.sums("execution.worker.health_checks").items()
    }
    assert results == {"fail": 1}
    (run,) = [s for s in otel.spans() if s.name == f"RUN {flow_id}"]
    assert run.attributes["execution.status"] == "succeeded"  # its one routine did finish


class _Stopped(Routine):
    """Its logic is stopped from outside (Ctrl-C, ``sys.exit``) while it runs."""

    def __init__(self, interrupt: type[BaseException]) -> None:
        super().__init__()
        self.interrupt = interrupt
        self.add_slot("trigger")
        self.set_activation_policy(routilux_pipeline._take_new("trigger"))

    def logic(self, trigger, **_):
        raise self.interrupt("stopped")


@pytest.mark.parametrize("interrupt", [KeyboardInterrupt, SystemExit])
def test_an_interrupted_routine_is_a_cancelled_step_of_a_cancelled_job(
    instrument, flow_id, interrupt
):
    """routilux catches exceptions only: the interrupt leaves the routine's activation check
    and ends in the thread pool's future, with no on_routine_end, log or error handler."""
    otel = instrument()
    flow = Flow(flow_id=flow_id)
    flow.add_routine(_Stopped(interrupt), "stopped")
    FlowRegistry.get_instance().register_by_name(flow_id, flow)
    with Runtime(thread_pool_size=2) as runtime:
        runtime.post(flow_id, "stopped", "trigger", {})
        _wait_for_spans(otel, 1)
    wait_until_settled()

    step, run = otel.span("stopped"), otel.span(f"RUN {flow_id}")
    assert step.parent.span_id == run.context.span_id
    for span in (step, run):
        assert span.attributes["execution.status"] == "cancelled"
        assert "error.type" not in span.attributes
        assert span.status.status_code is not StatusCode.ERROR
    assert not [e for e in step.events if e.name == "exception"]
    assert set(otel.transitions(execution_level="step")) == {("running", "cancelled")}
    assert run.end_time == step.end_time  # the job's work ended with its interrupted routine


def test_a_coroutine_logic_is_a_step_that_ends_with_its_call(instrument, flow_id):
    """routilux calls a logic and drops its result: an ``async def`` logic never runs, and its
    step ends when the call returns, as for any logic."""
    otel = instrument()

    class Async(Routine):
        def __init__(self) -> None:
            super().__init__()
            self.add_slot("trigger")
            self.set_activation_policy(routilux_pipeline._take_new("trigger"))

        async def logic(self, trigger, **_):
            ran.set()

    ran = threading.Event()
    flow = Flow(flow_id=flow_id)
    flow.add_routine(Async(), "never_awaited")
    FlowRegistry.get_instance().register_by_name(flow_id, flow)

    def run_once() -> None:
        with Runtime(thread_pool_size=2) as runtime:
            runtime.post(flow_id, "never_awaited", "trigger", {})
            _wait_for_spans(otel, 1)
        wait_until_settled()
        gc.collect()

    with pytest.warns(RuntimeWarning, match="'.*Async.logic' was never awaited"):
        run_once()  # the user's own coroutine is reported, as without us
    assert not ran.is_set()
    assert otel.span("never_awaited").attributes["execution.status"] == "succeeded"
    assert otel.span(f"RUN {flow_id}").attributes["execution.status"] == "succeeded"


def test_user_hooks_keep_working_and_breakpoint_gate_keeps_its_value(instrument, flow_id):
    otel = instrument()
    seen: list[tuple[str, str]] = []

    class UserHooks(NullExecutionHooks):
        def on_job_start(self, job_context, worker_state):
            seen.append(("job_start", job_context.job_id))

        def on_routine_start(self, routine_id, worker_state, job_context=None):
            seen.append(("routine_start", routine_id))
            return False  # a breakpoint: the routine must not run

    user_hooks = UserHooks()
    set_execution_hooks(user_hooks)
    hooks = routilux_hooks.get_execution_hooks()  # as routilux call sites fetch it
    assert isinstance(hooks, UserHooks)
    assert hooks.__wrapped__ is user_hooks
    assert hooks.on_routine_start("x", None) is False

    routilux_pipeline.build_flow(flow_id)
    with Runtime(thread_pool_size=2) as runtime:
        worker_state, job = runtime.post(flow_id, "extract", "trigger", {})
        flow = FlowRegistry.get_instance().get_by_name(flow_id)
        assert worker_state.wait_for_completion(flow, worker_state, timeout=5)
    wait_until_settled()
    assert ("job_start", job.job_id) in seen
    assert ("routine_start", "extract") in seen
    assert [s.name for s in otel.spans()] == [f"RUN {flow_id}"]  # no step ran
    assert otel.span(f"RUN {flow_id}").attributes["execution.status"] == "cancelled"


def test_explicitly_completed_job_keeps_the_users_status(instrument, flow_id):
    otel = instrument()
    routilux_pipeline.build_flow(flow_id)
    runtime = Runtime(thread_pool_size=2)
    try:
        _, job = runtime.post(flow_id, "extract", "trigger", {})
        for _ in range(routilux_pipeline.TERMINAL_ROUTINES):
            assert routilux_pipeline.FINISHED.acquire(timeout=10)
        _wait_for_spans(otel, 4)  # every routine has returned
        assert runtime.complete_job(job.job_id, status="completed")
    finally:
        runtime.shutdown(wait=True)
    run = otel.span(f"RUN {flow_id}")
    assert run.attributes["execution.status"] == "succeeded"
    assert run.status.status_code is StatusCode.UNSET


def test_concurrent_jobs_keep_their_own_parentage(instrument, flow_id):
    otel = instrument()
    job_ids = routilux_pipeline.run(jobs=12, flow_id=flow_id)
    wait_until_settled()
    runs = {
        s.attributes["cicd.pipeline.run.id"]: s for s in otel.spans() if s.name.startswith("RUN ")
    }
    assert sorted(runs) == sorted(job_ids)
    for run in runs.values():
        assert sorted(c.name for c in _children(otel, run)) == sorted(STEPS)
    assert len(otel.spans()) == 12 * 5
    live = telemetry.current()
    assert live.tracker.in_flight_count() == 0
    assert known_workers(live) == 0


def test_uninstrument_restores_every_patched_attribute(instrument, flow_id):
    originals = {
        "get_execution_hooks": routilux_hooks.__dict__["get_execution_hooks"],
        "_check_routine_activation": RuntimeClass.__dict__["_check_routine_activation"],
        "shutdown": RuntimeClass.__dict__["shutdown"],
        "start_worker": WorkerManager.__dict__["start_worker"],
    }
    otel = instrument()
    assert isinstance(routilux_hooks.__dict__["get_execution_hooks"], wrapt.FunctionWrapper)
    assert isinstance(RuntimeClass.__dict__["_check_routine_activation"], wrapt.FunctionWrapper)
    from opentelemetry_instrumentation_execstatus import ExecStatusInstrumentor

    ExecStatusInstrumentor().uninstrument()
    assert routilux_hooks.__dict__["get_execution_hooks"] is originals["get_execution_hooks"]
    assert (
        RuntimeClass.__dict__["_check_routine_activation"] is originals["_check_routine_activation"]
    )
    assert RuntimeClass.__dict__["shutdown"] is originals["shutdown"]
    assert WorkerManager.__dict__["start_worker"] is originals["start_worker"]
    routilux_pipeline.run(jobs=1, flow_id=flow_id)
    assert otel.spans() == []
    instrument()  # instrumenting again patches again
    assert isinstance(RuntimeClass.__dict__["_check_routine_activation"], wrapt.FunctionWrapper)


def test_instrumentation_errors_never_reach_the_pipeline(
    otel, instrument, flow_id, caplog, monkeypatch
):
    def broken(*args, **kwargs):
        raise RuntimeError("instrumentation bug")

    # The tracer the instrumentation is given fails every span it starts.
    broken_tracer = type("T", (), {"start_span": broken})()
    monkeypatch.setattr(otel.tracer_provider, "get_tracer", lambda *a, **k: broken_tracer)
    instrument()
    monkeypatch.setattr(type(telemetry.current().workers), "set_state", lambda *a, **k: broken())
    caplog.set_level(logging.WARNING)
    routilux_pipeline.run(jobs=2, flow_id=flow_id)  # completes exactly as without us

    def logged_routine_errors():
        return [r for r in caplog.records if r.getMessage().startswith("Error in routine logic")]

    # routilux logs audit's exception on the worker's thread just after audit has signalled
    # the end of its job: wait for both jobs' lines.
    deadline = time.monotonic() + 5.0
    while len(logged_routine_errors()) < 2 and time.monotonic() < deadline:
        time.sleep(0.005)
    routine_errors = logged_routine_errors()
    assert len(routine_errors) == 2  # routilux still sees and logs audit's own exception
    for record in routine_errors:
        error = record.exc_info[1]
        assert type(error) is ValueError and str(error) == "audit rejected the batch"
        frames = []
        tb = error.__traceback__
        while tb is not None:
            frames.append(tb.tb_frame.f_code.co_name)
            tb = tb.tb_next
        assert frames[-1] == "logic"
    ours = [r for r in caplog.records if "execstatus instrumentation error" in r.getMessage()]
    assert ours, "the internal error is reported"
    assert len({r.getMessage() for r in ours}) == len(ours)  # once per place
    assert otel.spans() == []


def test_zero_code_under_opentelemetry_instrument():
    documents = run_example_instrumented("routilux_pipeline.py")

    spans = console_spans(documents)
    (run,) = [s for s in spans if s["name"] == "RUN nightly_etl"]
    steps = [s for s in spans if s["parent_id"] == run["context"]["span_id"]]
    assert sorted(s["name"] for s in steps) == sorted(STEPS)
    pipeline_moves = {
        (p["attributes"]["execution.status.from"], p["attributes"]["execution.status.to"])
        for p in console_points(documents, "execution.status_transition.duration")
        if p["attributes"]["execution.level"] == "pipeline"
    }
    assert pipeline_moves == {("queued", "running"), ("running", "failed")}
    spawns = console_points(documents, "execution.worker.spawns")
    assert [p["value"] for p in spawns] == [1]
