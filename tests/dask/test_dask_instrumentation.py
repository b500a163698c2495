"""What instrumenting changes for a Dask user: nothing in the computation's results and
exceptions, on clusters of two worker processes made before, under and after ``instrument()``;
a scheduler made before it gets no plugin; task prefixes beyond the name cap share one series;
workers are counted until they go offline with their cluster.

The cap and the worker count are the scheduler's part alone, the same whether its workers are
processes or threads: they run on a cluster of worker threads, up in a fraction of the
second a cluster of processes takes.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from dask import delayed
from dask_clusters import (
    ended_run,
    eventually,
    has_plugin,
    local_cluster,
    settled,
    worker_counts,
)
from distributed import Client, Future, LocalCluster

from opentelemetry_instrumentation_execstatus import ExecStatusInstrumentor


class Refused(Exception):
    """An exception of the user's own, with arguments: it must come back as it was raised."""


def square(x: int) -> int:
    return x * x


def divide(x: int, y: int) -> float:
    return x / y


def refuse(reason: str) -> None:
    raise Refused(reason, 7)


def tiny(x: int) -> int:
    return x


def _as_received(future: Future) -> tuple[Any, ...]:
    """A failed future as its client sees it: its status and its exception's type, arguments
    and text, and whether the traceback came with it."""
    error = future.exception()
    return future.status, type(error), error.args, str(error), future.traceback() is not None


def computation(client: Client) -> tuple[Any, ...]:
    """A small computation: results of a map and of a graph, an exception of the user's own
    class, a division by zero and the failure of a graph that depends on one."""
    squares = client.gather(client.map(square, range(10)))
    total = client.compute(delayed(sum)([delayed(square)(i) for i in range(4)])).result()
    refused = _as_received(client.submit(refuse, "not today"))
    divided = _as_received(client.submit(divide, 1, 0))
    graph = _as_received(client.compute(delayed(square)(delayed(divide)(2, 0))))
    return squares, total, refused, divided, graph


EXPECTED_RESULTS = ([x * x for x in range(10)], 14)


@pytest.fixture(scope="module")
def bare() -> Iterator[tuple[Client, LocalCluster, tuple[Any, ...]]]:
    """A cluster made before any ``instrument()``, and what the computation gives on it."""
    with local_cluster() as (client, cluster):
        yield client, cluster, computation(client)


def test_results_and_exceptions_are_those_of_a_bare_run_and_still_are_after_uninstrument(
    bare, instrument
) -> None:
    _client, _cluster, seen_bare = bare
    assert seen_bare[:2] == EXPECTED_RESULTS
    assert seen_bare[2][:3] == ("error", Refused, ("not today", 7))

    otel = instrument()
    with local_cluster() as (client, cluster):
        assert has_plugin(cluster)
        assert computation(client) == seen_bare
        ended_run(otel, "RUN refuse")
        settled(otel)
    assert otel.spans()  # it did record

    ExecStatusInstrumentor().uninstrument()
    recorded = len(otel.spans())
    with local_cluster() as (client, cluster):
        assert not has_plugin(cluster)  # a scheduler made afterwards gets none
        assert computation(client) == seen_bare
    assert len(otel.spans()) == recorded


def test_a_scheduler_made_before_instrument_gets_nothing_and_works_as_before(
    bare, instrument
) -> None:
    client, cluster, seen_bare = bare
    otel = instrument()
    assert not has_plugin(cluster)
    assert computation(client) == seen_bare
    assert otel.spans() == []
    assert otel.points("execution.status_transition.duration") == []
    assert otel.spawns() == {}


PREFIXES = ("alpha", "beta", "gamma", "delta", "epsilon")


def test_task_prefixes_beyond_the_name_cap_share_one_series(instrument) -> None:
    otel = instrument(name_cardinality_limit=3)
    with local_cluster(processes=False) as (client, _cluster):
        for prefix in PREFIXES:  # one graph each, in this order: the first three are admitted
            key = f"{prefix}-{uuid.uuid4().hex}"
            assert client.submit(tiny, 1, key=key).result() == 1
            ended_run(otel, f"RUN {prefix}")
        settled(otel)
    samples = otel.points("execution.status_transition.duration")
    steps = {p.attributes.get("cicd.pipeline.task.name") for p in samples if _is_step(p)}
    assert steps == {"alpha", "beta", "gamma", "_OTHER"}
    others = otel.transition_counts(cicd_pipeline_task_name="_OTHER")
    assert others[("running", "succeeded")] == 2  # delta's and epsilon's
    runs = {p.attributes.get("cicd.pipeline.name") for p in samples if not _is_step(p)}
    assert runs == {"alpha", "beta", "gamma", "_OTHER"}


def _is_step(point: Any) -> bool:
    return point.attributes.get("execution.level") == "step"


def test_workers_are_spawns_and_go_offline_when_their_cluster_closes(instrument) -> None:
    otel = instrument()
    with local_cluster(processes=False):
        eventually(lambda: worker_counts(otel) == {"available": 2}, "two available workers")
        assert otel.spawns() == {("success", None): 2}
    assert worker_counts(otel) == {"offline": 2}
