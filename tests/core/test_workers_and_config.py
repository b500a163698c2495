"""Worker counters through the public API, configuration, and the instrumentor itself."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import entry_points

import pytest

from opentelemetry_instrumentation_execstatus import ExecStatusInstrumentor, api, telemetry
from opentelemetry_instrumentation_execstatus.config import ExecStatusConfig


def _by(otel, metric, key):
    return {dict(k).get(key): v for k, v in otel.sums(metric).items()}


def test_spawn_counter_with_bounded_failure_reasons(instrument):
    otel = instrument()
    api.report_worker_spawn(success=True)
    api.report_worker_spawn(success=False, reason="pod_ready")
    api.report_worker_spawn(success=False, reason="  POD_READY ")
    api.report_worker_spawn(success=False, reason="a brand new reason")
    api.report_worker_spawn(success=False)
    points = {
        (
            dict(k)["execution.worker.outcome"],
            dict(k).get("execution.worker.spawn_failure.reason"),
        ): v
        for k, v in otel.sums("execution.worker.spawns").items()
    }
    assert points == {("success", None): 1, ("failure", "pod_ready"): 2, ("failure", "other"): 2}
    (_, scope) = otel.metric("execution.worker.spawns")
    assert otel.metric("execution.worker.spawns")[0].unit == "{spawn}"
    assert scope.name == "opentelemetry_instrumentation_execstatus"


def test_health_checks_skip_cancelled_probes(instrument):
    otel = instrument()
    api.report_worker_health_check(True)
    api.report_worker_health_check(False)
    api.report_worker_health_check(False, cancelled=True)
    assert _by(otel, "execution.worker.health_checks", "execution.worker.health.result") == {
        "pass": 1,
        "fail": 1,
    }


def test_drain_duration_only_for_completed_drains(instrument):
    otel = instrument()
    api.report_worker_drain(True, 2.5)
    api.report_worker_drain(False, 9.0)  # failed: counted, no duration
    api.report_worker_drain(True, -3.0)  # negative: 0
    with api.worker_drain():
        pass
    with pytest.raises(RuntimeError), api.worker_drain():
        raise RuntimeError("drain aborted")
    assert _by(otel, "execution.worker.drains", "execution.worker.outcome") == {
        "success": 3,
        "failure": 2,
    }
    (point,) = otel.points("execution.worker.drain.duration")
    assert point.count == 3
    assert 2.5 <= point.sum < 2.6
    assert point.min == 0.0


def test_worker_count_by_state(instrument):
    otel = instrument()
    api.report_worker_state("w1", "available")
    api.report_worker_state("w2", "available")
    api.report_worker_state("w1", "busy")
    api.report_worker_state("w2", "sleeping")  # outside the enum: offline
    api.report_worker_state("w3", None)  # forgetting an unknown worker: nothing
    assert _by(otel, "execution.worker.count", "cicd.worker.state") == {
        "available": 0,
        "busy": 1,
        "offline": 1,
    }
    api.report_worker_state("w1", None)
    api.report_worker_state("w2", None)
    assert set(otel.sums("execution.worker.count").values()) == {0}
    assert telemetry.current().workers.known_workers() == 0


def test_bad_worker_values_drop_the_sample(instrument):
    otel = instrument()
    api.report_worker_drain("")  # empty required label
    api.report_worker_health_check("maybe")
    assert otel.points("execution.worker.drains") == []
    assert otel.points("execution.worker.health_checks") == []


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
    (entry_point,) = [
        e for e in entry_points(group="opentelemetry_instrumentor") if e.name == "execstatus"
    ]
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
