"""Dask distributed: one graph of one task, on a ``LocalCluster`` of one worker thread made for
the run, its client waiting on the task's future.

The cluster runs in this process (``processes=False``): the step is a closure of the check, and
the task calls it on the worker's thread while the graph's run is in flight here. A cluster is
made per run, not shared: the adapter adds its plugin to a scheduler when the scheduler is
made, so one made before ``instrument()`` would report nothing and one made under it would
outlive ``uninstrument()``; a cluster of threads is up and closed in about 0.1 s.

Per-task spans are off: the graph's ``RUN`` span is all a run reports, ending as its task
does. The step's exception reaches the caller from ``future.result()``.

An interrupt cannot be run as Dask would run it here. A ``KeyboardInterrupt`` raised by a task
is not caught by the worker (its task runner lets ``KeyboardInterrupt`` and ``SystemExit``
through, as asyncio does): it escapes to the worker's event loop and stops it. With worker
threads that loop is the whole cluster's (scheduler and client included), which dies with the
task forever ``processing``; with worker processes, the worker process dies, its nanny starts
another, the scheduler runs the task again, and once more workers died running it than
``distributed.scheduler.allowed-failures`` (3) allows, marks it erred with ``KilledWorker``
(``tests/dask/test_dask_lost_workers.py``).

What does reach a Dask user is an interrupt in the client's thread while it waits (Ctrl-C),
after which the client releases its futures (``Client.get`` does so in its ``finally``) and the
scheduler forgets the tasks: cancelled. That is what this scenario runs: the task hands the
step's interrupt to the client's thread, which raises it from its wait and cancels the future
while the task still runs; the task returns once the scheduler has forgotten it.
"""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any, ClassVar

from distributed import Client, Future, LocalCluster

from conformance.scenarios import Reported, Scenario, ending_with_the_step
from conformance.workload import Outcome, Step

PREFIX = "step"
"""The prefix of the task's key (a key is ``<prefix>-<token>``), which names its run."""

RUN = ("pipeline", f"RUN {PREFIX}")
"""The graph's run: the one span a run reports (per-task spans are off)."""

WAIT_SECONDS = 30.0
"""How long a run may take at most, before the scenario gives up on it."""

POLL_SECONDS = 0.01


class _Body:
    """What the task of the run in progress calls, and the interrupt it hands to the client."""

    step: ClassVar[Step | None] = None
    interrupt: ClassVar[KeyboardInterrupt | None] = None
    forgotten: ClassVar[threading.Event] = threading.Event()  # the scheduler let go of the task


def _task() -> Any:
    """The run's one task: the step, whose interrupt goes to the client's thread."""
    assert _Body.step is not None
    try:
        return _Body.step()
    except KeyboardInterrupt as interrupt:
        _Body.interrupt = interrupt  # to the client's thread, as Ctrl-C would reach it
        _Body.forgotten.wait(WAIT_SECONDS)
        return None


def _result(future: Future) -> Any:
    """The future's result, as ``future.result()`` gives it, or the interrupt the task handed
    over, raised from the wait."""
    deadline = time.monotonic() + WAIT_SECONDS
    while not future.done():
        if _Body.interrupt is not None:
            raise _Body.interrupt
        if time.monotonic() > deadline:
            raise TimeoutError("the scenario's run did not end")
        time.sleep(POLL_SECONDS)
    return future.result()


def _cancel(future: Future, cluster: LocalCluster) -> None:
    """Release the future, as the client does on an interrupt, and wait until the scheduler
    has forgotten its task (its run ended), before the task may return."""
    future.cancel()
    deadline = time.monotonic() + WAIT_SECONDS
    while future.key in cluster.scheduler.tasks and time.monotonic() < deadline:
        time.sleep(POLL_SECONDS)


class DaskScenario(Scenario):
    step = RUN
    reported: ClassVar[Reported] = ending_with_the_step(RUN)

    def run(self, step: Step) -> Outcome:
        _Body.step, _Body.interrupt = step, None
        _Body.forgotten.clear()
        try:
            with (
                LocalCluster(
                    n_workers=1, threads_per_worker=1, processes=False, dashboard_address=":0"
                ) as cluster,
                Client(cluster) as client,
            ):
                future = client.submit(_task, key=f"{PREFIX}-{uuid.uuid4().hex}")
                try:
                    value = _result(future)
                except KeyboardInterrupt:
                    _cancel(future, cluster)
                    raise
                finally:
                    _Body.forgotten.set()
                return Outcome((value, future.status), None)
        except BaseException as error:
            return Outcome(None, error)
        finally:
            _Body.step, _Body.interrupt = None, None


SCENARIO = DaskScenario()
