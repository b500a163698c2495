"""Celery 5.x: every task attempt as a step execution across the processes it passes through,
and the worker lifecycle, from ``celery.signals`` (nothing is patched).

What Celery does (read from its source, 5.7, and run with a prefork worker on Redis):

- The caller publishes the task (``before_task_publish``, in its thread). The worker's main
  process, the consumer, receives the message (``task_received``), holds it until its ETA if it
  has one, then hands it to a pool process; a forked pool child runs it (``task_prerun``, the
  body, ``task_success`` / ``task_failure`` / ``task_retry``, ``task_postrun``). In eager mode
  (``task_always_eager``, ``apply()``) the body runs in the caller's thread with only the
  child's signals.
- A message carries no publish time. The publishing process adds one to its headers
  (``execstatus_published``), with the caller's trace context (the configured propagator); the
  consumer adds the time it received the message (``execstatus_received``) to the request it
  hands to the pool (``Request.request_dict``), which the child reads back from
  ``task.request``. Headers reach ``task.request`` as attributes.
- A retry publishes a new message with the same id and ``retries`` one higher, from inside
  the running task and before ``task_retry``.

Each attempt is one execution (key: the task id and its retry number), named by the task, with
the task id as its run id and ``execution.attempt`` 1 for the first run, 2 for the first
retry, and so on, as on every orchestrator:

========================  =============  ==========================================
Celery                    status         where it is reported
========================  =============  ==========================================
published                 ``queued``     carried in the headers
received, ETA ahead       ``waiting``    carried (the consumer's time)
received                  ``pending``    carried: reserved, waiting for a pool process
``task_prerun``           ``running``    the pool child
``task_success``          ``succeeded``  the pool child
``task_failure``          ``failed``     the pool child, with ``error.type``
``task_retry``            ``retrying``   the pool child; the attempt's span ends there
revoked before it ran     ``cancelled``  the consumer
revoked while running     ``cancelled``  the pool child (``task_postrun`` with no state)
rejected, unknown task    ``failed``     the consumer
========================  =============  ==========================================

The process that sees an attempt end writes its span: the pool child reports the carried
statuses at their times when the task starts, so the span begins at the publish, under the
caller's context, with an event per status, and each status's time is one sample on
``execution.status_transition.duration``: the broker queue time (``queued``), the ETA or
countdown wait (``waiting``), the time reserved in the worker (``pending``), the run time
(``running``). The next attempt begins ``retrying`` at its message's publish, in the trace of
the attempt that retried it, so the wait before each retry is the time in ``retrying`` (its
countdown and its queue); it is received ``retrying`` still, and an ETA it has is that wait.
Clocks of different machines may disagree: a negative time clamps to 0.

Canvases: a chain or a chord is a pipeline run (``celery_canvas``), named by its kind and the
task whose result is its own (``chain tasks.add``), with the id of that result, the one
``apply_async()`` returned. The process that applies it reserves the run's span
(``reserved_spans``) and its messages carry it; each of its tasks runs under it, and the pool
process that runs its last task, or the link that breaks it, or the header task after which
Celery fails the chord, writes it: ``running`` from the canvas's publish to that end. A
retried task stays in its run, its next attempt under the attempt that retried it.

Workers: the worker's start (``worker_ready``) and each pool process's (``worker_process_init``)
are spawns; ``heartbeat_sent`` is a health check that passed; a warm shutdown is a drain whose
duration is recorded when the worker has shut down (a cold one is a failed drain). Each pool
process is a worker of its own in the count, available, busy while it runs a task, offline
when it shuts down. A pool child exits without interpreter shutdown (recycled by
``worker_max_tasks_per_child``, or stopped with its worker), so it exports what it recorded at
``worker_process_shutdown``. A pool process that exits before it is up is a failed spawn,
counted by the worker's main process with its reason (see ``celery_pool``).
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Hashable, Mapping, MutableMapping
from typing import Any, Callable, Final, NamedTuple

from opentelemetry_instrumentation_execstatus import tracing
from opentelemetry_instrumentation_execstatus.adapters import celery_canvas as canvas
from opentelemetry_instrumentation_execstatus.adapters.base import Adapter
from opentelemetry_instrumentation_execstatus.adapters.calls import observe_call
from opentelemetry_instrumentation_execstatus.adapters.celery_pool import PoolStarts
from opentelemetry_instrumentation_execstatus.adapters.outcomes import outcome_of
from opentelemetry_instrumentation_execstatus.identity import Identity
from opentelemetry_instrumentation_execstatus.patching import AnyPatch, OnImport, Patch
from opentelemetry_instrumentation_execstatus.safety import guarded
from opentelemetry_instrumentation_execstatus.semconv import (
    ExecutionLevel,
    ExecutionStatus,
    Orchestrator,
    WorkerState,
)
from opentelemetry_instrumentation_execstatus.telemetry import Telemetry

PUBLISHED: Final = "execstatus_published"
"""Header: when the message was published (seconds since the epoch)."""
RECEIVED: Final = "execstatus_received"
"""Request field: when the consumer received the message (seconds since the epoch)."""
ETA_AHEAD: Final = "execstatus_eta"
"""Request field: the message was received before its ETA (it waited for it)."""
CONTRIB_MODULE, CONTRIB_INSTRUMENTOR = "opentelemetry.instrumentation.celery", "CeleryInstrumentor"
"""opentelemetry-instrumentation-celery: when it is on, it makes the tasks' spans."""

