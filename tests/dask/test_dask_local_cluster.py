"""Dask's scheduler in this process (``LocalCluster``) with two worker processes, the in-memory
SDK: task states per prefix on the histogram, each graph a run, workers joining, the
computation's results and exceptions as they were.

The tests share one instrumented cluster (a cluster takes seconds to start), each with task
functions of its own: their names are the prefixes its samples are read by, and its spans are
those it made (the exporter is cleared before each test).
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from dask import delayed
from dask_clusters import (
    active_dask_executions,
    ended_run,
    eventually,
    execstatus_plugins,
    instrumented,
    local_cluster,
    settled,
    task_state,
    worker_counts,
)
from distributed import Client, LocalCluster
from support import Telemetry


def inc(x: int) -> int:
    return x + 1


def fail(x: int) -> int:
    raise ValueError(f"failed on {x}")


def fail_first(x: int) -> int:
    raise ValueError(f"the first failed on {x}")


def after(x: int) -> int:
    return x + 1


def nap(x: int) -> int:
    time.sleep(0.05)
    return x


def on_a_gpu() -> str:
    return "never runs: no worker has a GPU"


def slow(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


def waits_on_slow(x: float) -> float:
    return x


def held_up(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


def first_of_two(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


def second_of_two(x: float) -> float:
    return x


def tiny(x: int) -> int:
    return x


@pytest.fixture(scope="module")
def shared() -> Iterator[tuple[Client, LocalCluster, Telemetry]]:
    with instrumented() as otel, local_cluster() as (client, cluster):
        yield client, cluster, otel


@pytest.fixture
def cluster(shared) -> tuple[Client, Telemetry]:
    client, _cluster, otel = shared
    otel.exporter.clear()
    return client, otel


@pytest.fixture
def local(shared) -> LocalCluster:
    """The shared cluster itself, for its scheduler's view of a task."""
    return shared[1]


def test_tasks_are_measured_by_prefix_and_a_graph_is_a_run(cluster) -> None:
    client, otel = cluster
    assert sum(client.gather(client.map(inc, range(20)))) == sum(range(1, 21))
    run = ended_run(otel, "RUN inc")
    settled(otel)  # every task ended: execution.active is back to 0
    counts = otel.transition_counts(cicd_pipeline_task_name="inc")
    assert counts[("running", "succeeded")] == 20
    assert counts.get(("waiting", "running"), 0) + counts.get(("queued", "running"), 0) == 20
    assert run.attributes["execution.orchestrator"] == "dask"
    assert run.attributes["execution.status"] == "succeeded"
    assert [s.name for s in otel.spans()] == ["RUN inc"]  # no span per task
    assert active_dask_executions(otel) == {}


def test_a_failed_task_fails_its_run_and_its_exception_is_the_users(cluster) -> None:
    client, otel = cluster
    future = client.submit(fail, 1)
    with pytest.raises(ValueError, match="failed on 1"):
        future.result()
    run = ended_run(otel, "RUN fail")
    assert run.attributes["execution.status"] == "failed"
    assert run.attributes["error.type"] == "ValueError"
    assert otel.transition_counts(cicd_pipeline_task_name="fail")[("running", "failed")] == 1
    error = future.exception()
    assert type(error) is ValueError and error.args == ("failed on 1",)


def test_workers_joining_are_spawns(cluster) -> None:
    _client, otel = cluster
    assert otel.spawns() == {("success", None): 2}
    assert worker_counts(otel) == {"available": 2}


def test_the_dependents_of_a_failed_task_fail_with_it_in_one_run(cluster) -> None:
    client, otel = cluster
    last = delayed(after)(delayed(after)(delayed(fail_first)(1)))
    future = client.compute(last)
    with pytest.raises(ValueError, match="the first failed on 1") as raised:
        future.result()
    assert raised.type is ValueError  # the user's own, not a Dask wrapper
    run = ended_run(otel, "RUN after")
    assert run.attributes["execution.status"] == "failed"
    assert run.attributes["error.type"] == "ValueError"
    assert otel.transition_counts(cicd_pipeline_task_name="fail_first") == {
        ("waiting", "running"): 1,
        ("running", "failed"): 1,
    }
    assert otel.transition_counts(cicd_pipeline_task_name="after") == {("waiting", "failed"): 2}
    settled(otel)
    assert [span.name for span in otel.spans()] == ["RUN after"]  # the run ended once


