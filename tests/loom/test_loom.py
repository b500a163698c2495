"""loom-kernel 9: the real executor, thread dispatcher and polars file I/O, the real SDK."""

from __future__ import annotations

import logging
import sys
import threading
from collections import Counter
from functools import partial
from pathlib import Path
from typing import Any, Callable, ClassVar

import polars as pl
import pytest
import wrapt
from loom.core.observability.runtime import ObservabilityRuntime
from loom.etl import ETLPipeline, ETLProcess, ETLStep, Format, IntoFile
from loom.etl.compiler import ETLCompiler
from loom.etl.executor._executor import ETLExecutor
from opentelemetry.trace import StatusCode
from support import EXAMPLES, console_points, console_spans, run_example_instrumented

from opentelemetry_instrumentation_execstatus import ExecStatusInstrumentor, telemetry

sys.path.insert(0, str(EXAMPLES))
import loom_pipeline
from loom_pipeline import OrdersParams

PIPELINE = "NightlyOrders"
STAGE_OF = {
    "ExtractOrders": "StageOrders",
    "TotalByCountry": "StageOrders",
    "CountOrders": "StageOrders",
    "WriteReport": "BuildReport",
}
PARALLEL = ("TotalByCountry", "CountOrders")


class Recorder:
    """A user's loom observer: every lifecycle event, with the thread it was emitted on."""

    def __init__(self) -> None:
        self.events: list[tuple[Any, str]] = []

    def on_event(self, event: Any) -> None:
        self.events.append((event, threading.current_thread().name))

    def ids(self, scope: str) -> dict[str, str]:
        """loom's own id of each pipeline, process or step, by name."""
        starts = [e for e, _ in self.events if e.scope == scope and e.kind == "start"]
        found = {e.name: e.id for e in starts}
        assert len(found) == len(starts)
        return found

    def shape(self) -> Counter:
        return Counter((str(e.scope), str(e.kind), e.name) for e, _ in self.events)


def _run(
    tmp_path: Path, recorder: Recorder | None = None, tracer: Any = None, **options: Any
) -> None:
    runtime = ObservabilityRuntime([recorder or Recorder()], tracer=tracer)
    loom_pipeline.run(str(tmp_path), observability=runtime, **options)


def _ours(otel) -> dict[str, Any]:
    spans = [s for s in otel.spans() if s.attributes.get("execution.orchestrator") == "loom"]
    by_name = {s.name: s for s in spans}
    assert len(by_name) == len(spans), [s.name for s in spans]
    return by_name


def _parent_name(spans: dict[str, Any], span: Any) -> str | None:
    if span.parent is None:
        return None
    (parent,) = [s for s in spans.values() if s.context.span_id == span.parent.span_id]
    return parent.name


def _statuses(span: Any) -> list[str]:
    return [
        e.attributes["execution.status.to"]
        for e in span.events
        if e.name == "execution.status_change"
    ]


def test_run_becomes_pipeline_stage_and_step_spans(instrument, tmp_path):
    otel = instrument()
    recorder = Recorder()
    _run(tmp_path, recorder, correlation_id="orders-2024-06-01", attempt=2)

    spans = _ours(otel)
    assert sorted(spans) == sorted([f"RUN {PIPELINE}", "StageOrders", "BuildReport", *STAGE_OF])
    assert len(otel.spans()) == 7
    run = spans[f"RUN {PIPELINE}"]
    (run_id,) = recorder.ids("pipeline").values()
    assert run.parent is None
    assert dict(run.attributes) == {
        "execution.orchestrator": "loom",
        "execution.level": "pipeline",
        "cicd.pipeline.name": PIPELINE,
        "cicd.pipeline.run.id": run_id,
        "execution.attempt": 2,
        "execution.correlation_id": "orders-2024-06-01",
        "execution.status": "succeeded",
        "execution.cached": False,
        "cicd.pipeline.result": "success",
    }
    assert _statuses(run) == ["running", "succeeded"]
    assert run.status.status_code is StatusCode.UNSET

    process_ids = recorder.ids("process")
    step_ids = recorder.ids("step")
    for name in ("StageOrders", "BuildReport"):
        assert _parent_name(spans, spans[name]) == run.name
        assert dict(spans[name].attributes) == {
            "execution.orchestrator": "loom",
            "execution.level": "stage",
            "cicd.pipeline.name": PIPELINE,
            "cicd.pipeline.task.name": name,
            "cicd.pipeline.task.run.id": process_ids[name],
            "execution.attempt": 2,
            "execution.correlation_id": "orders-2024-06-01",
            "execution.status": "succeeded",
            "execution.cached": False,
            "cicd.pipeline.task.run.result": "success",
        }
    for name, stage in STAGE_OF.items():
        step = spans[name]
        assert _parent_name(spans, step) == stage
        assert step.attributes["execution.level"] == "step"
        assert step.attributes["cicd.pipeline.task.run.id"] == step_ids[name]
        assert step.attributes["execution.attempt"] == 2
        assert step.attributes["execution.correlation_id"] == "orders-2024-06-01"
        assert step.attributes["execution.status"] == "succeeded"
    assert {s.context.trace_id for s in spans.values()} == {run.context.trace_id}
    # The parallel steps really ran on the dispatcher's pool threads, and still nest right.
    started_on = {e.name: t for e, t in recorder.events if e.scope == "step" and e.kind == "start"}
    assert all(started_on[name] != "MainThread" for name in PARALLEL)
    assert started_on["ExtractOrders"] == "MainThread"

    for level, count in (("pipeline", 1), ("stage", 2), ("step", 4)):
        assert otel.transition_counts(execution_level=level) == {("running", "succeeded"): count}
    for name in STAGE_OF:
        ((key, point),) = otel.transitions(cicd_pipeline_task_name=name).items()
        assert key == ("running", "succeeded")
        assert point.attributes["cicd.pipeline.name"] == PIPELINE
    assert set(otel.sums("execution.active").values()) == {0}
    assert telemetry.current().tracker.in_flight_count() == 0


