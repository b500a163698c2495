"""A pool process that fails to start is a failed spawn with its reason, counted by the
worker's main process, on real parts: a Redis broker and a prefork worker under
``opentelemetry-instrument``, what it exports read back from the test's OTLP receiver.

The application (``apps/pool_start_app.py``) makes its pool processes start, exit, stop or
hang at ``worker_process_init`` as each test plans. The worker's metrics are exported when it
exits, not every 0.5 s, so that what each process exports is read once, at its end.
"""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from otlp_receiver import OtlpReceiver
from worker import CeleryWorker

QUIET = {"OTEL_PYTHON_DISABLED_INSTRUMENTATIONS": "celery", "OTEL_METRIC_EXPORT_INTERVAL": "600000"}
SPAWNS = "execution.worker.spawns"
REASON = "execution.worker.spawn_failure.reason"


def _plan(tmp_path: Path, *actions: str) -> tuple[Path, dict[str, str]]:
    plan = tmp_path / "pool-start-plan"
    plan.write_text("\n".join(actions))
    return plan, {"POOL_START_PLAN": str(plan)}


def _taken(plan: Path) -> list[tuple[int, str]]:
    """(pid, action) of each pool process started so far, in order."""
    taken = plan.with_name(plan.name + ".taken")
    lines = taken.read_text().splitlines() if taken.exists() else []
    return [(int(pid), action) for pid, action in (line.split() for line in lines)]


def _spawns(receiver: OtlpReceiver, pid: int) -> Counter[tuple[str, str | None]]:
    """The spawns ``pid`` counted, by outcome and failure reason."""
    return Counter(
        {
            (p.attributes["execution.worker.outcome"], p.attributes.get(REASON)): p.value
            for p in receiver.latest_points(SPAWNS)
            if p.pid == pid and p.attributes["execution.orchestrator"] == "celery"
        }
    )


def _wait(condition: Callable[[], Any], what: str, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (result := condition()):
        assert time.monotonic() < deadline, f"not yet {what}"
        time.sleep(0.05)
    return result


def test_a_replacement_that_exits_or_times_out_is_a_failed_spawn_with_its_reason(
    celery_worker: Callable[..., CeleryWorker],
    celery_client: Callable[..., Any],
    otlp_receiver: OtlpReceiver,
    tmp_path: Path,
) -> None:
    """A ready pool process killed is no failed spawn; billiard replaces it, and each of its
    replacements that does not come up is one, until one does: the worker runs tasks again.
    (Celery may notice an exit only at its next 5 s check of the pool: hence the long waits.)"""
    plan, env = _plan(tmp_path, "up", "up", "exit", "hang")
    worker = celery_worker("pool_start_app", env={**QUIET, **env, "POOL_ALIVE_TIMEOUT": "1"})
    first, second = worker.child_pids()
    os.kill(first, signal.SIGKILL)
    taken = _wait(lambda: len(_taken(plan)) == 5 and _taken(plan), "the last replacement")
    assert [action for _, action in taken] == ["up", "up", "exit", "hang", "up"]
    last = taken[-1][0]
    _wait(lambda: worker.child_pids() == sorted((second, last)), "the pool back to two")
    completed = celery_client(
        "from pool_start_app import add\nprint(add.delay(2, 3).get(timeout=20))",
        env={"OTEL_SDK_DISABLED": "true"},
    )
    assert completed.stdout.strip() == "5"
    assert worker.stop() == 0

    main = otlp_receiver.wait_for(lambda r: _spawns(r, worker.pid), what="the worker's spawns")
    assert main == {
        ("success", None): 1,  # the worker itself
        ("failure", "pod_ready"): 1,  # exit code 3
        ("failure", "timeout"): 1,  # SIGKILL from Celery: not up in 1 s
    }
    # A process that started counts its own spawn. (``last`` is not looked at: forked after
    # the worker counted, it also exports the worker's counts as they were at its fork.)
    assert otlp_receiver.wait_for(lambda r: _spawns(r, second), what="a process's spawn") == {
        ("success", None): 1
    }
    assert otlp_receiver.errors() == []


def test_pool_processes_gone_at_the_first_start_are_failed_spawns_and_the_worker_stops(
    celery_worker: Callable[..., CeleryWorker], otlp_receiver: OtlpReceiver, tmp_path: Path
) -> None:
    """Celery checks its first processes once, after ``worker_ready`` (slowed here so that both
    are gone by then): any gone, the worker stops with "Could not start worker processes", as
    without the instrumentation."""
    plan, env = _plan(tmp_path, "exit", "term")
    worker = celery_worker("pool_start_app", env={**QUIET, **env, "READY_DELAY": "1"})
    assert worker.process is not None and worker.process.wait(timeout=20) == 1
    assert "Could not start worker processes" in worker.log.read_text()
    assert sorted(action for _, action in _taken(plan)) == ["exit", "term"]
    main = otlp_receiver.wait_for(lambda r: _spawns(r, worker.pid), what="the worker's spawns")
    assert main == {
        ("success", None): 1,
        ("failure", "pod_ready"): 1,  # exit code 3
        ("failure", "context_canceled"): 1,  # SIGTERM
    }
