"""The Tangle preset, on a model built like Tangle's ExecutionNode, on a real SQLite file: the
instrumentation finds the model in Tangle's module and instruments it, through its Tangle
adapter, for as long as it is on."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import ModuleType
from typing import Any, Callable

import pytest
from sqlalchemy import event
from sqlalchemy.orm import Session
from sqlalchemy_database import Database
from support import Telemetry, console_points, console_spans, run_instrumented

from opentelemetry_instrumentation_execstatus import ExecStatusInstrumentor, telemetry
from opentelemetry_instrumentation_execstatus.adapters.sqlalchemy.transactions import after_commit
from opentelemetry_instrumentation_execstatus.adapters.tangle import TangleAdapter
from opentelemetry_instrumentation_execstatus.config import ExecStatusConfig
from opentelemetry_instrumentation_execstatus.telemetry import Telemetry as Core

HERE = Path(__file__).parent


class Nodes:
    """Tangle's execution nodes in one database: queued as its API server does, then given a
    status each in a session of their own, as its orchestrator does."""

    def __init__(self, models: ModuleType, database: Database) -> None:
        self.models = models
        self.database = database

    def queue(self, *task_ids: str) -> dict[str, str]:
        with Session(self.database.engine) as session:
            nodes = {
                task_id: self.models.ExecutionNode(
                    task_id_in_parent_execution=task_id,
                    container_execution_status=self.models.ContainerExecutionStatus.QUEUED,
                )
                for task_id in task_ids
            }
            session.add_all(nodes.values())
            session.commit()
            return {task_id: node.id for task_id, node in nodes.items()}

    def set(self, node_id: str, status: str, **extra: Any) -> None:
        with Session(self.database.engine) as session:
            node = session.get(self.models.ExecutionNode, node_id)
            if extra:
                node.extra_data = {**(node.extra_data or {}), **extra}
            node.container_execution_status = self.models.ContainerExecutionStatus[status]
            session.commit()


@pytest.fixture
def nodes(models: ModuleType, database: Database) -> Nodes:
    return Nodes(models, database)


def test_tangle_statuses_and_names(instrument: Callable[..., Telemetry], nodes: Nodes) -> None:
    otel = instrument()
    ids = nodes.queue("train", "evaluate", "upload")
    for status in ("WAITING_FOR_UPSTREAM", "PENDING", "RUNNING"):
        nodes.set(ids["train"], status)
    nodes.set(ids["train"], "PENDING")  # suspended
    nodes.set(ids["train"], "RUNNING")
    nodes.set(ids["train"], "SUCCEEDED")
    nodes.set(ids["evaluate"], "SYSTEM_ERROR")
    nodes.set(ids["upload"], "CANCELLING")
    nodes.set(ids["upload"], "CANCELLED")

    assert otel.transition_counts(execution_orchestrator="tangle") == {
        ("queued", "waiting"): 1,
        ("waiting", "starting"): 1,
        ("starting", "running"): 2,
        ("running", "starting"): 1,
        ("running", "succeeded"): 1,
        ("queued", "system_error"): 1,
        ("queued", "cancelling"): 1,
        ("cancelling", "cancelled"): 1,
    }
    train = otel.span("train")
    assert train.attributes["cicd.pipeline.task.run.id"] == ids["train"]
    assert train.attributes["execution.orchestrator"] == "tangle"
    failed = otel.span("evaluate")
    assert failed.attributes["error.type"] == "system_error"
    assert otel.span("upload").attributes["cicd.pipeline.task.run.result"] == "cancellation"


def test_a_cache_reuse_is_cached(instrument: Callable[..., Telemetry], nodes: Nodes) -> None:
    otel = instrument()
    ids = nodes.queue("original", "reuser")
    nodes.set(ids["original"], "RUNNING")
    nodes.set(ids["original"], "SUCCEEDED")
    # Tangle marks the reuse in extra_data, then copies the cached node's status.
    nodes.set(ids["reuser"], "SUCCEEDED", reused_from_execution_node_id=ids["original"])
    assert otel.transition_counts() == {
        ("queued", "running"): 1,
        ("running", "succeeded"): 1,
        ("queued", "cached"): 1,
    }
    reuser = otel.span("reuser")
    assert reuser.attributes["execution.cached"] is True
    assert reuser.attributes["execution.status"] == "cached"


def test_durations_come_from_the_status_history(
    instrument: Callable[..., Telemetry], nodes: Nodes
) -> None:
    """A node queued a minute before this process started: its history says when."""
    ids = nodes.queue("train")
    with Session(nodes.database.engine) as session:
        node = session.get(nodes.models.ExecutionNode, ids["train"])
        minute_ago = (datetime.now(timezone.utc) - timedelta(seconds=60)).isoformat()
        history = [{"status": "QUEUED", "first_observed_at": minute_ago}]
        node.extra_data = {nodes.models.HISTORY: history}
        session.commit()

    otel = instrument()  # a new process: no record of the row, only the database
    nodes.set(ids["train"], "PENDING")
    (point,) = otel.transitions().values()
    assert point.attributes["execution.status.from"] == "queued"
    assert 60 <= point.sum < 62


def test_two_processes_share_the_database(
    instrument: Callable[..., Telemetry], nodes: Nodes
) -> None:
    """This process queues nodes (an API server); another one runs them (the orchestrator)."""
    otel = instrument()
    before_queueing = time.monotonic()
    ids = nodes.queue("train", "evaluate")
    time.sleep(0.2)
    documents = run_instrumented(HERE / "tangle_orchestrator.py", nodes.database.url)
    # The most a node can have been queued: from before it was queued to the other's exit.
    longest = time.monotonic() - before_queueing

    # The other process measured the queue time from the history this one wrote.
    queued = [
        point
        for point in console_points(documents, "execution.status_transition.duration")
        if point["attributes"]["execution.status.from"] == "queued"
    ]
    assert sorted(
        (p["attributes"]["cicd.pipeline.task.name"], p["attributes"]["execution.status.to"])
        for p in queued
    ) == [("evaluate", "starting"), ("train", "starting")]
    for point in queued:
        assert point["count"] == 1
        assert 0.2 <= point["sum"] <= longest

    spans = {span["name"]: span for span in console_spans(documents)}
    assert set(spans) == {"train", "evaluate"}
    assert spans["train"]["attributes"]["execution.status"] == "succeeded"
    assert spans["train"]["attributes"]["cicd.pipeline.task.run.id"] == ids["train"]
    assert spans["evaluate"]["status"]["status_code"] == "ERROR"
    events = [event["attributes"]["execution.status.to"] for event in spans["train"]["events"]]
    assert events == ["queued", "starting", "running", "starting", "running", "succeeded"]

    # Each process adds its own deltas to execution.active: together, nothing is left.
    totals: dict[str, int] = {}
    for point in otel.points("execution.active"):
        status = point.attributes["execution.status"]
        totals[status] = totals.get(status, 0) + point.value
    for point in console_points(documents, "execution.active"):
        status = point["attributes"]["execution.status"]
        totals[status] = totals.get(status, 0) + point["value"]
    assert totals["queued"] == 0
    assert set(totals.values()) == {0}
    # This process created the nodes and counted them as queued; it saw no change.
    assert otel.transition_counts() == {}
    # The other process imported Tangle's launchers after instrumenting: they were patched.
    spawns = console_points(documents, "execution.worker.spawns")
    assert [(p["attributes"]["execution.worker.outcome"], p["value"]) for p in spawns] == [
        ("success", 2)
    ]


def _our_listeners(models: ModuleType) -> tuple[int, bool]:
    """Listeners on the node's status besides Tangle's own, and whether sessions have ours."""
    tangles_own = 1  # the listener keeping the status history
    status = models.ExecutionNode.container_execution_status
    sessions = event.contains(Session, "after_commit", after_commit)
    return len(status.dispatch.set) - tangles_own, sessions


def test_the_preset_reports_through_each_instrumentation_while_it_is_on(
    models: ModuleType, nodes: Nodes
) -> None:
    first, second = Telemetry(), Telemetry()
    instrumentor = ExecStatusInstrumentor()
    assert _our_listeners(models) == (0, False)
    try:
        instrumentor.instrument(
            tracer_provider=first.tracer_provider, meter_provider=first.meter_provider
        )
        assert _our_listeners(models) == (1, True)
        ids = nodes.queue("train", "evaluate")
        nodes.set(ids["train"], "RUNNING")
        instrumentor.uninstrument()
        assert _our_listeners(models) == (0, False)
        nodes.set(ids["train"], "SUCCEEDED")
        instrumentor.instrument(
            tracer_provider=second.tracer_provider, meter_provider=second.meter_provider
        )
        assert _our_listeners(models) == (1, True)
        nodes.set(ids["evaluate"], "RUNNING")
    finally:
        instrumentor.uninstrument()
    assert _our_listeners(models) == (0, False)
    assert first.transition_counts() == {("queued", "running"): 1}
    assert second.transition_counts() == {("queued", "running"): 1}
    assert [span.name for span in second.spans()] == ["evaluate"]


def test_an_adapter_reports_through_the_core_it_was_given(models: ModuleType, nodes: Nodes) -> None:
    """No instrumentation is on (no core to find): a Tangle adapter made with a core of its
    own reports its preset's changes there."""
    otel = Telemetry()
    core = Core.create(ExecStatusConfig.load({}), otel.tracer_provider, otel.meter_provider)
    undo = TangleAdapter(core).instrument_execution_nodes(models.ExecutionNode)
    try:
        ids = nodes.queue("train")
        nodes.set(ids["train"], "RUNNING")
        nodes.set(ids["train"], "SUCCEEDED")
    finally:
        undo()
        core.close()
    assert telemetry.current() is None
    assert otel.transition_counts(execution_orchestrator="tangle") == {
        ("queued", "running"): 1,
        ("running", "succeeded"): 1,
    }
    assert otel.span("train").attributes["execution.status"] == "succeeded"
