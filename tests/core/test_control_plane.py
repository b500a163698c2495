"""The home-grown control plane of examples/control_plane.py, reporting through the public API.

Three worker threads (worker-2's first spawn fails with ``pod_ready``), six jobs as steps of
the ``nightly`` run, a health check of every worker each tick; worker-3 hangs on its first job
(``load_orders``), fails its check and is drained, and the job is retried on another worker.
"""

from __future__ import annotations

import sys

from opentelemetry.trace import StatusCode
from support import EXAMPLES, console_points, console_spans, run_example_instrumented

sys.path.insert(0, str(EXAMPLES))
import control_plane

FINAL_STATUSES = {
    "extract_orders": "succeeded",
    "extract_customers": "succeeded",
    "load_orders": "succeeded",
    "load_customers": "succeeded",
    "audit": "failed",
    "publish_report": "succeeded",
}
SPAWNS = {("success", None): 3, ("failure", "pod_ready"): 1}
HEALTH_CHECKS = {"pass": 6, "fail": 1}  # ticks of 3, 2 and 2 workers; worker-3 fails once
RETRIED = "load_orders"


def _count(otel):
    return otel.sums_by("execution.worker.count", "cicd.worker.state")


def test_main_reports_every_job_and_worker(instrument):
    otel = instrument()
    assert control_plane.main() == FINAL_STATUSES

    run = otel.span("RUN nightly")
    assert run.parent is None
    assert run.attributes["execution.status"] == "failed"
    assert run.attributes["cicd.pipeline.run.id"] == "nightly-1"
    steps = [span for span in otel.spans() if span is not run]
    assert sorted(span.name for span in steps) == sorted(FINAL_STATUSES)
    for step in steps:
        assert step.parent.span_id == run.context.span_id
        assert step.attributes["execution.level"] == "step"
        assert step.attributes["execution.status"] == FINAL_STATUSES[step.name]
    audit = otel.span("audit")
    assert audit.status.status_code is StatusCode.ERROR
    assert audit.attributes["error.type"] == "ValueError"
    assert [event.attributes["execution.status.to"] for event in otel.span(RETRIED).events] == [
        "queued",
        "running",
        "queued",
        "running",
        "succeeded",
    ]

    assert otel.transition_counts(cicd_pipeline_task_name=RETRIED) == {
        ("queued", "running"): 2,
        ("running", "queued"): 1,
        ("running", "succeeded"): 1,
    }
    for name, status in FINAL_STATUSES.items():
        if name != RETRIED:
            assert otel.transition_counts(cicd_pipeline_task_name=name) == {
                ("queued", "running"): 1,
                ("running", status): 1,
            }
    assert otel.transition_counts(execution_level="pipeline") == {
        ("queued", "running"): 1,
        ("running", "failed"): 1,
    }
    assert set(otel.sums("execution.active").values()) == {0}

    assert otel.spawns() == SPAWNS
    assert otel.sums_by("execution.worker.health_checks", "execution.worker.health.result") == (
        HEALTH_CHECKS
    )
    assert otel.sums_by("execution.worker.drains", "execution.worker.outcome") == {"success": 3}
    (duration,) = otel.points("execution.worker.drain.duration")
    assert duration.count == 3  # one per successful drain, and there were only those
    assert 0.0 < duration.sum < 5.0
    assert _count(otel) == {"available": 0, "busy": 0, "offline": 0}
    for metric in ("spawns", "health_checks", "drains", "drain.duration", "count"):
        for point in otel.points(f"execution.worker.{metric}"):
            assert point.attributes["execution.orchestrator"] == "api"


def test_worker_counters_tick_by_tick(instrument):
    otel = instrument()
    plane = control_plane.ControlPlane()

    plane.start()
    # worker-2's first pod was spawning (offline), then forgotten; all three are now idle.
    assert otel.spawns() == SPAWNS
    assert _count(otel) == {"available": 3, "offline": 0}
    assert otel.points("execution.worker.health_checks") == []

    plane.submit("nightly-1", "nightly", control_plane.JOBS)
    plane.tick()
    # worker-3 hung on load_orders, failed its check, was drained and forgotten; worker-1 and
    # worker-2 finished their jobs; load_orders is queued again.
    assert otel.sums_by("execution.worker.health_checks", "execution.worker.health.result") == {
        "pass": 2,
        "fail": 1,
    }
    assert otel.sums_by("execution.worker.drains", "execution.worker.outcome") == {"success": 1}
    assert [point.count for point in otel.points("execution.worker.drain.duration")] == [1]
    assert _count(otel) == {"available": 2, "busy": 0, "offline": 0}
    assert otel.transition_counts(cicd_pipeline_task_name=RETRIED) == {
        ("queued", "running"): 1,
        ("running", "queued"): 1,
    }
    assert plane.has_work()

    plane.tick()
    assert otel.transition_counts(cicd_pipeline_task_name=RETRIED) == {
        ("queued", "running"): 2,
        ("running", "queued"): 1,
        ("running", "succeeded"): 1,
    }
    assert otel.sums_by("execution.worker.health_checks", "execution.worker.health.result") == {
        "pass": 4,
        "fail": 1,
    }

    plane.tick()
    assert not plane.has_work()
    assert otel.span("RUN nightly").attributes["execution.status"] == "failed"
    assert _count(otel) == {"available": 2, "busy": 0, "offline": 0}

    assert plane.shutdown() == FINAL_STATUSES
    assert otel.sums_by("execution.worker.drains", "execution.worker.outcome") == {"success": 3}
    assert [point.count for point in otel.points("execution.worker.drain.duration")] == [3]
    assert _count(otel) == {"available": 0, "busy": 0, "offline": 0}
    assert otel.sums_by("execution.worker.health_checks", "execution.worker.health.result") == (
        HEALTH_CHECKS
    )


def test_zero_code_under_opentelemetry_instrument():
    documents = run_example_instrumented("control_plane.py")

    spans = console_spans(documents)
    assert sorted(span["name"] for span in spans) == sorted(["RUN nightly", *FINAL_STATUSES])
    statuses = {span["name"]: span["attributes"]["execution.status"] for span in spans}
    assert statuses == {"RUN nightly": "failed", **FINAL_STATUSES}

    def values(metric, key):
        return {
            point["attributes"].get(key): point["value"]
            for point in console_points(documents, f"execution.worker.{metric}")
        }

    spawns = {
        (
            point["attributes"]["execution.worker.outcome"],
            point["attributes"].get("execution.worker.spawn_failure.reason"),
        ): point["value"]
        for point in console_points(documents, "execution.worker.spawns")
    }
    assert spawns == SPAWNS
    assert values("health_checks", "execution.worker.health.result") == HEALTH_CHECKS
    assert values("drains", "execution.worker.outcome") == {"success": 3}
    assert values("count", "cicd.worker.state") == {"available": 0, "busy": 0, "offline": 0}
    (duration,) = console_points(documents, "execution.worker.drain.duration")
    assert duration["count"] == 3
    retried = [
        point["count"]
        for point in console_points(documents, "execution.status_transition.duration")
        if point["attributes"].get("cicd.pipeline.task.name") == RETRIED
        and point["attributes"]["execution.status.from"] == "queued"
    ]
    assert retried == [2]
