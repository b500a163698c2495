"""A small home-grown control plane that reports through the public API, and nothing else.

Run it under ``opentelemetry-instrument`` to see its jobs as spans and its workers as counters::

    opentelemetry-instrument --traces_exporter console --metrics_exporter console \\
        python examples/control_plane.py [--runs N]

The only telemetry code is calls to ``opentelemetry_instrumentation_execstatus.api``, as in a
control plane of your own. It starts three worker threads (worker-2's first spawn fails: its
pod never becomes ready, and it is spawned again), then runs the ``nightly`` pipeline: a queue
of six jobs, each a step of the run, handed to idle workers tick by tick. Each tick it also
health-checks every worker. worker-3 hangs on the first job it gets, fails its health check and
is drained; that job goes back to the queue and another worker runs it (running -> queued ->
running: a retry). The ``audit`` job raises, so the run fails. At the end every worker is
drained. Everything is deterministic: which worker runs which job, every count, every status.
"""

from __future__ import annotations

import argparse
import queue
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Callable

from opentelemetry_instrumentation_execstatus import api

WORKERS = ("worker-1", "worker-2", "worker-3")
NOT_READY_ON_FIRST_SPAWN = frozenset({"worker-2"})  # its first pod never becomes ready
HANGING = frozenset({"worker-3"})  # on a bad node: hangs on the first job it gets
SPAWN_ATTEMPTS = 3
PING_TIMEOUT_SECONDS = 0.05
WAIT_TIMEOUT_SECONDS = 5.0  # a worker thread that does not answer by then is a bug here


class WorkerUnresponsive(TimeoutError):
    """A worker did not answer its health check in time."""


class WorkerNotReady(RuntimeError):
    """A worker never became ready to take work."""


def _work() -> None:
    time.sleep(0.005)


def _audit() -> None:
    time.sleep(0.005)
    raise ValueError("3 orders have no customer")


JOBS: tuple[tuple[str, Callable[[], None]], ...] = (
    ("extract_orders", _work),
    ("extract_customers", _work),
    ("load_orders", _work),  # first handed to worker-3, which hangs: retried elsewhere
    ("load_customers", _work),
    ("audit", _audit),  # fails
    ("publish_report", _work),
)


@dataclass
class Job:
    name: str
    work: Callable[[], None]
    execution_id: str
    status: str = "queued"


class Worker:
    """A worker thread that runs one job at a time from its inbox and reports its own state."""

    def __init__(self, name: str, *, becomes_ready: bool, hangs: bool) -> None:
        self.name = name
        self._becomes_ready = becomes_ready
        self._hangs = hangs
        self._inbox: queue.Queue[Job | None] = queue.Queue()
        self._ready: queue.Queue[bool] = queue.Queue()
        self._started = threading.Semaphore(0)  # released once per job, when it starts
        self._finished = threading.Semaphore(0)  # and when it ends
        self._responsive = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    # -- what the control plane calls ------------------------------------------------------

    def start(self) -> bool:
        """Start the thread; whether the worker became ready."""
        self._thread.start()
        return self._ready.get(timeout=WAIT_TIMEOUT_SECONDS)

    def assign(self, job: Job) -> None:
        """Hand over a job; returns once the worker has started it."""
        self._inbox.put(job)
        self._wait(self._started, "start")

    def wait_finished(self) -> None:
        self._wait(self._finished, "finish")

    def ping(self) -> None:
        """The health endpoint: a hung worker does not answer."""
        if not self._responsive.wait(PING_TIMEOUT_SECONDS):
            raise WorkerUnresponsive(f"{self.name} did not answer within {PING_TIMEOUT_SECONDS}s")

    def stop(self) -> bool:
        """Stop taking work, abandon a hung job, and exit; whether the thread has exited."""
        self._stop.set()
        self._inbox.put(None)
        self._thread.join(WAIT_TIMEOUT_SECONDS)
        return not self._thread.is_alive()

    def _wait(self, signal: threading.Semaphore, what: str) -> None:
        if not signal.acquire(timeout=WAIT_TIMEOUT_SECONDS):
            raise RuntimeError(f"{self.name} did not {what} its job in time")

    # -- the worker's own thread -----------------------------------------------------------

    def _run(self) -> None:
        if not self._becomes_ready:
            self._ready.put(False)
            return
        self._responsive.set()
        api.report_worker_state(self.name, "available")
        self._ready.put(True)
        while (job := self._inbox.get()) is not None:
            api.report_worker_state(self.name, "busy")
            api.report_status(job.execution_id, "running")
            if self._hangs:
                self._responsive.clear()
                self._started.release()
                self._stop.wait()  # stuck until drained; the control plane requeues the job
                return
            self._started.release()
            try:
                job.work()
            except Exception as error:
                job.status = "failed"
                api.report_status(job.execution_id, "failed", error=error)
            else:
                job.status = "succeeded"
                api.report_status(job.execution_id, "succeeded")
            api.report_worker_state(self.name, "available")
            self._finished.release()


