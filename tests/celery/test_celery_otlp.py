"""The Celery example, unmodified, across processes into the real backends: a prefork worker
(``celery -A celery_tasks worker --pool=prefork -c 2``) and the client script, each under
``opentelemetry-instrument``, with a Redis broker, exporting traces to Phoenix and metrics to
VictoriaMetrics over OTLP/HTTP, and the dashboard's task panels and the alert rules on that
data.

Both processes also print to the console exporters. The worker's pool processes inherit its
stdout (the worker's log file), so each process's spans and final metrics can be read from
there, told apart by their resource: SDK 1.45 gives every process, a forked pool child too,
a ``service.instance.id`` (and ``process.pid``) of its own. The backends' data is compared
with what each process emitted, and then with what the example implies (every task's count of
each transition, one retry of ``celery_tasks.notify``, a spawn per process, one drain).
opentelemetry-instrumentation-celery is switched off: the tasks' spans are ours.
"""

from __future__ import annotations

import math
import os
import time
import uuid
from dataclasses import dataclass
from importlib.metadata import version
from typing import Any

import pytest
from e2e.test_dashboards import active_alerts, dashboard_queries, in_grafana
from otlp_backends import (
    EXPORT_TIMEOUT_SECONDS,
    Backends,
    OtlpRun,
    Stored,
    assert_same_metric,
    console_id_hex,
    emitted_metrics,
    fetch_spans,
    poll,
    run_exporting,
)
from redis_server import RedisServer
from support import EXAMPLES, console_spans, json_documents
from worker import QUICK_START, CeleryWorker

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        tuple(int(part) for part in version("opentelemetry-sdk").split(".")[:2]) < (1, 45),
        reason="before SDK 1.45 a forked pool process keeps its parent's resource: its series "
        "and the worker's overwrite each other in VictoriaMetrics",
    ),
]

DURATION = "execution_status_transition_duration_seconds"
CLIENT_PRINTS = ["total: 60", "sent: 60", "reconcile failed: ledger out of balance"]
RUN = {("queued", "pending"): 1, ("pending", "running"): 1}
# The example's tasks: (from, to) -> samples, summed over the worker's processes.
TRANSITIONS = {
    "celery_tasks.fetch": {
        ("queued", "pending"): 3,
        ("pending", "running"): 3,
        ("running", "succeeded"): 3,
    },
    "celery_tasks.total": {**RUN, ("running", "succeeded"): 1},
    "celery_tasks.notify": {  # its first attempt retries, its second succeeds
        **RUN,
        ("running", "retrying"): 1,
        ("retrying", "running"): 1,
        ("running", "succeeded"): 1,
    },
    "celery_tasks.reconcile": {**RUN, ("running", "failed"): 1},
}
TASK_PANELS = ("Time in queue, p95 by task", "Retry rate by task")


@dataclass
class CeleryRun:
    """One run of the example: the client's run, the worker's (its log's documents, from the
    worker and its pool processes) and the pids of the worker and its pool."""

    project: str  # Phoenix project of both
    client: OtlpRun
    worker: OtlpRun
    worker_pid: int
    pool_pids: list[int]

    def documents_by_process(self) -> dict[str, list[dict[str, Any]]]:
        """The worker's documents by the ``service.instance.id`` of the process that printed
        them."""
        by_instance: dict[str, list[dict[str, Any]]] = {}
        for document in self.worker.documents:
            resources = [r["resource"] for r in document.get("resource_metrics", [])]
            resource = document.get("resource") or (resources[0] if resources else None)
            if resource:
                instance = resource["attributes"]["service.instance.id"]
                by_instance.setdefault(instance, []).append(document)
        return by_instance


@dataclass
class ProcessStored(Stored):
    """What VictoriaMetrics holds of one process of a service: the series of its
    ``service.instance.id``."""

    instance: str = ""

    def selector(self, *matchers: str) -> str:
        return super().selector(f'service_instance_id="{self.instance}"', *matchers)