_QUEUED, _WAITING, _PENDING = (
    ExecutionStatus.QUEUED,
    ExecutionStatus.WAITING,
    ExecutionStatus.PENDING,
)
_RUNNING, _RETRYING = ExecutionStatus.RUNNING, ExecutionStatus.RETRYING
_SUCCEEDED = ExecutionStatus.SUCCEEDED
_CANCELLED, _FAILED = ExecutionStatus.CANCELLED, ExecutionStatus.FAILED

# The signals connected, by name, and the method of the adapter each calls.
_RECEIVERS: Final = (
    ("before_task_publish", "_on_publish"),
    ("task_received", "_on_received"),
    ("task_prerun", "_on_prerun"),
    ("task_success", "_on_success"),
    ("task_failure", "_on_failure"),
    ("task_retry", "_on_retry"),
    ("task_postrun", "_on_postrun"),
    ("task_revoked", "_on_revoked"),
    ("task_rejected", "_on_rejected"),
    ("task_unknown", "_on_unknown"),
    ("worker_ready", "_on_worker_ready"),
    ("worker_process_init", "_on_process_init"),
    ("worker_process_shutdown", "_on_process_shutdown"),
    ("heartbeat_sent", "_on_heartbeat"),
    ("worker_shutting_down", "_on_shutting_down"),
    ("worker_shutdown", "_on_shutdown"),
)


class _Attempt(NamedTuple):
    """A task attempt this process runs: its key, identity and the context made current."""

    key: Hashable
    identity: Identity
    token: object | None
    pooled: bool  # run by a worker's pool (not eagerly): the worker is busy meanwhile
    # Next to opentelemetry-instrumentation-celery, until the attempt's end: when it started,
    # and what its message carried (reported then, inside that instrumentation's span).
    started: float | None
    carried: Mapping[str, Any] | None
    run: Mapping[str, Any] | None  # the canvas run it is a task of (``celery_canvas``)
    fields: Mapping[str, Any]  # its request's fields: what follows it in its run


def _carried(fields: Mapping[str, Any]) -> dict[str, Any]:
    """What a message carries of an attempt's past: its retry number, publish and receive
    times, and whether it came before its ETA."""
    return {name: fields.get(name) for name in ("retries", PUBLISHED, RECEIVED, ETA_AHEAD)}


