"""Dask worker processes lost while they run a task: the scheduler runs the task again
elsewhere (a retry), or, past ``allowed-failures``, marks it erred with ``KilledWorker``, which
is also what a task's ``KeyboardInterrupt`` comes to (it stops its worker process).

The tests share one instrumented cluster of two worker processes, whose nannies start a new
worker for each one killed.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from dask_clusters import ended_run, eventually, instrumented, local_cluster, settled, task_state
from distributed import Client, LocalCluster
from distributed.scheduler import KilledWorker
from support import Telemetry


def hangs_the_first_time(marker: str) -> str:
    """Hangs on its first run (its worker is killed meanwhile), returns on the next."""
    first = Path(marker)
    if not first.exists():
        first.touch()
        time.sleep(60)
    return "done"


def interrupted() -> None:
    raise KeyboardInterrupt


@pytest.fixture(scope="module")
def shared() -> Iterator[tuple[Client, LocalCluster, Telemetry]]:
    with instrumented() as otel, local_cluster() as (client, cluster):
        yield client, cluster, otel


def _spawned(otel: Telemetry) -> int:
    return otel.spawns().get(("success", None), 0)


def _kill_the_worker_running(client: Client, cluster: LocalCluster, key: str) -> None:
    """SIGKILL the worker process running task ``key``, as the OOM killer would."""
    eventually(lambda: task_state(cluster, key) == "processing", "the task running")
    address = cluster.scheduler.tasks[key].processing_on.address
    os.kill(client.run(os.getpid)[address], signal.SIGKILL)


def test_a_task_whose_worker_is_killed_is_retried_and_its_run_succeeds(shared, tmp_path) -> None:
    client, cluster, otel = shared
    otel.exporter.clear()
    spawned = eventually(lambda: _spawned(otel) >= 2 and _spawned(otel), "the two workers")
    future = client.submit(hangs_the_first_time, str(tmp_path / "started"))
    _kill_the_worker_running(client, cluster, future.key)
    assert future.result(timeout=60) == "done"
    run = ended_run(otel, "RUN hangs_the_first_time")
    assert run.attributes["execution.status"] == "succeeded"
    settled(otel)
    counts = otel.transition_counts(cicd_pipeline_task_name="hangs_the_first_time")
    assert counts.pop(("running", "retrying")) == 1
    again = {change: n for change, n in counts.items() if change[0] == "retrying"}
    assert sum(again.values()) == 1, counts  # then waiting, queued or running again
    assert set(again) <= {("retrying", s) for s in ("waiting", "queued", "running")}, counts
    assert counts[("running", "succeeded")] == 1
    eventually(lambda: _spawned(otel) == spawned + 1, "the nanny's new worker")


def test_a_keyboard_interrupt_in_a_task_kills_its_worker_and_fails_its_run(shared) -> None:
    """Dask's worker lets a task's ``KeyboardInterrupt`` through to its event loop, which
    stops, and its process with it: a lost worker, the task run again until its failures
    exceed ``allowed-failures`` (0 here, to be quick), then erred with ``KilledWorker``."""
    client, cluster, otel = shared
    otel.exporter.clear()
    allowed, cluster.scheduler.allowed_failures = cluster.scheduler.allowed_failures, 0
    try:
        future = client.submit(interrupted)
        with pytest.raises(KilledWorker):
            future.result(timeout=60)
    finally:
        cluster.scheduler.allowed_failures = allowed
    run = ended_run(otel, "RUN interrupted")
    assert run.attributes["execution.status"] == "failed"
    assert run.attributes["error.type"] == "KilledWorker"
    assert otel.transition_counts(cicd_pipeline_task_name="interrupted") == {
        ("waiting", "running"): 1,
        ("running", "failed"): 1,
    }