@pytest.fixture(scope="module")
def celery_run(
    otlp_backends: Backends, redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> CeleryRun:
    """The worker started, the client run to its end, the worker stopped (warm shutdown)."""
    redis_server.flush_all()
    project = f"celery-{uuid.uuid4().hex[:8]}"
    shared = {
        "CELERY_BROKER_URL": redis_server.url(0),
        "CELERY_RESULT_BACKEND": redis_server.url(1),
        "OTEL_RESOURCE_ATTRIBUTES": f"openinference.project.name={project}",
        "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS": "celery",
        "OTEL_EXPERIMENTAL_RESOURCE_DETECTORS": "otel,process",
    }
    service = f"celery_tasks-{uuid.uuid4().hex[:8]}"
    worker = CeleryWorker(
        app="celery_tasks",
        options=["--concurrency=2", *QUICK_START],
        environment={
            **os.environ,
            **otlp_backends.otlp_environment("http"),
            "OTEL_TRACES_EXPORTER": "console,otlp",
            "OTEL_METRICS_EXPORTER": "console,otlp",
            "OTEL_SERVICE_NAME": service,
            "OTEL_EXPORTER_OTLP_TIMEOUT": str(EXPORT_TIMEOUT_SECONDS),
            "OTEL_METRIC_EXPORT_INTERVAL": "600000",  # at the end: a pool process's shutdown
            "PYTHONPATH": str(EXAMPLES),
            **shared,
        },
        log=tmp_path_factory.mktemp("celery-otlp") / "worker.log",
        hostname=f"otlp-{os.getpid()}@%h",
    )
    started = time.monotonic()
    with worker:
        pool_pids = worker.child_pids()
        client = run_exporting(
            EXAMPLES / "celery_client.py", backends=otlp_backends, overrides=shared
        )
        assert worker.stop() == 0, worker.tail()
    documents, output = json_documents(worker.log.read_text(errors="replace"))
    seconds = time.monotonic() - started
    return CeleryRun(
        project=project,
        client=client,
        worker=OtlpRun(service, documents, output, seconds, output_seconds=seconds),
        worker_pid=worker.pid,
        pool_pids=pool_pids,
    )


def _statuses(span: dict[str, Any]) -> list[str]:
    return [
        e["attributes"]["execution.status.to"] for e in span["events"] if e["name"] != "exception"
    ]


def test_one_trace_from_the_client_through_the_pool_processes(celery_run, otlp_backends):
    assert celery_run.client.output == CLIENT_PRINTS
    documents = celery_run.client.documents + celery_run.worker.documents
    emitted = {
        console_id_hex(span["context"]["span_id"]): span for span in console_spans(documents)
    }
    spans = fetch_spans(otlp_backends, celery_run.project, documents)
    stored = Stored(run=celery_run.client, backends=otlp_backends, spans=spans)

    (client,) = stored.named("nightly close")
    assert client["parent_id"] is None
    client_resource = emitted[client["context"]["span_id"]]["resource"]["attributes"]
    assert client_resource["service.name"] == celery_run.client.service
    assert {span["context"]["trace_id"] for span in spans} == {client["context"]["trace_id"]}
    tasks = [span for span in spans if span is not client]
    for span in tasks:  # each written by a pool process of the worker
        resource = emitted[span["context"]["span_id"]]["resource"]["attributes"]
        assert resource["process.pid"] in celery_run.pool_pids, span["name"]
        assert resource["service.name"] == celery_run.worker.service
    assert sorted(span["name"] for span in stored.children(client)) == [
        "RUN chord celery_tasks.total",
        "celery_tasks.notify",
        "celery_tasks.reconcile",
    ]
    (chord,) = stored.named("RUN chord celery_tasks.total")  # written where total ran
    assert _statuses(chord) == ["running", "succeeded"]
    assert sorted(span["name"] for span in stored.children(chord)) == [
        *["celery_tasks.fetch"] * 3,
        "celery_tasks.total",
    ]
    for span in stored.children(chord):
        assert _statuses(span) == ["queued", "pending", "running", "succeeded"]
    first, second = sorted(
        stored.named("celery_tasks.notify"), key=lambda s: s["attributes"]["execution.attempt"]
    )
    assert _statuses(first) == ["queued", "pending", "running", "retrying"]
    assert second["parent_id"] == first["context"]["span_id"]
    assert _statuses(second) == ["retrying", "running", "succeeded"]
    (reconcile,) = stored.named("celery_tasks.reconcile")
    assert reconcile["status_code"] == "ERROR"
    assert reconcile["attributes"]["error.type"] == "ValueError"


def test_samples_spawns_and_the_drain_in_victoriametrics(celery_run, otlp_backends):
    processes = celery_run.documents_by_process()
    assert len(processes) == 1 + len(celery_run.pool_pids)  # the worker and its pool
    for instance, documents in processes.items():
        stored = ProcessStored(celery_run.worker, otlp_backends, [], instance)
        for metric in emitted_metrics(documents):
            assert_same_metric(stored, metric)

    stored = Stored(celery_run.worker, otlp_backends, [])
    counts = stored.sums_by(
        f"{DURATION}_count",
        "cicd_pipeline_task_name",
        "execution_status_from",
        "execution_status_to",
    )
    assert counts == {
        (None, "running", "succeeded"): 1,  # the chord's run, a pipeline: no task name
        **{
            (task, *transition): count
            for task, transitions in TRANSITIONS.items()
            for transition, count in transitions.items()
        },
    }
    spawns = stored.sums_by(
        "execution_worker_spawns_total", "process_pid", "execution_worker_outcome"
    )
    assert spawns == {
        (str(pid), "success"): 1 for pid in [celery_run.worker_pid, *celery_run.pool_pids]
    }
    worker = f'process_pid="{celery_run.worker_pid}"'
    drains = stored.sums_by(
        "execution_worker_drains_total", "execution_worker_outcome", selector=worker
    )
    assert drains == {"success": 1}
    (drain_seconds,) = stored.sums_by(
        "execution_worker_drain_duration_seconds_sum", "execution_orchestrator", selector=worker
    ).values()
    assert 0 < drain_seconds < celery_run.worker.seconds
    offline = stored.sums_by(
        "execution_worker_count", "process_pid", selector='cicd_worker_state="offline"'
    )
    assert offline == {str(pid): 1 for pid in celery_run.pool_pids}


def _narrowed(expression: str, stored: Stored) -> str:
    """A panel's query on this run's series only (the backends may hold other runs')."""
    return expression.replace("{", stored.selector()[:-1] + ", ")


def _emitted_queue_bounds(celery_run: CeleryRun, task: str) -> tuple[float, float]:
    """The bucket bounds around the task's emitted times in ``queued``, over its processes:
    the p95 of its stored buckets lies between them."""
    low, high = math.inf, 0.0
    for documents in celery_run.documents_by_process().values():
        for metric in emitted_metrics(documents):
            if metric["name"] != "execution.status_transition.duration":
                continue
            for point in metric["data"]["data_points"]:
                attributes = point["attributes"]
                if (
                    attributes["execution.status.from"],
                    attributes.get("cicd.pipeline.task.name"),
                ) != ("queued", task):
                    continue
                bounds = [0.0, *point["explicit_bounds"], math.inf]
                low = min(low, max(b for b in bounds if b <= point["min"]))
                high = max(high, min(b for b in bounds if b >= point["max"]))
    return low, high


def test_the_task_panels_and_rules_on_the_celery_data(celery_run, otlp_backends):
    stored = Stored(celery_run.worker, otlp_backends, [])
    queries = dict(dashboard_queries())
    queue_query, retry_query = (queries[f"{title} (A)"] for title in TASK_PANELS)

    def by_task(expression: str) -> dict[str, float]:
        series = poll(
            lambda: otlp_backends.query(_narrowed(in_grafana(expression), stored)),
            lambda found: len(found) == len(TRANSITIONS),
            f"not every task has a value for {expression}",
        )
        assert {s["metric"]["execution_orchestrator"] for s in series} == {"celery"}
        return {s["metric"]["cicd_pipeline_task_name"]: float(s["value"][1]) for s in series}

    for task, p95 in by_task(queue_query).items():
        low, high = _emitted_queue_bounds(celery_run, task)
        assert low <= p95 <= high, (task, p95, low, high)
    retried = {
        task: transitions.get(("running", "retrying"), 0)
        / sum(count for (left, _), count in transitions.items() if left == "running")
        for task, transitions in TRANSITIONS.items()
    }
    assert by_task(retry_query) == retried
    assert retried["celery_tasks.notify"] == 0.5

    recorded = ("task:execution_queue_time_seconds:p95", "task:execution_retries:ratio")
    rules = poll(
        otlp_backends.rules,
        lambda rules: (
            all(rule["lastSamples"] > 0 for rule in rules if rule["name"] in recorded)
            and "ExecutionRetryRateHigh" in active_alerts(stored, rules)
        ),
        "vmalert's task rules return no data, or ExecutionRetryRateHigh is not active",
    )
    for rule in rules:
        if rule["name"] in (*recorded, "ExecutionRetryRateHigh"):
            assert rule["health"] == "ok" and not rule["lastError"], rule
    alerts = active_alerts(stored, rules)
    assert set(alerts) == {"ExecutionRetryRateHigh"}, alerts
    assert {
        (labels["cicd_pipeline_task_name"], labels["execution_orchestrator"])
        for labels in alerts["ExecutionRetryRateHigh"]
    } == {("celery_tasks.notify", "celery")}