def test_failing_step_fails_its_stage_and_run(instrument, tmp_path):
    otel = instrument()
    with pytest.raises(ValueError, match="totals rejected") as raised:
        _run(tmp_path, reject_totals=True)
    tb = raised.value.__traceback__
    while tb.tb_next is not None:
        tb = tb.tb_next
    assert tb.tb_frame.f_code.co_name == "execute"  # the step's own frame, unchanged

    spans = _ours(otel)
    # The sibling parallel step still ran (loom runs a whole group); BuildReport never started.
    assert sorted(spans) == sorted(
        [f"RUN {PIPELINE}", "StageOrders", "ExtractOrders", "TotalByCountry", "CountOrders"]
    )
    for name in (f"RUN {PIPELINE}", "StageOrders", "TotalByCountry"):
        span = spans[name]
        assert span.attributes["execution.status"] == "failed"
        assert span.attributes["error.type"] == "ValueError"
        assert span.status.status_code is StatusCode.ERROR
        (exception,) = [e for e in span.events if e.name == "exception"]
        assert exception.attributes["exception.message"] == str(raised.value)
        assert _statuses(span) == ["running", "failed"]
    assert spans[f"RUN {PIPELINE}"].attributes["cicd.pipeline.result"] == "failure"
    assert spans["StageOrders"].attributes["cicd.pipeline.task.run.result"] == "failure"
    for name in ("ExtractOrders", "CountOrders"):
        assert spans[name].attributes["execution.status"] == "succeeded"
        assert "error.type" not in spans[name].attributes
    assert _parent_name(spans, spans["TotalByCountry"]) == "StageOrders"

    assert otel.transition_counts(execution_level="pipeline") == {("running", "failed"): 1}
    assert otel.transition_counts(execution_level="stage") == {("running", "failed"): 1}
    assert otel.transition_counts(execution_level="step") == {
        ("running", "succeeded"): 2,
        ("running", "failed"): 1,
    }
    assert set(otel.sums("execution.active").values()) == {0}


class Hooked(ETLStep[OrdersParams]):
    """Calls ``action``, set by a test, as its work."""

    target = IntoFile("{out_dir}/hooked.csv", format=Format.CSV)
    action: ClassVar[Callable[[], None]]

    def execute(self, params: OrdersParams) -> pl.LazyFrame:
        type(self).action()
        return pl.LazyFrame({"done": [True]})


class HookedStage(ETLProcess[OrdersParams]):
    steps: ClassVar[list[Any]] = [
        loom_pipeline.ExtractOrders,
        [Hooked, loom_pipeline.CountOrders],
    ]


class HookedRun(ETLPipeline[OrdersParams]):
    processes: ClassVar[list[Any]] = [HookedStage]


class LateStage(ETLProcess[OrdersParams]):
    steps: ClassVar[list[Any]] = [Hooked]


class LateRun(ETLPipeline[OrdersParams]):
    processes: ClassVar[list[Any]] = [LateStage, loom_pipeline.StageOrders]


