"""Celery's prefork pool: a pool process that exits before it is up is a spawn that failed.

What Celery and billiard do (read from their source, Celery 5.6 and 5.7 with billiard 4.2
and 4.3, and run with a prefork worker on Redis):

- The worker's main process forks each pool process (``AsynPool._create_worker_process``).
  The child runs ``process_initializer``, which sends ``worker_process_init`` (where a pool
  process counts its own successful spawn), then tells the main process it is up with a
  ``WORKER_UP`` message. Only once the main process has read it (``on_process_alive``) does
  the process get work: its input queue is then in ``_fileno_to_inq``.
- A receiver of ``worker_process_init`` that raises an ``Exception`` does not stop the start:
  ``Signal.send`` logs it and goes on. A start fails when the child exits before
  ``WORKER_UP``: ``sys.exit()`` or another ``BaseException`` in the initializer (billiard calls
  it outside its ``try``; the exit code is the ``SystemExit``'s, else 1), a signal, or Celery's
  own kill: a replacement process not up within ``worker_proc_alive_timeout`` (4 s) is sent
  SIGKILL ("Timed out waiting for UP message"). The processes of the first start are not timed.
- No signal says so. billiard's ``Pool._join_exited_workers`` reaps each exited process (its
  ``exitcode``, negative for a signal) and takes it out of the pool: at each process exit
  and every 5 s (``maintain_pool``, which forks a replacement, again and again unless there
  are more than 100 restarts per process within a second; an exit seen before the process
  can be reaped waits for the next 5 s) and once at the first start (``did_start_ok``:
  a process gone by then stops the worker with "Could not start worker processes"). At
  shutdown it runs with ``shutdown=True`` or with the pool no longer running.

So each call of ``_join_exited_workers`` while the pool runs is wrapped: a process that was
not up before it and is out of the pool after it failed to start, counted once (it is reaped
once) in the worker's main process. Its reason: ``timeout`` when Celery was timing it and it
died of SIGKILL after the timeout; ``context_canceled`` when SIGTERM or SIGINT stopped it;
``pod_ready`` (created, never ready) for any other exit. A process stopped on purpose (the
autoscaler's ``terminate_controlled``) is no failure. Only Celery's ``AsynPool`` (the event
loop's pool, used with Redis and AMQP) knows when a process is up; another pool is left alone.
A process made to exit by a ``worker_process_init`` receiver connected after this package's
has counted its own success already; it is exported only if the process exported before it
died (a periodic export).
"""

from __future__ import annotations

import signal
import time
import weakref
from typing import Any, NamedTuple

from opentelemetry_instrumentation_execstatus.adapters.base import AdapterWorkers
from opentelemetry_instrumentation_execstatus.adapters.calls import bind, observe_call
from opentelemetry_instrumentation_execstatus.patching import Patch
from opentelemetry_instrumentation_execstatus.semconv import SpawnFailureReason

_CANCELLING_SIGNALS = frozenset((signal.SIGTERM, signal.SIGINT))


def _join_arguments(shutdown: bool = False) -> bool:
    """``Pool._join_exited_workers``'s arguments."""
    return shutdown


class _Starting(NamedTuple):
    """A pool process not up yet when its pool looked for exited processes."""

    process: Any
    timed: bool  # Celery was timing its start (it kills it after worker_proc_alive_timeout)


class PoolStarts:
    """The pool processes of this worker that exit before they are up, as failed spawns."""

    def __init__(self, workers: AdapterWorkers) -> None:
        self._workers = workers
        # Pool process -> when its fork began (monotonic): whether its timeout had passed.
        self._created: weakref.WeakKeyDictionary[Any, float] = weakref.WeakKeyDictionary()

    def patches(self) -> list[Patch]:
        creating = observe_call(
            on_call=self._creating, on_success=self._created_at, name="celery pool fork"
        )
        joining = observe_call(
            on_call=self._joining, after_call=self._joined, name="celery pool exits"
        )
        return [
            Patch("celery.concurrency.asynpool", "AsynPool._create_worker_process", creating),
            Patch("billiard.pool", "Pool._join_exited_workers", joining),
        ]

    def _creating(self, _pool: Any, _args: tuple, _kwargs: dict) -> float | None:
        return None if self._workers.is_off() else time.monotonic()

    def _created_at(self, started: float, process: Any) -> None:
        self._created[process] = started

    def _joining(self, pool: Any, args: tuple, kwargs: dict) -> tuple[Any, list[_Starting]] | None:
        """The pool's processes not up yet, unless the pool is stopping (or is not Celery's
        ``AsynPool``, or nothing records)."""
        if self._workers.is_off() or bind(_join_arguments, args, kwargs):
            return None
        up = getattr(pool, "_fileno_to_inq", None)  # AsynPool's: input queue -> process
        if up is None:
            return None
        from billiard.pool import RUN  # loaded: this is one of its pools

        if pool._state != RUN:
            return None
        timed = pool._waiting_to_start
        starting = [
            _Starting(process, process in timed)
            for process in pool._pool
            if up.get(process.inqW_fd) is not process
            and not getattr(process, "_controlled_termination", False)
        ]
        return (pool, starting) if starting else None

    def _joined(self, state: tuple[Any, list[_Starting]]) -> None:
        pool, starting = state
        for process, timed in starting:
            if process not in pool._pool:
                self._workers.spawn(False, self._reason(pool, process, timed))

    def _reason(self, pool: Any, process: Any, timed: bool) -> SpawnFailureReason:
        exit_code = process.exitcode
        if exit_code == -signal.SIGKILL and timed:
            created = self._created.get(process)
            timeout = pool._proc_alive_timeout
            if created is not None and time.monotonic() - created >= timeout:
                return SpawnFailureReason.TIMEOUT
        if isinstance(exit_code, int) and -exit_code in _CANCELLING_SIGNALS:
            return SpawnFailureReason.CONTEXT_CANCELED
        return SpawnFailureReason.POD_READY