def test_a_task_no_worker_can_run_is_pending_until_cancelled(cluster, local) -> None:
    client, otel = cluster
    future = client.submit(on_a_gpu, resources={"GPU": 1})
    eventually(lambda: task_state(local, future.key) == "no-worker", "no-worker")
    eventually(
        lambda: (
            active_dask_executions(otel) == {("step", "pending"): 1, ("pipeline", "running"): 1}
        ),
        "the task pending",
    )
    future.cancel()
    run = ended_run(otel, "RUN on_a_gpu")
    assert run.attributes["execution.status"] == "cancelled"
    assert "error.type" not in run.attributes
    assert otel.transition_counts(cicd_pipeline_task_name="on_a_gpu") == {
        ("waiting", "pending"): 1,
        ("pending", "cancelled"): 1,
    }
    settled(otel)


def test_more_tasks_than_threads_are_queued_at_the_scheduler(cluster) -> None:
    client, otel = cluster
    assert client.gather(client.map(nap, range(12))) == list(range(12))
    ended_run(otel, "RUN nap")
    counts = otel.transition_counts(cicd_pipeline_task_name="nap")
    assert counts[("waiting", "queued")] >= 1, counts  # 2 threads, at most 4 sent at a time
    assert counts[("queued", "running")] == counts[("waiting", "queued")]
    assert counts[("queued", "running")] + counts.get(("waiting", "running"), 0) == 12
    assert counts[("running", "succeeded")] == 12


def test_a_task_cancelled_while_waiting_ends_cancelled_and_so_does_its_run(cluster, local) -> None:
    client, otel = cluster
    first = client.submit(slow, 1.0)
    then = client.submit(waits_on_slow, first)
    eventually(lambda: task_state(local, then.key) == "waiting", "the dependent waiting")
    then.cancel()
    run = ended_run(otel, "RUN waits_on_slow")
    assert run.attributes["execution.status"] == "cancelled"
    assert otel.transition_counts(cicd_pipeline_task_name="waits_on_slow") == {
        ("waiting", "cancelled"): 1
    }
    assert first.result() == 1.0
    assert ended_run(otel, "RUN slow").attributes["execution.status"] == "succeeded"
    settled(otel)


def test_a_task_cancelled_while_running_is_cancelled_not_retried(cluster, local) -> None:
    """Its client let go of it: the scheduler releases it, then forgets it; it will not run
    again, so it is no retry."""
    client, otel = cluster
    future = client.submit(held_up, 1.0)
    eventually(lambda: task_state(local, future.key) == "processing", "the task running")
    future.cancel()
    run = ended_run(otel, "RUN held_up")
    assert run.attributes["execution.status"] == "cancelled"
    assert otel.transition_counts(cicd_pipeline_task_name="held_up") == {
        ("waiting", "running"): 1,
        ("running", "cancelled"): 1,
    }
    settled(otel)


def test_a_graph_cancelled_while_its_first_task_runs_is_cancelled_not_retried(
    cluster, local
) -> None:
    """Cancelling the key asked for lets go of the task it waits on too."""
    client, otel = cluster
    first = delayed(first_of_two)(1.0)
    future = client.compute(delayed(second_of_two)(first))
    eventually(lambda: task_state(local, first.key) == "processing", "the first task running")
    future.cancel()
    run = ended_run(otel, "RUN second_of_two")
    assert run.attributes["execution.status"] == "cancelled"
    assert otel.transition_counts(cicd_pipeline_task_name="first_of_two") == {
        ("waiting", "running"): 1,
        ("running", "cancelled"): 1,
    }
    assert otel.transition_counts(cicd_pipeline_task_name="second_of_two") == {
        ("waiting", "cancelled"): 1
    }
    settled(otel)


def test_a_graph_of_ten_thousand_tasks_is_one_run_on_one_series_per_prefix(cluster, local) -> None:
    client, otel = cluster
    started = time.perf_counter()
    futures = client.map(tiny, range(10_000))
    assert client.gather(futures) == list(range(10_000))
    elapsed = time.perf_counter() - started
    run = ended_run(otel, "RUN tiny")
    assert run.attributes["execution.status"] == "succeeded"
    settled(otel)
    points = [
        point
        for point in otel.points("execution.status_transition.duration")
        if point.attributes.get("cicd.pipeline.task.name") == "tiny"
    ]
    changes = {
        (p.attributes["execution.status.from"], p.attributes["execution.status.to"]) for p in points
    }
    assert len(points) == len(changes) <= 4, changes  # one series per change, not per task
    assert (
        sum(p.count for p in points if p.attributes["execution.status.to"] == "succeeded") == 10_000
    )
    assert [span.name for span in otel.spans()] == ["RUN tiny"]
    assert [plugin._tasks for plugin in execstatus_plugins(local)] == [{}]  # nothing kept of them
    del futures
    print(f"10,000 tasks instrumented: {elapsed:.2f} s")  # shown with -s, for the report