def _run_hooked(
    tmp_path: Path,
    pipeline: type,
    action: Callable[[], None],
    monkeypatch,
    observability: ObservabilityRuntime | None = None,
) -> None:
    monkeypatch.setattr(Hooked, "action", staticmethod(action), raising=False)
    directory = str(tmp_path)
    runner = loom_pipeline.ETLRunner(
        loom_pipeline.PolarsSourceReader(directory),
        loom_pipeline.PolarsTargetWriter(directory),
        observability,
    )
    runner.run(pipeline, OrdersParams(out_dir=directory))


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (LookupError("no such partition"), "failed"),
        (KeyboardInterrupt(), "cancelled"),
        (SystemExit(3), "cancelled"),
    ],
)
def test_exception_passes_through_and_ends_every_level(
    instrument, tmp_path, monkeypatch, error, status
):
    otel = instrument()

    def fail() -> None:
        raise error

    with pytest.raises(type(error)) as raised:
        _run_hooked(tmp_path, HookedRun, fail, monkeypatch)
    assert raised.value is error

    spans = _ours(otel)
    assert spans["CountOrders"].attributes["execution.status"] == "succeeded"
    for name in ("RUN HookedRun", "HookedStage", "Hooked"):
        assert spans[name].attributes["execution.status"] == status
        assert _statuses(spans[name]) == ["running", status]
    if status == "failed":
        assert spans["Hooked"].attributes["error.type"] == "LookupError"
    else:  # loom emits no event at all for an interrupt: ended as the call unwinds
        assert spans["RUN HookedRun"].attributes["cicd.pipeline.result"] == "cancellation"
        assert "error.type" not in spans["Hooked"].attributes
    assert otel.transition_counts(execution_level="pipeline") == {("running", status): 1}
    assert otel.transition_counts(cicd_pipeline_task_name="HookedStage") == {("running", status): 1}
    assert otel.transition_counts(cicd_pipeline_task_name="Hooked") == {("running", status): 1}
    assert set(otel.sums("execution.active").values()) == {0}
    assert telemetry.current().tracker.in_flight_count() == 0


@pytest.mark.parametrize("interrupt", [KeyboardInterrupt(), SystemExit(3)])
def test_interrupt_in_a_sequential_step_cancels_every_level_it_unwinds(
    instrument, tmp_path, monkeypatch, interrupt
):
    """The interrupt rule on the main thread: the step, its process and its pipeline end
    ``cancelled``, with no ``error.type``; the process after it never starts."""
    otel = instrument()

    def stop() -> None:
        raise interrupt

    with pytest.raises(type(interrupt)) as raised:
        _run_hooked(tmp_path, LateRun, stop, monkeypatch)
    assert raised.value is interrupt

    spans = _ours(otel)
    assert sorted(spans) == ["Hooked", "LateStage", "RUN LateRun"]
    for span in spans.values():
        assert span.attributes["execution.status"] == "cancelled"
        assert "error.type" not in span.attributes
        assert not [e for e in span.events if e.name == "exception"]
        assert span.status.status_code is StatusCode.UNSET
        assert _statuses(span) == ["running", "cancelled"]
    assert spans["RUN LateRun"].attributes["cicd.pipeline.result"] == "cancellation"
    assert spans["LateStage"].attributes["cicd.pipeline.task.run.result"] == "cancellation"
    for level in ("pipeline", "stage", "step"):
        assert otel.transition_counts(execution_level=level) == {("running", "cancelled"): 1}
    assert set(otel.sums("execution.active").values()) == {0}
    assert telemetry.current().tracker.in_flight_count() == 0


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (LookupError("no such partition"), "failed"),
        (KeyboardInterrupt(), "cancelled"),
        (SystemExit(3), "cancelled"),
    ],
)
@pytest.mark.parametrize("scope", ["process", "step"])
def test_a_process_or_step_run_on_its_own_ends_by_its_outcome(
    instrument, tmp_path, monkeypatch, scope, error, status
):
    """``ETLExecutor.run_process`` / ``run_step`` called directly, under the caller's span."""
    otel = instrument()

    def fail() -> None:
        raise error

    monkeypatch.setattr(Hooked, "action", staticmethod(fail), raising=False)
    directory = str(tmp_path)
    params = OrdersParams(out_dir=directory)
    executor = ETLExecutor(
        loom_pipeline.PolarsSourceReader(directory), loom_pipeline.PolarsTargetWriter(directory)
    )
    compiler = ETLCompiler()
    if scope == "process":
        run = partial(executor.run_process, compiler.compile_process(LateStage), params)
    else:
        run = partial(executor.run_step, compiler.compile_step(Hooked), params)
    tracer = otel.tracer_provider.get_tracer("app")
    with tracer.start_as_current_span("caller") as caller, pytest.raises(type(error)) as raised:
        run()
    assert raised.value is error

    spans = _ours(otel)
    outermost = "LateStage" if scope == "process" else "Hooked"
    assert sorted(spans) == sorted({"Hooked", outermost})
    assert spans[outermost].parent.span_id == caller.get_span_context().span_id
    for span in spans.values():
        assert span.attributes["execution.status"] == status
        if status == "failed":
            assert span.attributes["error.type"] == "LookupError"
            assert span.status.status_code is StatusCode.ERROR
        else:
            assert "error.type" not in span.attributes
            assert not [e for e in span.events if e.name == "exception"]
            assert span.status.status_code is StatusCode.UNSET
    assert otel.transition_counts(execution_level="step") == {("running", status): 1}
    assert telemetry.current().tracker.in_flight_count() == 0


class Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("unprintable")


def test_step_left_without_its_error_event_still_ends(instrument, tmp_path, monkeypatch):
    """loom builds the ERROR event with ``str(exc)``: when that raises, no event is emitted."""
    otel = instrument()
    recorder = Recorder()

    def fail() -> None:
        raise Unprintable

    with pytest.raises(RuntimeError, match="unprintable"):  # loom's doing, not ours
        _run_hooked(tmp_path, HookedRun, fail, monkeypatch, ObservabilityRuntime([recorder]))
    assert not [e for e, _ in recorder.events if e.name == "Hooked" and e.kind != "start"]

    spans = _ours(otel)
    assert spans["Hooked"].attributes["execution.status"] == "failed"
    assert spans["Hooked"].attributes["error.type"] == "RuntimeError"
    assert spans["RUN HookedRun"].attributes["execution.status"] == "failed"
    assert telemetry.current().tracker.in_flight_count() == 0


def test_instrumenting_mid_run_starts_no_span_from_an_end(instrument, tmp_path, monkeypatch):
    """Executions whose START came before ``instrument()`` are not tracked; later ones are."""
    otel = None

    def instrument_now() -> None:
        nonlocal otel
        otel = instrument()

    _run_hooked(tmp_path, LateRun, instrument_now, monkeypatch)
    spans = _ours(otel)
    assert sorted(spans) == sorted(
        ["StageOrders", "ExtractOrders", "TotalByCountry", "CountOrders"]
    )
    assert spans["StageOrders"].parent is None  # its run was never seen
    assert otel.transition_counts(execution_level="pipeline") == {}
    assert telemetry.current().tracker.in_flight_count() == 0


def test_callers_span_parents_the_run(instrument, tmp_path):
    otel = instrument()
    with otel.tracer_provider.get_tracer("app").start_as_current_span("nightly job") as outer:
        _run(tmp_path)
    spans = _ours(otel)
    run = spans[f"RUN {PIPELINE}"]
    assert run.parent is not None and run.parent.span_id == outer.get_span_context().span_id
    assert _parent_name(spans, spans["StageOrders"]) == run.name


def test_user_observer_receives_every_event_unchanged(instrument, tmp_path):
    plain = Recorder()
    _run(tmp_path, plain, correlation_id="c")
    instrument()
    observed = Recorder()
    _run(tmp_path, observed, correlation_id="c")
    assert observed.shape() == plain.shape()
    assert sum(observed.shape().values()) == 2 * (1 + 2 + 4)
    for event, _ in observed.events:
        assert event.correlation_id == "c"
        assert event.id is not None


def test_loom_tracing_itself_gets_no_second_set_of_spans(instrument, tmp_path):
    otel = instrument()
    loom_tracer = otel.tracer_provider.get_tracer("loom")
    with pytest.raises(ValueError, match="totals rejected"):
        _run(tmp_path, tracer=loom_tracer, reject_totals=True)
    _run(tmp_path, tracer=loom_tracer)

    names = Counter(s.name for s in otel.spans())
    assert names == Counter(
        {
            f"pipeline:{PIPELINE}": 2,
            "process:StageOrders": 2,
            "process:BuildReport": 1,
            "step:ExtractOrders": 2,
            "step:TotalByCountry": 2,
            "step:CountOrders": 2,
            "step:WriteReport": 1,
        }
    )
    assert _ours(otel) == {}
    # Exemplars lead to loom's own spans (read first: a collection hands them out once).
    points = otel.points("execution.status_transition.duration")
    exemplar_spans = {x.span_id for point in points for x in point.exemplars}
    assert exemplar_spans and exemplar_spans <= {s.context.span_id for s in otel.spans()}
    assert otel.transition_counts(execution_level="pipeline", cicd_pipeline_name=PIPELINE) == {
        ("running", "failed"): 1,
        ("running", "succeeded"): 1,
    }
    assert otel.transition_counts(execution_level="stage") == {
        ("running", "failed"): 1,
        ("running", "succeeded"): 2,
    }
    assert otel.transition_counts(execution_level="step") == {
        ("running", "failed"): 1,
        ("running", "succeeded"): 6,
    }
    assert telemetry.current().tracker.in_flight_count() == 0