class CeleryAdapter(Adapter):
    """Tasks, their attempts and Celery's workers, from ``celery.signals``."""

    name = "celery"
    orchestrator = Orchestrator.CELERY
    top_module = "celery"
    distribution = "celery"
    supported = ">= 5.3, < 6"

    def __init__(self, telemetry: Telemetry) -> None:
        super().__init__(telemetry)
        self._lock = threading.Lock()
        # Attempts running in this process, by task id (a pool child runs one at a time;
        # eager tasks nest in their caller's thread).
        self._running: dict[str, _Attempt] = {}
        self._drain_started: float | None = None
        # The run the last header task of a chord this thread published belongs to: the
        # chord's other header tasks, published next, belong to it too.
        self._publishing = threading.local()

    def patches(self) -> list[AnyPatch]:
        chord_error = observe_call(on_call=self._on_chord_error, name="celery chord error")
        return [
            OnImport("celery.signals", self._connect),
            Patch("celery.backends.base", "Backend.chord_error_from_stack", chord_error),
            *PoolStarts(self.workers).patches(),
        ]

    def _connect(self, signals: Any) -> Callable[[], None]:
        """Connect every receiver (strongly: they are methods of an adapter that lives until
        ``uninstrument()``); returns what disconnects them."""
        connected: list[tuple[Any, Callable[..., Any]]] = []
        for signal_name, method in _RECEIVERS:
            signal, receiver = getattr(signals, signal_name), getattr(self, method)
            signal.connect(receiver, weak=False)
            connected.append((signal, receiver))

        def disconnect() -> None:
            for signal, receiver in connected:
                signal.disconnect(receiver)

        return disconnect

    # -- the publishing process -------------------------------------------------------------

    @guarded
    def _on_publish(
        self, headers: MutableMapping[str, Any] | None = None, body: Any = None, **_: Any
    ) -> None:
        """Stamp the message with its publish time, the canvas run it belongs to if any, and
        the trace context its task runs under: its run's span, else the current context (a
        retry, published from inside its task: that attempt's), unless
        opentelemetry-instrumentation-celery propagates it (its producer span's)."""
        if headers is None or self.is_off():
            return
        headers[PUBLISHED] = time.time()
        retried = self._running.get(str(headers.get("id"))) if self._running else None
        run = retried.run if retried is not None else self._run_of(headers, body)
        if run is not None:
            headers[canvas.RUN] = run
        if not tracing.is_instrumented_by(CONTRIB_MODULE, CONTRIB_INSTRUMENTOR):
            under_run = run is not None and retried is None
            tracing.inject(
                headers, tracing.reserved_parent(run[canvas.SPAN]) if under_run else None
            )

    def _run_of(self, headers: Mapping[str, Any], body: Any) -> dict[str, Any] | None:
        """The canvas run a message belongs to (``celery_canvas``): the run of the task
        publishing it, if it is that task's successor there, else the run it starts."""
        embed = canvas.embed_of(body)
        for publisher in self._publishers(headers):
            if publisher.run is None:
                continue
            following, body_ids = canvas.successor_ids(publisher.fields)
            if canvas.is_successor(headers, following | body_ids):
                return {**publisher.run, canvas.ROLE: canvas.role_of(headers, embed, body_ids)}
        kind = canvas.starts_a_run(embed)
        return None if kind is None else self._new_run(kind, headers, embed)

    def _publishers(self, headers: Mapping[str, Any]) -> list[_Attempt]:
        """The attempts that may be publishing a message: its parent's, and the task running
        in this thread. Before 5.7, Celery gives the body of a chord that a task applied
        (``a | chord(...)``) the chord's own parent as ``parent_id``, not the header task
        that completes the chord and publishes the body."""
        if not self._running:
            return []
        from celery import current_task  # a proxy of the task running in this thread

        running = getattr(getattr(current_task, "request", None), "id", None)
        ids = {str(headers.get("parent_id")), str(running)}
        return [self._running[task_id] for task_id in ids if task_id in self._running]

    def _new_run(
        self, kind: str, headers: Mapping[str, Any], embed: Mapping[str, Any]
    ) -> dict[str, Any] | None:
        """A run starting with this message: its span reserved under the current context
        (the caller's), to be written by the process that sees the run end."""
        group = headers.get("group") if kind == "chord" else None
        last = getattr(self._publishing, "run", None)
        if group is not None and last is not None and last[0] == group:
            return last[1]  # another header task of the chord just published
        name, run_id = canvas.run_name_and_id(kind, embed)
        span = self.reserve_span(f"RUN {name}")
        if span is None:
            return None
        parent: dict[str, Any] = {}
        tracing.inject(parent)
        run = {
            canvas.RUN_ID: run_id or headers.get("id"),
            canvas.NAME: name,
            canvas.PUBLISHED: headers.get(PUBLISHED),
            canvas.SPAN: span,
            canvas.PARENT: parent,
            canvas.ROLE: canvas.role_of(headers, embed, frozenset()),
        }
        if group is not None:
            self._publishing.run = (group, run)
        return run

    def _task_ended(self, run: Any, status: ExecutionStatus, error_type: Any = None) -> None:
        """A task of ``run`` (None: of no run) ended in ``status``: the run ends too if that
        ends it."""
        if isinstance(run, Mapping) and canvas.ends_run(run.get(canvas.ROLE), status):
            self._end_run(run, status, error_type)

    def _end_run(self, run: Mapping[str, Any], status: ExecutionStatus, error_type: Any) -> None:
        """The run ends here: its span is written now, under the ids reserved where it
        started, from its publish."""
        run_id = run.get(canvas.RUN_ID)
        key = self.key("run", str(run_id))
        identity = self.identity(
            ExecutionLevel.PIPELINE, pipeline=run.get(canvas.NAME), run_id=run_id
        )
        carrier = run.get(canvas.PARENT)
        parent = tracing.extract(carrier if isinstance(carrier, Mapping) else {})
        opening = tracing.opening_reserved(parent, run.get(canvas.SPAN))
        self.report(
            key, _RUNNING, identity, timestamp=run.get(canvas.PUBLISHED), parent_context=opening
        )
        self.report(key, status, identity, error_type=error_type)

    def _on_chord_error(self, _backend: Any, args: tuple, kwargs: dict) -> None:
        """Celery has decided a chord failed (a header task failed; its body will not run),
        in the process of the header task that completed it: the chord's run ends here."""
        if not self._running:
            return None
        callback = args[0] if args else kwargs.get("callback")
        error = args[1] if len(args) > 1 else kwargs.get("exc")
        options = callback.get("options") if isinstance(callback, Mapping) else None
        body_id = options.get("task_id") if isinstance(options, Mapping) else None
        for attempt in list(self._running.values()):
            if attempt.run is not None and attempt.run.get(canvas.RUN_ID) == body_id:
                self._end_run(attempt.run, _FAILED, error or "ChordError")
                break
        return None

    # -- the consumer (the worker's main process) --------------------------------------------

    @guarded
    def _on_received(self, request: Any = None, **_: Any) -> None:
        """Note on the request handed to the pool when the message was received, and whether
        it came before its ETA."""
        if request is None or self.is_off():
            return
        fields = request.request_dict
        fields[RECEIVED] = now = time.time()
        eta = getattr(request.eta, "timestamp", None)  # a datetime, or None
        if eta is not None and eta() > now:
            fields[ETA_AHEAD] = True

    @guarded
    def _on_revoked(self, request: Any = None, terminated: bool = False, **_: Any) -> None:
        """A task revoked (or expired) before it ran ends here; one terminated while running
        ends in the pool child that ran it."""
        if request is None or terminated or self.is_off():
            return
        # The consumer's request, or (revoked when its ETA came) the task's request context,
        # whose fields are its attributes.
        fields = getattr(request, "request_dict", None)
        if not isinstance(fields, Mapping):
            fields = vars(request)
        name = getattr(request, "name", None) or fields.get("task")
        key, identity = self._attempt_of(fields, name)
        self._replay(key, identity, _carried(fields), parent_context=tracing.extract(fields))
        self.report(key, _CANCELLED, identity)
        self._task_ended(fields.get(canvas.RUN), _CANCELLED)

    @guarded
    def _on_rejected(self, message: Any = None, **_: Any) -> None:
        self._refused(message, None, "Reject")

    @guarded
    def _on_unknown(self, message: Any = None, name: Any = None, **_: Any) -> None:
        self._refused(message, name, "NotRegistered")

    def _refused(self, message: Any, name: Any, error_type: str) -> None:
        """A message the consumer would not run: an unregistered task, or one rejected."""
        if message is None or self.is_off():
            return
        headers = getattr(message, "headers", None)
        if not isinstance(headers, Mapping) or "id" not in headers:
            return
        key, identity = self._attempt_of(headers, name or headers.get("task"))
        self._replay(key, identity, _carried(headers), parent_context=tracing.extract(headers))
        self.report(key, _FAILED, identity, error_type=error_type)
        self._task_ended(headers.get(canvas.RUN), _FAILED, error_type)

    # -- the pool child (or the caller's thread, eagerly) ------------------------------------

    @guarded
    def _on_prerun(self, task_id: Any = None, task: Any = None, **_: Any) -> None:
        if task is None or task_id is None or self.is_off():
            return
        if len(self._running) >= self.max_in_flight:
            return  # attempts whose postrun never came: no more state than the core keeps
        request = task.request
        fields = vars(request)
        key, identity = self._attempt_of(fields, task.name, task_id)
        pooled = not getattr(request, "is_eager", False)
        carried = _carried(fields) if pooled else {}
        run = fields.get(canvas.RUN)
        run = run if isinstance(run, Mapping) else None
        if tracing.is_instrumented_by(CONTRIB_MODULE, CONTRIB_INSTRUMENTOR):
            # Its prerun receiver may come after this one: its span is not current yet. What
            # this attempt reports waits for the end, inside that span (``_caught_up``).
            attempt = _Attempt(key, identity, None, pooled, time.time(), carried, run, fields)
        else:
            # Eagerly, the body runs in the caller's thread: under its current context.
            parent = tracing.extract(fields) if pooled else None
            self._replay(key, identity, carried, parent_context=parent)
            self.report(key, _RUNNING, identity, parent_context=parent)
            context = self.context_of(key)
            token = None if context is None else tracing.attach(context)
            attempt = _Attempt(key, identity, token, pooled, None, None, run, fields)
        with self._lock:
            self._running[str(task_id)] = attempt
        if pooled:
            self.workers.set_state(os.getpid(), WorkerState.BUSY)

    @guarded
    def _on_success(self, sender: Any = None, **_: Any) -> None:
        if not self._running:  # nothing started here (nothing recorded then): no lookup
            return
        task_id = getattr(getattr(sender, "request", None), "id", None)
        attempt = self._caught_up(task_id)
        if attempt is not None:
            self.report(attempt.key, _SUCCEEDED, attempt.identity)
            self._task_ended(attempt.run, _SUCCEEDED)

    @guarded
    def _on_failure(self, task_id: Any = None, exception: Any = None, **_: Any) -> None:
        attempt = self._caught_up(task_id)
        if attempt is not None:
            self.end(attempt.key, attempt.identity, exception)
            self._task_ended(attempt.run, outcome_of(exception), exception)

    @guarded
    def _on_retry(self, request: Any = None, **_: Any) -> None:
        """The attempt retried: its span ends here in ``retrying``; the next attempt starts
        ``retrying`` at its message's publish, wherever it runs."""
        attempt = self._caught_up(getattr(request, "id", None))
        if attempt is not None:
            self.report(attempt.key, _RETRYING, attempt.identity)
            self.hand_off(attempt.key)

    @guarded
    def _on_postrun(self, task_id: Any = None, state: Any = None, **_: Any) -> None:
        """The attempt's last signal: what its end signal did not end ends here, by its state
        or by the exception unwinding, and its context leaves."""
        if not self._running:
            return
        attempt = self._caught_up(task_id)
        with self._lock:
            self._running.pop(str(task_id), None)
        if attempt is None:
            return
        if attempt.token is not None:
            tracing.detach(attempt.token)
        if self.status_of(attempt.key) is not None:
            # No state: the body raised past Celery's tracer (an eager task that propagates
            # its exception, an interrupt, a pool child terminated by ``revoke``), which
            # sends this signal while the exception unwinds.
            error = sys.exc_info()[1] if state is None else None
            if error is not None:
                self.end(attempt.key, attempt.identity, error)
                self._task_ended(attempt.run, outcome_of(error), error)
            else:
                status = _POSTRUN_STATES.get(state, _CANCELLED)
                self.report(attempt.key, status, attempt.identity)
                if status is _RETRYING:
                    self.hand_off(attempt.key)
                else:
                    self._task_ended(attempt.run, status)
        if attempt.pooled:
            self.workers.set_state(os.getpid(), WorkerState.AVAILABLE)

    def _caught_up(self, task_id: Any) -> _Attempt | None:
        """The attempt running as ``task_id``, with everything before its end reported. Next
        to opentelemetry-instrumentation-celery, that is done now, inside its ``run/<task>``
        span: the statuses carried and ``running``, at their times, as its span's events."""
        if task_id is None:
            return None
        attempt = self._running.get(str(task_id))
        if attempt is None or attempt.started is None:
            return attempt
        key, identity = attempt.key, attempt.identity
        self._replay(key, identity, attempt.carried or {}, emit_span=False)
        self.report(key, _RUNNING, identity, timestamp=attempt.started, emit_span=False)
        caught_up = attempt._replace(started=None, carried=None)
        with self._lock:
            if str(task_id) in self._running:
                self._running[str(task_id)] = caught_up
        return caught_up

    def _attempt_of(
        self, fields: Mapping[str, Any], name: Any, task_id: Any = None
    ) -> tuple[Hashable, Identity]:
        task_id = fields.get("id") if task_id is None else task_id
        retries = fields.get("retries") or 0
        # Attempts count from 1, as on every orchestrator: the first run, then each retry.
        attempt = retries + 1 if isinstance(retries, int) else None
        run = fields.get(canvas.RUN)
        pipeline = run.get(canvas.NAME) if isinstance(run, Mapping) else None
        identity = self.identity(
            ExecutionLevel.STEP, name=name, pipeline=pipeline, run_id=task_id, attempt=attempt
        )
        return self.key(str(task_id), retries), identity

    def _replay(
        self, key: Hashable, identity: Identity, carried: Mapping[str, Any], **tracking: Any
    ) -> None:
        """Report, at their own times, the statuses the attempt went through before this
        process: published (``queued``, a retry ``retrying``), then received (``waiting`` for
        an ETA ahead, else ``pending``). A retry is ``retrying`` until it runs, whether its
        countdown was still ahead when a worker received it or not: the wait before a retry
        is all its time in ``retrying``."""
        retried = bool(carried.get("retries"))
        published = carried.get(PUBLISHED)
        if published is not None:
            first = _RETRYING if retried else _QUEUED
            self.report(key, first, identity, timestamp=published, **tracking)
        received = carried.get(RECEIVED)
        if received is None or retried:
            return
        status = _WAITING if carried.get(ETA_AHEAD) else _PENDING
        self.report(key, status, identity, timestamp=received, **tracking)

    # -- workers ------------------------------------------------------------------------------

    @guarded
    def _on_worker_ready(self, **_: Any) -> None:
        self.workers.spawn(True)

    @guarded
    def _on_process_init(self, **_: Any) -> None:
        self.workers.spawn(True)
        self.workers.set_state(os.getpid(), WorkerState.AVAILABLE)

    @guarded
    def _on_process_shutdown(self, **_: Any) -> None:
        """A pool child about to exit, without interpreter shutdown: export what it has."""
        self.workers.set_state(os.getpid(), WorkerState.OFFLINE)
        self.flush()

    @guarded
    def _on_heartbeat(self, **_: Any) -> None:
        self.workers.health_check(True)

    @guarded
    def _on_shutting_down(self, how: Any = None, **_: Any) -> None:
        """A warm shutdown waits for the running tasks: a drain, timed until the worker has
        shut down. A cold one (or a second signal during a warm one) abandons them."""
        if how == "Warm":
            self._drain_started = time.monotonic()
            return
        self._drain_started = None
        self.workers.drain(False)

    @guarded
    def _on_shutdown(self, **_: Any) -> None:
        started, self._drain_started = self._drain_started, None
        if started is not None:
            self.workers.drain(True, time.monotonic() - started)


# A task's state at ``task_postrun`` (Celery's ``states``), for an attempt whose end signal
# did not end it; anything else (None: terminated while running) is cancelled.
_POSTRUN_STATES: Final[Mapping[Any, ExecutionStatus]] = {
    "SUCCESS": ExecutionStatus.SUCCEEDED,
    "FAILURE": ExecutionStatus.FAILED,
    "RETRY": ExecutionStatus.RETRYING,
    "REVOKED": ExecutionStatus.CANCELLED,
    "IGNORED": ExecutionStatus.SKIPPED,  # raised Ignore: replaced, or its state left alone
    "REJECTED": ExecutionStatus.FAILED,
}
