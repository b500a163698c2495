"""The Tangle preset, on a model built like Tangle's ExecutionNode, on a real SQLite file."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable

import pytest
from conftest import Database
from sqlalchemy.orm import Session
from support import Telemetry, console_points, console_spans, run_instrumented
from tangle_like import HISTORY, ExecutionNode
from tangle_like import ContainerExecutionStatus as Status

from opentelemetry_instrumentation_execstatus.adapters.tangle import instrument_execution_nodes

HERE = Path(__file__).parent


@pytest.fixture
def preset() -> Iterator[None]:
    undo = instrument_execution_nodes(ExecutionNode)
    yield
    undo()


def _queue(database: Database, *task_ids: str) -> dict[str, str]:
    with Session(database.engine) as session:
        nodes = {
            task_id: ExecutionNode(
                task_id_in_parent_execution=task_id,
                container_execution_status=Status.QUEUED,
            )
            for task_id in task_ids
        }
        session.add_all(nodes.values())
        session.commit()
        return {task_id: node.id for task_id, node in nodes.items()}


def _set(database: Database, node_id: str, status: Status, **extra: Any) -> None:
    with Session(database.engine) as session:
        node = session.get(ExecutionNode, node_id)
        if extra:
            node.extra_data = {**(node.extra_data or {}), **extra}
        node.container_execution_status = status
        session.commit()


def test_tangle_statuses_and_names(
    instrument: Callable[..., Telemetry], database: Database, preset: None
) -> None:
    otel = instrument()
    ids = _queue(database, "train", "evaluate", "upload")
    for status in (Status.WAITING_FOR_UPSTREAM, Status.PENDING, Status.RUNNING):
        _set(database, ids["train"], status)
    _set(database, ids["train"], Status.PENDING)  # suspended
    _set(database, ids["train"], Status.RUNNING)
    _set(database, ids["train"], Status.SUCCEEDED)
    _set(database, ids["evaluate"], Status.SYSTEM_ERROR)
    _set(database, ids["upload"], Status.CANCELLING)
    _set(database, ids["upload"], Status.CANCELLED)

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


def test_a_cache_reuse_is_cached(
    instrument: Callable[..., Telemetry], database: Database, preset: None
) -> None:
    otel = instrument()
    ids = _queue(database, "original", "reuser")
    _set(database, ids["original"], Status.RUNNING)
    _set(database, ids["original"], Status.SUCCEEDED)
    # Tangle marks the reuse in extra_data, then copies the cached node's status.
    _set(database, ids["reuser"], Status.SUCCEEDED, reused_from_execution_node_id=ids["original"])
    assert otel.transition_counts() == {
        ("queued", "running"): 1,
        ("running", "succeeded"): 1,
        ("queued", "cached"): 1,
    }
    reuser = otel.span("reuser")
    assert reuser.attributes["execution.cached"] is True
    assert reuser.attributes["execution.status"] == "cached"


def test_durations_come_from_the_status_history(
    instrument: Callable[..., Telemetry], database: Database, preset: None
) -> None:
    """A node queued a minute before this process started: its history says when."""
    ids = _queue(database, "train")
    with Session(database.engine) as session:
        node = session.get(ExecutionNode, ids["train"])
        minute_ago = (datetime.now(timezone.utc) - timedelta(seconds=60)).isoformat()
        node.extra_data = {HISTORY: [{"status": "QUEUED", "first_observed_at": minute_ago}]}
        session.commit()

    otel = instrument()  # a new process: no record of the row, only the database
    _set(database, ids["train"], Status.PENDING)
    (point,) = otel.transitions().values()
    assert point.attributes["execution.status.from"] == "queued"
    assert 60 <= point.sum < 62


def test_two_processes_share_the_database(
    instrument: Callable[..., Telemetry], database: Database, preset: None
) -> None:
    """This process queues nodes (an API server); another one runs them (the orchestrator)."""
    otel = instrument()
    ids = _queue(database, "train", "evaluate")
    time.sleep(0.2)
    documents = run_instrumented(HERE / "tangle_orchestrator.py", database.url)

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
        assert 0.2 <= point["sum"] < 10

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