def test_uninstrument_restores_the_originals(instrument, tmp_path):
    patched = {
        ObservabilityRuntime: ("emit",),
        ETLExecutor: ("run_pipeline", "run_process", "run_step"),
    }
    originals = {
        (owner, name): owner.__dict__[name] for owner, names in patched.items() for name in names
    }
    otel = instrument()
    for owner, name in originals:
        assert isinstance(owner.__dict__[name], wrapt.FunctionWrapper)
    ExecStatusInstrumentor().uninstrument()
    for (owner, name), original in originals.items():
        assert owner.__dict__[name] is original
    _run(tmp_path)
    assert otel.spans() == []
    instrument()  # instrumenting again patches again
    assert isinstance(ObservabilityRuntime.__dict__["emit"], wrapt.FunctionWrapper)


def test_instrumentation_errors_never_reach_the_pipeline(instrument, tmp_path, caplog, monkeypatch):
    otel = instrument()

    def broken(*args, **kwargs):
        raise RuntimeError("instrumentation bug")

    monkeypatch.setattr(telemetry.current().tracker, "transition", broken)
    caplog.set_level(logging.WARNING)
    recorder = Recorder()
    _run(tmp_path, recorder)
    with pytest.raises(ValueError, match="totals rejected"):
        _run(tmp_path, recorder, reject_totals=True)
    assert sum(recorder.shape().values()) == 14 + 10
    ours = [r for r in caplog.records if "execstatus instrumentation error" in r.getMessage()]
    assert ours and len({r.getMessage() for r in ours}) == len(ours)  # once per place
    assert otel.spans() == []


def test_a_repeated_run_id_is_a_new_run_each_time(instrument, tmp_path):
    """loom's run id comes from the caller: a retry under the same id is a run of its own."""
    otel = instrument()
    with pytest.raises(ValueError, match="totals rejected"):
        _run(tmp_path, run_id="orders-2024-06-01", attempt=1, reject_totals=True)
    _run(tmp_path, run_id="orders-2024-06-01", attempt=2)

    runs = sorted(
        (s for s in otel.spans() if s.name == f"RUN {PIPELINE}"), key=lambda s: s.start_time
    )
    assert [
        (r.attributes["cicd.pipeline.run.id"], r.attributes["execution.attempt"]) for r in runs
    ] == [("orders-2024-06-01", 1), ("orders-2024-06-01", 2)]
    assert [r.attributes["execution.status"] for r in runs] == ["failed", "succeeded"]
    retry_stages = [
        s.name
        for s in otel.spans()
        if s.parent is not None and s.parent.span_id == runs[1].context.span_id
    ]
    assert sorted(retry_stages) == ["BuildReport", "StageOrders"]


def test_zero_code_under_opentelemetry_instrument():
    documents = run_example_instrumented("loom_pipeline.py")
    spans = console_spans(documents)

    runs = sorted(
        (s for s in spans if s["name"] == f"RUN {PIPELINE}"),
        key=lambda s: s["attributes"]["execution.attempt"],
    )
    assert [r["attributes"]["execution.status"] for r in runs] == ["failed", "succeeded"]
    assert {r["attributes"]["execution.correlation_id"] for r in runs} == {"orders-2024-06-01"}
    assert runs[0]["attributes"]["error.type"] == "ValueError"
    by_id = {s["context"]["span_id"]: s for s in spans}
    retry = runs[1]
    children = {
        s["name"]: s for s in spans if s["context"]["trace_id"] == retry["context"]["trace_id"]
    }
    assert sorted(children) == sorted([retry["name"], "StageOrders", "BuildReport", *STAGE_OF])
    for name, stage in STAGE_OF.items():
        assert by_id[children[name]["parent_id"]]["name"] == stage
        assert by_id[children[stage]["parent_id"]] is retry
    assert retry["parent_id"] is None

    transitions = {
        (
            p["attributes"]["execution.level"],
            p["attributes"]["execution.status.from"],
            p["attributes"]["execution.status.to"],
        )
        for p in console_points(documents, "execution.status_transition.duration")
    }
    assert transitions == {
        (level, "running", to)
        for level in ("pipeline", "stage", "step")
        for to in ("succeeded", "failed")
    }
