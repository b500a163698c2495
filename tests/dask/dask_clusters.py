"""What the Dask tests share: the cluster they run on, an instrumentation a module's tests
share with it, and waits for what the scheduler reports on its own thread.

The scheduler of a ``LocalCluster`` runs in the test's process, on its event loop's thread;
its plugin reports there, a few instants after the client saw the result of the task that
ended a run. So a test waits for what it reads (``ended_run``, ``settled``) rather than
reading it at once.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Callable

from distributed import Client, LocalCluster
from support import Telemetry

from opentelemetry_instrumentation_execstatus import ExecStatusInstrumentor

WAIT_SECONDS = 20.0
POLL_SECONDS = 0.02


@contextmanager
def local_cluster(**options: Any) -> Iterator[tuple[Client, LocalCluster]]:
    """A ``LocalCluster`` of two single-threaded worker processes (``options`` override), its
    dashboard on a free port, and a client of it."""
    settings = {
        "n_workers": 2,
        "threads_per_worker": 1,
        "processes": True,
        "dashboard_address": ":0",
        **options,
    }
    with LocalCluster(**settings) as cluster, Client(cluster) as client:
        yield client, cluster


@contextmanager
def instrumented(**options: Any) -> Iterator[Telemetry]:
    """Instrumented with a fresh in-memory SDK for the block (the ``instrument`` fixture's
    work, for a module's cluster shared by its tests); uninstrumented afterwards."""
    otel = Telemetry()
    instrumentor = ExecStatusInstrumentor()
    instrumentor.instrument(
        tracer_provider=otel.tracer_provider, meter_provider=otel.meter_provider, **options
    )
    try:
        yield otel
    finally:
        instrumentor.uninstrument()


def execstatus_plugins(cluster: LocalCluster) -> list[Any]:
    """The plugins of this package that the cluster's scheduler has (found by their class's
    module, whatever their name: a version without the adapter has none to import)."""
    return [
        plugin
        for plugin in cluster.scheduler.plugins.values()
        if type(plugin).__module__.startswith("opentelemetry_instrumentation_execstatus")
    ]


def has_plugin(cluster: LocalCluster) -> bool:
    return bool(execstatus_plugins(cluster))


def eventually(condition: Callable[[], Any], what: str, timeout: float = WAIT_SECONDS) -> Any:
    """``condition()`` once it is true (polled), else the test fails saying ``what``."""
    deadline = time.monotonic() + timeout
    while not (found := condition()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(POLL_SECONDS)
    return found


def ended_run(otel: Telemetry, name: str) -> Any:
    """The span of run ``name`` once it ended (one, and only one, by then)."""
    eventually(lambda: any(span.name == name for span in otel.spans()), f"span {name!r}")
    return otel.span(name)


def active_dask_executions(otel: Telemetry) -> dict[tuple[str, str], int]:
    """``execution.active`` of the Dask adapter, by (level, status), the zeros left out."""
    return {
        (point.attributes["execution.level"], point.attributes["execution.status"]): point.value
        for point in otel.points("execution.active")
        if point.attributes.get("execution.orchestrator") == "dask" and point.value
    }


def settled(otel: Telemetry) -> None:
    """Wait until no Dask execution is active: every task and run the scheduler followed has
    ended."""
    eventually(lambda: not active_dask_executions(otel), "no active Dask execution")


def task_state(cluster: LocalCluster, key: Any) -> str | None:
    """The scheduler's state of task ``key`` (None: it holds no such task)."""
    task = cluster.scheduler.tasks.get(key)
    return None if task is None else task.state


def worker_counts(otel: Telemetry) -> dict[str, int]:
    """``execution.worker.count`` of the Dask adapter by ``cicd.worker.state``, zeros left out."""
    return {
        point.attributes["cicd.worker.state"]: point.value
        for point in otel.points("execution.worker.count")
        if point.attributes.get("execution.orchestrator") == "dask" and point.value
    }
