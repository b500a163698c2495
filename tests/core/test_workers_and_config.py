"""Worker counters through the public API, configuration, and the instrumentor itself."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import traceback
from importlib.metadata import entry_points

import pytest
from opentelemetry.instrumentation.utils import suppress_instrumentation
from support import known_workers

from opentelemetry_instrumentation_execstatus import ExecStatusInstrumentor, api, telemetry
from opentelemetry_instrumentation_execstatus.config import ExecStatusConfig
from opentelemetry_instrumentation_execstatus.semconv import (
    WORKER_STATE_ALIASES,
    HealthResult,
    SpawnFailureReason,
    WorkerOutcome,
    WorkerState,
)


def _attribute_values(otel, metric, key):
    return {p.attributes[key] for p in otel.points(metric) if key in p.attributes}


def test_spawn_counter_with_bounded_failure_reasons(instrument):
    otel = instrument()
    api.report_worker_spawn(success=True)
    api.report_worker_spawn(success=False, reason="pod_ready")
    api.report_worker_spawn(success=False, reason="  POD_READY ")
    api.report_worker_spawn(success=False, reason="a brand new reason")
    api.report_worker_spawn(success=False)
    assert otel.spawns() == {
        ("success", None): 1,
        ("failure", "pod_ready"): 2,
        ("failure", "other"): 1,
        ("failure", "unknown"): 1,
    }
    (_, scope) = otel.metric("execution.worker.spawns")
    assert otel.metric("execution.worker.spawns")[0].unit == "{spawn}"
    assert scope.name == "opentelemetry_instrumentation_execstatus"


def test_spawn_failure_reason_normalisation(instrument):
    otel = instrument()
    for reason in (None, "", "   ", "unknown", SpawnFailureReason.UNKNOWN):
        api.report_worker_spawn(False, reason)  # no reason given: unknown
    for reason in ("Kubernetes said no", 42, ValueError("pod_ready"), "other"):
        api.report_worker_spawn(False, reason)  # a reason, not ours: other
    api.report_worker_spawn(False, SpawnFailureReason.GRPC_CONNECT)
    api.report_worker_spawn("FAILURE", "Context_Canceled")
    api.report_worker_spawn(" failure ", "SECRET_READ")  # a member's name works too
    api.report_worker_spawn(True, "pod_ready")  # a success never carries a reason
    api.report_worker_spawn(WorkerOutcome.SUCCESS, "")
    assert otel.spawns() == {
        ("failure", "unknown"): 5,
        ("failure", "other"): 4,
        ("failure", "grpc_connect"): 1,
        ("failure", "context_canceled"): 1,
        ("failure", "secret_read"): 1,
        ("success", None): 2,
    }


@pytest.mark.parametrize("outcome", ["", "  ", None, "maybe", 1, "succeeded"])
def test_spawn_without_a_recognised_outcome_is_dropped(instrument, outcome):
    otel = instrument()
    api.report_worker_spawn(outcome, "pod_ready")
    api.report_worker_spawn(True)
    assert otel.spawns() == {("success", None): 1}


def test_health_checks_skip_cancelled_probes(instrument):
    otel = instrument()
    api.report_worker_health_check(True)
    api.report_worker_health_check(False)
    api.report_worker_health_check(" PASS ")
    api.report_worker_health_check(HealthResult.FAIL)
    api.report_worker_health_check(False, cancelled=True)
    api.report_worker_health_check(True, cancelled=True)
    assert otel.sums_by("execution.worker.health_checks", "execution.worker.health.result") == {
        "pass": 2,
        "fail": 2,
    }
    assert otel.metric("execution.worker.health_checks")[0].unit == "{check}"


def test_health_check_context_manager_counts_its_verdict(instrument):
    otel = instrument()
    with api.health_check() as probe:
        assert isinstance(probe, api.HealthProbe)
        assert probe.passed
    with api.health_check() as probe:
        probe.failed()  # the worker answered "unhealthy": no exception needed
        assert not probe.passed
    error = ConnectionError("no answer")
    with pytest.raises(ConnectionError) as caught, api.health_check():
        raise error
    assert caught.value is error
    assert otel.sums_by("execution.worker.health_checks", "execution.worker.health.result") == {
        "pass": 1,
        "fail": 2,
    }


def _fail_then_cancel(cancellation: type[BaseException]) -> None:
    with api.health_check() as probe:
        probe.failed()  # a verdict, then cancelled anyway: still nothing counted
        raise cancellation()


@pytest.mark.parametrize(
    "cancellation", [KeyboardInterrupt, SystemExit, asyncio.CancelledError, GeneratorExit]
)
def test_a_cancelled_health_probe_is_not_counted(instrument, cancellation):
    otel = instrument()
    with pytest.raises(cancellation), api.health_check():
        raise cancellation()
    with pytest.raises(cancellation):
        _fail_then_cancel(cancellation)
    api.report_worker_health_check(True)  # the counter works: only the probes were skipped
    assert otel.sums_by("execution.worker.health_checks", "execution.worker.health.result") == {
        "pass": 1
    }


def test_health_probe_of_a_cancelled_asyncio_task_is_not_counted(instrument):
    otel = instrument()

    async def probe(started: asyncio.Event) -> None:
        with api.health_check():
            started.set()
            await asyncio.sleep(3600)  # the worker never answers: the task is cancelled

    async def answered() -> None:
        with api.health_check():
            await asyncio.sleep(0)

    async def control_plane() -> None:
        started = asyncio.Event()
        task = asyncio.ensure_future(probe(started))
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await answered()

    asyncio.run(control_plane())
    assert otel.sums_by("execution.worker.health_checks", "execution.worker.health.result") == {
        "pass": 1
    }


def test_probe_exceptions_keep_their_traceback(instrument):
    instrument()

    def ping() -> None:
        raise TimeoutError("ping")

    with pytest.raises(TimeoutError) as caught, api.health_check():
        ping()
    with pytest.raises(TimeoutError) as drained, api.worker_drain():
        ping()
    for error in (caught.value, drained.value):
        frames = [frame.f_code.co_name for frame, _ in traceback.walk_tb(error.__traceback__)]
        assert frames == [frames[0], "ping"]  # the test's frame, then ping: nothing of ours


def test_drain_duration_only_for_completed_drains(instrument):
    otel = instrument()
    api.report_worker_drain(True, 2.5)
    api.report_worker_drain(False, 9.0)  # failed: counted, no duration
    api.report_worker_drain(True, -3.0)  # negative: 0
    api.report_worker_drain("success", float("nan"))  # NaN: 0
    api.report_worker_drain(WorkerOutcome.SUCCESS)  # no duration given: counted only
    api.report_worker_drain(True, "slow")  # not a number: counted only
    with api.worker_drain():
        pass
    with pytest.raises(RuntimeError), api.worker_drain():
        raise RuntimeError("drain aborted")
    assert otel.sums_by("execution.worker.drains", "execution.worker.outcome") == {
        "success": 6,
        "failure": 2,
    }
    (point,) = otel.points("execution.worker.drain.duration")
    assert point.count == 4
    assert 2.5 <= point.sum < 2.6
    assert point.min == 0.0
    assert point.max == 2.5
    assert dict(point.attributes) == {"execution.orchestrator": "api"}
    assert otel.metric("execution.worker.drain.duration")[0].unit == "s"


@pytest.mark.parametrize("cancellation", [KeyboardInterrupt, SystemExit, asyncio.CancelledError])
def test_a_cancelled_drain_is_a_failure_without_duration(instrument, cancellation):
    otel = instrument()
    with pytest.raises(cancellation), api.worker_drain():
        raise cancellation()
    assert otel.sums_by("execution.worker.drains", "execution.worker.outcome") == {"failure": 1}
    assert otel.points("execution.worker.drain.duration") == []


def test_drain_of_a_cancelled_asyncio_task(instrument):
    otel = instrument()

    async def drain(started: asyncio.Event) -> None:
        with api.worker_drain():
            started.set()
            await asyncio.sleep(3600)

    async def control_plane() -> None:
        started = asyncio.Event()
        task = asyncio.ensure_future(drain(started))
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(control_plane())
    assert otel.sums_by("execution.worker.drains", "execution.worker.outcome") == {"failure": 1}
    assert otel.points("execution.worker.drain.duration") == []


def test_worker_count_by_state(instrument):
    otel = instrument()
    api.report_worker_state("w1", "available")
    api.report_worker_state("w2", "available")
    api.report_worker_state("w1", "busy")
    api.report_worker_state("w2", "offline")
    api.report_worker_state("w3", None)  # forgetting an unknown worker: nothing
    assert otel.sums_by("execution.worker.count", "cicd.worker.state") == {
        "available": 0,
        "busy": 1,
        "offline": 1,
    }
    api.report_worker_state("w1", None)
    api.report_worker_state("w2", None)
    assert set(otel.sums("execution.worker.count").values()) == {0}
    assert known_workers(telemetry.current()) == 0
    assert otel.metric("execution.worker.count")[0].unit == "{worker}"


@pytest.mark.parametrize(
    ("alias", "state"),
    [
        ("idle", "available"),
        ("hot_idle", "available"),
        ("reserved", "busy"),
        ("activating", "busy"),
        ("hot", "busy"),
        ("spawning", "offline"),
        ("draining", "offline"),
        ("retired", "offline"),
        ("lost", "offline"),
        ("  Hot_Idle ", "available"),
        ("BUSY", "busy"),
        (WorkerState.OFFLINE, "offline"),
    ],
)
def test_duckgres_states_count_as_the_state_they_stand_for(instrument, alias, state):
    otel = instrument()
    api.report_worker_state("w1", alias)
    assert otel.sums_by("execution.worker.count", "cicd.worker.state") == {state: 1}


def test_state_aliases_cover_duckgres_lifecycle():
    assert set(WORKER_STATE_ALIASES) == {
        "spawning", "idle", "reserved", "activating", "hot", "hot_idle", "draining", "retired",
        "lost",
    }  # fmt: skip


@pytest.mark.parametrize("bad", ["", "   ", "sleeping", 3, WorkerOutcome.SUCCESS])
def test_an_unknown_state_keeps_the_last_counted_one(instrument, bad):
    otel = instrument()
    api.report_worker_state("w1", "busy")
    api.report_worker_state("w1", bad)  # ignored: w1 is still busy
    api.report_worker_state("w2", bad)  # ignored: w2 is not counted at all
    assert otel.sums_by("execution.worker.count", "cicd.worker.state") == {"busy": 1}
    assert known_workers(telemetry.current()) == 1
    api.report_worker_state("w1", "idle")
    assert otel.sums_by("execution.worker.count", "cicd.worker.state") == {
        "busy": 0,
        "available": 1,
    }


def test_worker_values_never_leave_their_enums(instrument):
    otel = instrument()
    for value in ("", "x", "POD_READY", None, 7, "pass", "hot", "retired", "unknown"):
        api.report_worker_spawn(False, value)
        api.report_worker_spawn(value, value)
        api.report_worker_health_check(value)
        api.report_worker_drain(value, 1.0)
        api.report_worker_state(f"w-{value}", value)
    assert _attribute_values(
        otel, "execution.worker.spawns", "execution.worker.spawn_failure.reason"
    ) == {"unknown", "other", "pod_ready"}
    assert _attribute_values(otel, "execution.worker.spawns", "execution.worker.outcome") == {
        "failure"
    }
    assert _attribute_values(
        otel, "execution.worker.health_checks", "execution.worker.health.result"
    ) == {"pass"}
    assert otel.points("execution.worker.drains") == []
    assert _attribute_values(otel, "execution.worker.count", "cicd.worker.state") == {
        "busy",
        "offline",
    }


@pytest.mark.parametrize("outcome", ["", None, "maybe", "pass"])
def test_bad_worker_values_drop_the_sample(instrument, outcome):
    otel = instrument()
    api.report_worker_drain(outcome, 1.0)  # empty or unrecognised required label
    api.report_worker_health_check(outcome if outcome != "pass" else "success")
    assert otel.points("execution.worker.drains") == []
    assert otel.points("execution.worker.drain.duration") == []
    assert otel.points("execution.worker.health_checks") == []


def test_worker_api_is_a_no_op_when_off_and_never_raises(instrument, caplog):
    otel = instrument()
    ExecStatusInstrumentor().uninstrument()
    api.report_worker_spawn(False, "pod_ready")
    api.report_worker_health_check(True)
    api.report_worker_drain(True, 1.0)
    api.report_worker_state(["unhashable"], "busy")
    with api.health_check():
        pass
    with pytest.raises(KeyError), api.worker_drain():
        raise KeyError("still the caller's")
    assert otel.reader.get_metrics_data() is None or all(
        not otel.points(name)
        for name in (
            "execution.worker.spawns",
            "execution.worker.health_checks",
            "execution.worker.drains",
            "execution.worker.count",
        )
    )
    assert caplog.records == []

    instrument()
    api.report_worker_state(["unhashable"], "busy")  # an internal error: logged, not raised
    api.report_worker_spawn(object(), object())
    with api.health_check():
        pass
    assert otel.sums_by("execution.worker.health_checks", "execution.worker.health.result") == {
        "pass": 1
    }


def test_worker_reports_do_no_work_when_nothing_records():
    """No SDK (no-op providers): a worker report returns before any bookkeeping, like a status
    report, so a control plane pays nothing for instrumentation nobody records."""
    from opentelemetry.metrics import NoOpMeterProvider
    from opentelemetry.trace import NoOpTracerProvider

    instrumentor = ExecStatusInstrumentor()
    instrumentor.instrument(
        tracer_provider=NoOpTracerProvider(), meter_provider=NoOpMeterProvider()
    )
    try:
        for worker in range(100):
            api.report_worker_state(f"w{worker}", "busy")
        assert known_workers(telemetry.current()) == 0
    finally:
        instrumentor.uninstrument()


class _Witness:
    """An argument that notes every use made of it (attribute, class check, hash, equality)."""

    def __init__(self, uses: list[str]) -> None:
        object.__setattr__(self, "uses", uses)

    def __getattribute__(self, name: str) -> object:
        object.__getattribute__(self, "uses").append(name)
        return object.__getattribute__(self, name)

    def __hash__(self) -> int:
        object.__getattribute__(self, "uses").append("__hash__")
        return 0

    def __eq__(self, other: object) -> bool:
        object.__getattribute__(self, "uses").append("__eq__")
        return other is self


def _every_worker_report(recorder, uses: list[str]) -> None:
    """Each recording method of the recorder, called directly (as adapters do), with
    arguments that note their use."""
    recorder.spawn(_Witness(uses), _Witness(uses), _Witness(uses))
    recorder.health_check(_Witness(uses), _Witness(uses))
    recorder.drain(_Witness(uses), _Witness(uses), _Witness(uses))
    recorder.set_state(_Witness(uses), _Witness(uses), _Witness(uses))


def test_the_worker_recorder_reads_no_argument_when_nothing_records(instrument):
    """Suppressed, then uninstrumented: every recording method of the recorder itself (not
    only the public API in front of it) returns before touching its arguments. Recording, the
    same calls do read them: the witnesses would see any work done."""
    instrument()
    recorder = telemetry.current().workers
    unused: list[str] = []
    with suppress_instrumentation():
        _every_worker_report(recorder, unused)
    used: list[str] = []
    _every_worker_report(recorder, used)
    ExecStatusInstrumentor().uninstrument()
    _every_worker_report(recorder, unused)
    assert unused == []
    assert used, "the witnesses noted nothing even while recording"


def test_uninstrument_stops_counting_workers(instrument):
    otel = instrument()
    api.report_worker_state("w1", "busy")
    api.report_worker_state("w2", "available")
    ExecStatusInstrumentor().uninstrument()
    assert set(otel.sums("execution.worker.count").values()) == {0}


def test_config_from_environment_and_keywords(monkeypatch):
    monkeypatch.setenv("OTEL_PYTHON_EXECSTATUS_ORCHESTRATORS", "routilux, Loom")
    monkeypatch.setenv("OTEL_PYTHON_EXECSTATUS_NAMES_ON_METRICS", "false")
    monkeypatch.setenv("OTEL_PYTHON_EXECSTATUS_MAX_IN_FLIGHT", "not-a-number")
    monkeypatch.setenv("OTEL_PYTHON_EXECSTATUS_ITEM_SPANS", "on")
    config = ExecStatusConfig.load({"name_cardinality_limit": 7, "item_spans": False})
    assert config == ExecStatusConfig(
        orchestrators=frozenset({"routilux", "loom"}),
        names_on_metrics=False,
        name_cardinality_limit=7,
        max_in_flight=10_000,  # invalid value ignored
        item_spans=False,  # keyword wins over environment
    )


def test_entry_point_is_registered():
    found = entry_points()  # Python 3.9: a dict by group, without select()
    group = (
        found.select(group="opentelemetry_instrumentor")
        if hasattr(found, "select")
        else found.get("opentelemetry_instrumentor", [])
    )
    (entry_point,) = [e for e in group if e.name == "execstatus"]
    assert entry_point.load() is ExecStatusInstrumentor


def test_second_instrument_is_a_no_op(instrument):
    instrument()
    first = telemetry.current()
    ExecStatusInstrumentor().instrument()
    assert telemetry.current() is first


@pytest.mark.parametrize(
    ("variable", "value"),
    [("OTEL_SDK_DISABLED", "true"), ("OTEL_PYTHON_DISABLED_INSTRUMENTATIONS", "flask,execstatus")],
)
def test_disabled_by_environment(monkeypatch, instrument, variable, value):
    monkeypatch.setenv(variable, value)
    otel = instrument()
    api.report_status("x", "running", name="x")
    api.report_status("x", "succeeded")
    assert telemetry.current() is None
    assert otel.spans() == []


def test_instrument_imports_no_orchestrator():
    code = (
        "import sys\n"
        "from opentelemetry_instrumentation_execstatus import ExecStatusInstrumentor\n"
        "ExecStatusInstrumentor().instrument()\n"
        "loaded = [m for m in ('routilux', 'orcapod', 'loom') if m in sys.modules]\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