class ControlPlane:
    """Spawns workers, queues a run's jobs, and each tick dispatches and health-checks."""

    def __init__(self, worker_names: tuple[str, ...] = WORKERS) -> None:
        self._worker_names = worker_names
        self._workers: list[Worker] = []
        self._queue: deque[Job] = deque()
        self._jobs: list[Job] = []
        self._run_id: str | None = None

    def start(self) -> None:
        """Spawn every worker, retrying a spawn whose worker never became ready."""
        for name in self._worker_names:
            self._workers.append(self._spawn(name))

    def submit(
        self, run_id: str, pipeline: str, jobs: tuple[tuple[str, Callable[[], None]], ...]
    ) -> None:
        """Queue a pipeline run's jobs, each one a step of the run."""
        self._run_id = run_id
        api.report_status(run_id, "queued", level="pipeline", pipeline=pipeline)
        for name, work in jobs:
            job = Job(name, work, execution_id=f"{run_id}/{name}")
            api.report_status(job.execution_id, "queued", level="step", name=name, parent_id=run_id)
            self._jobs.append(job)
            self._queue.append(job)

    def has_work(self) -> bool:
        return bool(self._queue)

    def tick(self) -> None:
        """Hand queued jobs to the workers, health-check every worker, wait for the jobs.

        A worker that fails its health check is drained, and the job it held goes back to the
        front of the queue for the next tick.
        """
        if self._run_id is not None:
            api.report_status(self._run_id, "running")  # from the second tick on: ignored
        running = []
        for worker in self._workers:
            if not self._queue:
                break
            job = self._queue.popleft()
            worker.assign(job)
            running.append((worker, job))
        for worker in list(self._workers):
            if not self._healthy(worker):
                self._workers.remove(worker)
                self._drain(worker)
                for held in [job for owner, job in running if owner is worker]:
                    api.report_status(held.execution_id, "queued")
                    self._queue.appendleft(held)
        for worker, _ in running:
            if worker in self._workers:
                worker.wait_finished()
        if not self._queue and self._run_id is not None:
            failed = any(job.status == "failed" for job in self._jobs)
            api.report_status(self._run_id, "failed" if failed else "succeeded")
            self._run_id = None

    def shutdown(self) -> dict[str, str]:
        """Drain every worker; the final status of each job, by name."""
        while self._workers:
            self._drain(self._workers.pop(0))
        return {job.name: job.status for job in self._jobs}

    def _spawn(self, name: str) -> Worker:
        for attempt in range(1, SPAWN_ATTEMPTS + 1):
            api.report_worker_state(name, "spawning")
            worker = Worker(
                name,
                becomes_ready=attempt > 1 or name not in NOT_READY_ON_FIRST_SPAWN,
                hangs=name in HANGING,
            )
            if worker.start():
                api.report_worker_spawn(success=True)
                return worker
            api.report_worker_spawn(success=False, reason="pod_ready")
            api.report_worker_state(name, None)  # that attempt's pod is gone
        raise WorkerNotReady(f"{name} never became ready in {SPAWN_ATTEMPTS} attempts")

    @staticmethod
    def _healthy(worker: Worker) -> bool:
        try:
            with api.health_check():
                worker.ping()
        except WorkerUnresponsive:
            return False
        return True

    @staticmethod
    def _drain(worker: Worker) -> None:
        api.report_worker_state(worker.name, "draining")
        with api.worker_drain():
            if not worker.stop():
                raise RuntimeError(f"{worker.name} did not stop")
        api.report_worker_state(worker.name, None)  # retired: no longer a worker


def main(run_id: str = "nightly-1") -> dict[str, str]:
    """Run the nightly pipeline on three workers; the final status of each job. Each run has
    an id of its own, which its spans carry as the run id (a run reported again under an id
    that has ended would be a new execution too)."""
    control_plane = ControlPlane()
    control_plane.start()
    control_plane.submit(run_id, "nightly", JOBS)
    while control_plane.has_work():
        control_plane.tick()
    return control_plane.shutdown()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1, help="runs of the pipeline, one by one")
    for number in range(1, parser.parse_args().runs + 1):
        for job_name, final_status in main(f"nightly-{number}").items():
            print(f"{job_name}: {final_status}")
