"""SQLAlchemy status columns: what the instrumentation adds to each committed status change.

The model is built like Tangle's ``ExecutionNode`` (``cloud_pipelines_backend``, not on the
package registries): a status enum column, a JSON ``extra_data`` (a MutableDict, as Tangle maps
``dict``), parent and task-id columns, and the "set" listener Tangle registers on the status to
keep a history with ``first_observed_at`` in ``extra_data`` and to flag the node as changed.
That listener is part of every case, bare included: it is Tangle's model, not telemetry.

The workload is what Tangle's orchestrator does with a node, in a session that does not expire
on commit (as its orchestrator's): nodes are created ``QUEUED`` (one commit for a batch of
``NODES``, with their parent graph node, which has no status); then each node goes ``PENDING``
(launched), ``RUNNING`` and ``SUCCEEDED``, each change committed. When a node succeeds, Tangle
queries its downstream nodes (to wake those waiting for it) before committing: the query's
autoflush writes the change before the commit. The unit is the transition: three per node, so
each carries a third of the node's creation; an iteration is a batch, every node's span begun
and ended in it. The database is SQLite in memory, a fresh one for each timed block: a file
would add fsync and disk noise that hides what is measured, so the ratios are an upper bound
(a networked database makes every commit slower) and the microseconds added per transition are
what carries over.

Each order of the workload is one interleaved measurement of every case:

- bare; the Tangle preset (``TangleAdapter.instrument_execution_nodes``, what the
  instrumentation applies to Tangle's model, by an adapter given the live core) with a real
  SDK (``Sdk``); its equal floor (``EqualFloor``: the SDK calls it made, recorded from one
  batch and made again by hand); Tangle's own status-duration hook, re-implemented here from
  what Tangle merged (``TangleHook``), on a second real SDK; and its equal floor, so that ours
  is held against what the peer adds plus the SDK cost of what we emit beyond it.
- in Tangle's own order (the success autoflushed by its downstream query before its commit,
  where the hook records nothing for ``RUNNING -> SUCCEEDED`` and builds no trace), also the
  preset with no SDK at all (no provider passed, none set globally: the API's no-op path) and
  its pass-through: the preset patches no function (it listens to SQLAlchemy's events), so
  what stands for a wrapt pass-through is a no-op listener on each event it listens to,
  registered as it registers its own (``NoOpListeners``): the same listener calls.
- in the other order (the downstream query after the success's commit), Tangle's hook sees
  every transition and does all its work (a histogram sample per change, spans built after
  the fact at the end). Facts count what each emitted per node.

Validity: every span and histogram sample each case should have made is checked against the
nodes it ran, each equal floor against the calls it was recorded from, a bare run after all
blocks must leave every SDK untouched, the no-SDK case must really be instrumented, and the
no-op listeners must be as many, on the same events, as the preset's. Otherwise the script
exits non-zero: it measured nothing.
"""

from __future__ import annotations

import datetime
import enum
import statistics
import uuid
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import replace
from functools import partial
from typing import Any, Callable, NamedTuple, Optional

import sdk_calls
from harness import (
    ADDED,
    INSTRUMENTOR,
    Case,
    EqualFloor,
    NoOpHooks,
    Results,
    Row,
    Samples,
    Sdk,
    added_against_floor,
    added_against_peer,
    added_cost_ratio,
    arguments,
    finish,
    measure,
    ratio_rows,
    require,
    scale,
    then,
    versions,
)
from opentelemetry import trace
from opentelemetry.metrics import Meter
from opentelemetry.sdk.metrics.export import HistogramDataPoint, InMemoryMetricReader
from opentelemetry.trace import StatusCode, Tracer
from sqlalchemy import JSON, Engine, ForeignKey, create_engine, event, inspect, select
from sqlalchemy.ext.mutable import MutableDict
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from opentelemetry_instrumentation_execstatus import telemetry
from opentelemetry_instrumentation_execstatus.adapters.sqlalchemy.transactions import after_commit
from opentelemetry_instrumentation_execstatus.adapters.tangle import TangleAdapter

SUITE = "sqlalchemy"
NODES = 10  # nodes per batch: one graph node's children, created in one commit
TRANSITIONS_PER_NODE = 3  # QUEUED -> PENDING -> RUNNING -> SUCCEEDED
# Timed blocks make fewer spans than the batch span processor queues (2048: Tangle's hook
# makes five per node) and end with a flush (untimed): no span is dropped, which would cost
# less than exporting it.
BATCHES_PER_BLOCK = 20
ROUNDS = 25

BARE = "bare"
OURS = "execstatus, SDK"
OURS_NO_SDK = "execstatus, no SDK"
TANGLE = "Tangle native hook"
NO_OP = "no-op listeners on the same events"


# -- the model, built like Tangle's ------------------------------------------------------------

HISTORY = "container_execution_status_history"


class Status(str, enum.Enum):
    """Tangle's ``ContainerExecutionStatus``."""

    INVALID = "INVALID"
    UNINITIALIZED = "UNINITIALIZED"
    QUEUED = "QUEUED"
    WAITING_FOR_UPSTREAM = "WAITING_FOR_UPSTREAM"
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    SYSTEM_ERROR = "SYSTEM_ERROR"
    CANCELLING = "CANCELLING"
    CANCELLED = "CANCELLED"
    SKIPPED = "SKIPPED"


ENDED = frozenset(
    status.value
    for status in (
        Status.INVALID,
        Status.SUCCEEDED,
        Status.FAILED,
        Status.SYSTEM_ERROR,
        Status.CANCELLED,
        Status.SKIPPED,
    )
)
FAILED = frozenset((Status.FAILED.value, Status.SYSTEM_ERROR.value))


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: MutableDict.as_mutable(JSON)}  # noqa: RUF012


class ExecutionNode(Base):
    __tablename__ = "execution_node"

    id: Mapped[str] = mapped_column(primary_key=True, default=lambda: uuid.uuid4().hex)
    task_spec: Mapped[dict[str, Any]] = mapped_column(default=dict)
    parent_execution_id: Mapped[Optional[str]] = mapped_column(  # noqa: UP045
        ForeignKey("execution_node.id"), default=None
    )
    task_id_in_parent_execution: Mapped[Optional[str]] = mapped_column(default=None)  # noqa: UP045
    container_execution_id: Mapped[Optional[str]] = mapped_column(default=None)  # noqa: UP045
    container_execution_status: Mapped[Optional[Status]] = mapped_column(  # noqa: UP045
        default=None, index=True
    )
    container_execution_cache_key: Mapped[Optional[str]] = mapped_column(  # noqa: UP045
        default=None, index=True
    )
    extra_data: Mapped[Optional[dict[str, Any]]] = mapped_column(default=None)  # noqa: UP045

    _status_changed = False  # not mapped: set by the listener, read by Tangle's hook


@event.listens_for(ExecutionNode.container_execution_status, "set")
def _keep_history(node: ExecutionNode, value: Any, _old: Any, _initiator: Any) -> None:
    """What Tangle's orchestrator does on every status assignment (its model's listener)."""
    if value is None:
        return
    if node.extra_data is None:
        node.extra_data = {}
    history = node.extra_data.get(HISTORY, [])
    if history and history[-1]["status"] == value.value:
        return
    entry = {
        "status": value.value,
        "first_observed_at": datetime.datetime.now(datetime.timezone.utc).isoformat(),
    }
    node.extra_data = {**node.extra_data, HISTORY: [*history, entry]}
    node._status_changed = True


# -- Tangle's native hook --------------------------------------------------------------------


class TangleHook:
    """Tangle's status-duration metric and retroactive execution trace, re-implemented.

    Written for this benchmark from what Tangle merged (``cloud_pipelines_backend/
    instrumentation/metrics.py`` and ``execution_tracing.py``, read at TangleML/tangle commit
    0abbe3a2ff5b2132f02e7411f6eb992bbf3b7089), not copied: a ``before_commit`` listener on
    every Session walks ``session.new`` and ``session.dirty``; for each node flagged as changed
    it records ``execution.status_transition.duration`` (meter ``tangle.orchestrator``,
    attributes ``execution.status.from`` / ``.to``, the raw statuses) from the last two
    history entries, clears the flag, and, when the node's last status is terminal, builds its
    trace after the fact: an ``execution`` span over the node's life with one
    ``execution.status <STATUS>`` child per history entry, timed from the history. Tangle's
    attribute helpers are reproduced for what this model has (cache, parent, cloud provider and
    resource annotations); those that read the node's ``ContainerExecution`` (exit code,
    launcher, pod) find none here, as for a node whose ``container_execution_id`` is None.
    """

    def __init__(self, meter: Meter, tracer: Tracer) -> None:
        self._duration = meter.create_histogram(
            name="execution.status_transition.duration",
            description="Duration an execution spent in a status before transitioning to the "
            "next status",
            unit="s",
        )
        self._tracer = tracer

    def listen(self) -> None:
        event.listen(Session, "before_commit", self._before_commit)

    def remove(self) -> None:
        event.remove(Session, "before_commit", self._before_commit)

    def _before_commit(self, session: Session) -> None:
        for node in list(session.new) + list(session.dirty):
            if not isinstance(node, ExecutionNode) or not node._status_changed:
                continue
            history = (node.extra_data or {}).get(HISTORY, [])
            if len(history) >= 2:
                previous, current = history[-2], history[-1]
                seconds = (
                    datetime.datetime.fromisoformat(current["first_observed_at"])
                    - datetime.datetime.fromisoformat(previous["first_observed_at"])
                ).total_seconds()
                self._duration.record(
                    seconds,
                    attributes={
                        "execution.status.from": previous["status"],
                        "execution.status.to": current["status"],
                    },
                )
            node._status_changed = False
            self._trace(node)

    def _trace(self, node: ExecutionNode) -> None:
        history = (node.extra_data or {}).get(HISTORY, [])
        if not history or history[-1]["status"] not in ENDED:
            return
        first = datetime.datetime.fromisoformat(history[0]["first_observed_at"])
        last = datetime.datetime.fromisoformat(history[-1]["first_observed_at"])
        extra = node.extra_data or {}
        reused_from = extra.get("reused_from_execution_node_id")
        attributes: dict[str, Any] = {"execution.id": node.id}
        provider = self._annotations(node).get("cloud-pipelines.net/orchestration/cloud_provider")
        if provider is not None:
            attributes["execution.cloud_provider"] = provider
        if node.container_execution_cache_key is not None:
            attributes["execution.cache_key"] = node.container_execution_cache_key
        attributes["execution.cache.hit"] = reused_from is not None
        if reused_from is not None:
            attributes["execution.cache.reused_from_id"] = reused_from
        if node.parent_execution_id is not None:
            attributes["execution.parent_id"] = node.parent_execution_id
        root = self._tracer.start_span("execution", attributes=attributes, start_time=_ns(first))
        root_context = trace.set_span_in_context(root)
        for index, entry in enumerate(history):
            start = _ns(datetime.datetime.fromisoformat(entry["first_observed_at"]))
            end = (
                _ns(datetime.datetime.fromisoformat(history[index + 1]["first_observed_at"]))
                if index + 1 < len(history)
                else _ns(last)
            )
            self._tracer.start_span(
                f"execution.status {entry['status']}",
                context=root_context,
                attributes={
                    "execution.id": node.id,
                    "execution.status": entry["status"],
                    **self._status_attributes(node, entry["status"]),
                },
                start_time=start,
            ).end(end_time=max(end, start + 1))
        if history[-1]["status"] in FAILED:
            root.set_status(StatusCode.ERROR)
        root.end(end_time=_ns(last))

    @staticmethod
    def _annotations(node: ExecutionNode) -> dict[str, Any]:
        return (node.task_spec or {}).get("annotations", {})

    def _status_attributes(self, node: ExecutionNode, status: str) -> dict[str, Any]:
        """Tangle's per-status extras: error messages, and resource requests when PENDING."""
        extra = node.extra_data or {}
        found: dict[str, Any] = {}
        if status == Status.FAILED.value:
            message = extra.get("orchestration_error_message")
            if message is not None:
                found["exception.message"] = message
        elif status == Status.SYSTEM_ERROR.value:
            for key, name in (
                ("system_error_exception_message", "exception.message"),
                ("system_error_exception_full", "exception.stacktrace"),
            ):
                if extra.get(key) is not None:
                    found[name] = extra[key]
        elif status == Status.PENDING.value:
            annotations = self._annotations(node)
            for kind in ("cpu", "memory", "accelerators"):
                value = annotations.get(f"cloud-pipelines.net/launchers/generic/resources.{kind}")
                if value:
                    found[f"execution.resources.{kind}"] = value
        return found


def _ns(moment: datetime.datetime) -> int:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.timezone.utc)
    return int(moment.timestamp() * 1_000_000_000)


# -- the workload ------------------------------------------------------------------------------


class Database:
    """SQLite in memory, made anew for each timed block (in its case's untimed setup)."""

    def __init__(self) -> None:
        self.engine: Engine = self._create()

    @staticmethod
    def _create() -> Engine:
        engine = create_engine("sqlite://")
        Base.metadata.create_all(engine)
        return engine

    def reset(self) -> None:
        self.engine.dispose()
        self.engine = self._create()


class Lifecycles:
    """``iterations`` batches of ``NODES`` nodes through Tangle's lifecycle, counted.

    ``tangle_order``: the success's downstream query runs before its commit, as in Tangle's
    orchestrator (its autoflush writes the change first); otherwise just after the commit. The
    same statements either way.
    """

    def __init__(self, database: Database, *, tangle_order: bool) -> None:
        self._database = database
        self._tangle_order = tangle_order
        self.nodes = 0

    def __call__(self, iterations: int) -> None:
        for _ in range(iterations):
            self._batch()
        self.nodes += iterations * NODES

    def _batch(self) -> None:
        with Session(self._database.engine, expire_on_commit=False) as session:
            graph = ExecutionNode(task_id_in_parent_execution="graph")
            session.add(graph)
            session.flush()
            nodes = [
                ExecutionNode(
                    parent_execution_id=graph.id,
                    task_id_in_parent_execution=f"task-{index}",
                    container_execution_status=Status.QUEUED,
                )
                for index in range(NODES)
            ]
            session.add_all(nodes)
            session.commit()
            for node in nodes:
                node.container_execution_status = Status.PENDING  # launched
                session.commit()
                node.container_execution_status = Status.RUNNING
                session.commit()
                node.container_execution_status = Status.SUCCEEDED
                if self._tangle_order:
                    self._downstream(session, node)
                    session.commit()
                else:
                    session.commit()
                    self._downstream(session, node)

    @staticmethod
    def _downstream(session: Session, node: ExecutionNode) -> None:
        session.execute(
            select(ExecutionNode.id).where(ExecutionNode.parent_execution_id == node.id)
        ).all()


# -- the cases ---------------------------------------------------------------------------------


@contextmanager
def _preset_on(providers: dict[str, Any]) -> Iterator[Any]:
    """The instrumentation on (with ``providers``; none: no SDK) and the Tangle preset on the
    model, reported through a Tangle adapter given the live core, as the instrumentation does
    with Tangle's own model; yields the instrumented column."""
    INSTRUMENTOR.instrument(**providers)
    live = telemetry.current()
    require(live is not None, "the instrumentation did not start")
    undo = TangleAdapter(live).instrument_execution_nodes(ExecutionNode)
    try:
        yield undo.__self__
    finally:
        undo()
        INSTRUMENTOR.uninstrument()
        require(
            not event.contains(Session, "after_commit", after_commit),
            "the status column's session listeners outlived it",
        )


@contextmanager
def _hooked(hook: TangleHook) -> Iterator[None]:
    hook.listen()
    try:
        yield
    finally:
        hook.remove()


def _tangle_hook(tracer_provider: Any, meter_provider: Any) -> TangleHook:
    """Tangle's hook, its meter and tracer taken from the providers it is given."""
    return TangleHook(
        meter_provider.get_meter("tangle.orchestrator"),
        tracer_provider.get_tracer("tangle.orchestrator"),
    )


Scope = Callable[[sdk_calls.RecordingProviders], AbstractContextManager[Any]]


def _turned_on(scope: Scope) -> tuple[Callable[[Any], object], Callable[[], object]]:
    """``EqualFloor.record``'s ``peer``: what turns a case's telemetry on with the recording
    providers it is given, and what turns it off."""
    stack = ExitStack()
    return (lambda recorder: stack.enter_context(scope(recorder))), stack.close


class NoOpListeners(NoOpHooks):
    """A no-op listener on each event the preset listens to, registered as it registers its
    own (the column's raw and propagated to subclasses; the sessions' on ``Session``)."""

    @staticmethod
    def events() -> list[tuple[Any, str, dict[str, bool]]]:
        """The preset's events: the status column's "set", its rows' flushes, and the three
        session events of the transaction buffer (``adapters.sqlalchemy.transactions``)."""
        row = {"raw": True, "propagate": True}
        return [
            (ExecutionNode.container_execution_status, "set", row),
            (ExecutionNode, "after_insert", row),
            (ExecutionNode, "after_update", row),
            *(
                (Session, name, {})
                for name in ("after_commit", "after_soft_rollback", "after_transaction_end")
            ),
        ]

    def register(self, hook: Callable[..., Any]) -> list[Callable[[], None]]:
        undo = []
        for target, name, options in self.events():
            event.listen(target, name, hook, **options)
            undo.append(partial(event.remove, target, name, hook))
        return undo

    def counts(self) -> list[int]:
        """How many listeners each of the preset's events has."""
        flushes = inspect(ExecutionNode).dispatch
        with Session() as session:
            sessions = session.dispatch
            return [
                len(ExecutionNode.container_execution_status.dispatch.set),
                len(flushes.after_insert),
                len(flushes.after_update),
                len(sessions.after_commit),
                len(sessions.after_soft_rollback),
                len(sessions.after_transaction_end),
            ]


class _Switch:
    """Setup and teardown of a case, around each timed block: a fresh database, then the
    telemetry on; after it, the telemetry off and its spans flushed."""

    def __init__(
        self,
        database: Database,
        on: Callable[[], AbstractContextManager[Any]] | None = None,
        sdk: Sdk | None = None,
    ) -> None:
        self._database, self._on, self._sdk = database, on, sdk
        self._scope: AbstractContextManager[Any] | None = None

    def setup(self) -> None:
        self._database.reset()
        if self._on is not None:
            self._scope = self._on()
            self._scope.__enter__()

    def teardown(self) -> None:
        if self._scope is not None:
            self._scope.__exit__(None, None, None)
            self._scope = None
        if self._sdk is not None:
            self._sdk.tracer_provider.force_flush()


UNITS = NODES * TRANSITIONS_PER_NODE  # transitions per iteration (a batch)


def _case(name: str, lifecycles: Lifecycles, switch: _Switch) -> Case:
    return Case(name, lifecycles, UNITS, setup=switch.setup, teardown=switch.teardown)


def _floor_case(floor: EqualFloor, sdk: Sdk) -> Case:
    """The floor's replay, its spans flushed after each block as the instrumented cases' are."""
    return replace(floor.case(), teardown=sdk.tracer_provider.force_flush)


def _histogram_samples(reader: InMemoryMetricReader) -> int:
    """Samples of ``execution.status_transition.duration`` (ours or Tangle's), not of any
    histogram the SDK may keep about itself."""
    data = reader.get_metrics_data()
    return sum(
        point.count
        for resource in (data.resource_metrics if data else ())
        for scope in resource.scope_metrics
        for metric in scope.metrics
        if metric.name == "execution.status_transition.duration"
        for point in metric.data.data_points
        if isinstance(point, HistogramDataPoint)
    )


class _Emitted:
    """Spans and histogram samples an SDK received since this was made."""

    def __init__(self, sdk: Sdk) -> None:
        self._sdk = sdk
        self._spans, self._samples = sdk.spans_exported(), _histogram_samples(sdk.reader)

    def per_node(self, nodes: int) -> tuple[float, float]:
        spans = self._sdk.spans_exported() - self._spans
        samples = _histogram_samples(self._sdk.reader) - self._samples
        return spans / max(nodes, 1), samples / max(nodes, 1)


def _require_per_node(
    emitted: _Emitted, lifecycles: Lifecycles, who: str, spans: float, samples: float
) -> str:
    found = emitted.per_node(lifecycles.nodes)
    require(lifecycles.nodes > 0, f"{who} ran no node")
    require(
        found == (spans, samples),
        f"{who}: {found[0]:.2f} spans and {found[1]:.2f} histogram samples per node, "
        f"expected {spans:g} and {samples:g}",
    )
    return f"per node: spans {found[0]:g}, histogram samples {found[1]:g}"


PER_TRANSITION = "per transition"


class _Floors(NamedTuple):
    """The equal floors of ours and of Tangle's hook, each replayed on an SDK of its own."""

    ours: EqualFloor
    peer: EqualFloor
    our_sdk: Sdk
    peer_sdk: Sdk

    @classmethod
    def record(cls, lifecycles: Callable[[], Lifecycles]) -> _Floors:
        our_sdk, peer_sdk = Sdk.create(), Sdk.create()
        ours = EqualFloor.record(
            OURS,
            our_sdk,
            lifecycles(),
            units=UNITS,
            peer=_turned_on(lambda recorder: _preset_on(recorder.providers)),
        )
        peer = EqualFloor.record(
            TANGLE,
            peer_sdk,
            lifecycles(),
            units=UNITS,
            peer=_turned_on(
                lambda recorder: _hooked(
                    _tangle_hook(recorder.tracer_provider, recorder.meter_provider)
                )
            ),
        )
        return cls(ours, peer, our_sdk, peer_sdk)

    def cases(self) -> list[Case]:
        return [_floor_case(self.ours, self.our_sdk), _floor_case(self.peer, self.peer_sdk)]


def measured(
    quick: bool, database: Database, *, tangle_order: bool
) -> tuple[list[Row], dict[str, str]]:
    """Every case of one order of the workload, timed in one interleaved measurement: ours
    against bare, its equal floor and Tangle's hook; in Tangle's order, also with no SDK
    against the no-op listeners."""

    def lifecycles() -> Lifecycles:
        return Lifecycles(database, tangle_order=tangle_order)

    floors = _Floors.record(lifecycles)
    ours, theirs = Sdk.create(), Sdk.create()  # each case's output is counted on its own
    hook = _tangle_hook(theirs.tracer_provider, theirs.meter_provider)
    instrumented, hooked = lifecycles(), lifecycles()
    emitted_ours, emitted_theirs = _Emitted(ours), _Emitted(theirs)
    cases = [
        _case(BARE, lifecycles(), _Switch(database)),
        _case(OURS, instrumented, _Switch(database, lambda: _preset_on(ours.providers), ours)),
        _case(TANGLE, hooked, _Switch(database, lambda: _hooked(hook), theirs)),
        *floors.cases(),
    ]
    no_op = NoOpListeners()
    if tangle_order:
        cases += [
            _case(OURS_NO_SDK, lifecycles(), _Switch(database, lambda: _preset_on({}))),
            Case(
                NO_OP,
                lifecycles(),
                UNITS,
                setup=then(database.reset, no_op.setup),
                teardown=no_op.teardown,
            ),
        ]
    iterations, rounds = scale(quick, BATCHES_PER_BLOCK, ROUNDS)
    samples = measure(cases, iterations=iterations, rounds=rounds)

    seen = "as its orchestrator commits" if tangle_order else "every transition seen"
    peers = f"peers: Tangle, {seen}"
    rows = _peer_rows(samples, peers, floors, tangle_order=tangle_order)
    facts = {
        f"{peers}: equal floor, ours": floors.ours.describe(),
        f"{peers}: equal floor, Tangle's": floors.peer.describe(),
    }
    if tangle_order:
        rows = _per_transition_rows(samples, floors.ours) + rows
        facts[f"{PER_TRANSITION}: {NO_OP}"] = _same_listeners(database, no_op)
        require(_no_sdk_is_instrumented(database), f"{OURS_NO_SDK} was not instrumented")
    # Tangle's hook: in its own order it misses the success (no sample, no trace); otherwise a
    # sample per transition and, at the end, a root span plus one per status (four). Ours:
    # one span per node, a sample per transition (the first status has none).
    facts[f"{peers}: {TANGLE} emitted"] = _require_per_node(
        emitted_theirs,
        hooked,
        TANGLE,
        0 if tangle_order else 1 + TRANSITIONS_PER_NODE + 1,
        TRANSITIONS_PER_NODE - 1 if tangle_order else TRANSITIONS_PER_NODE,
    )
    facts[f"{peers}: {OURS} emitted"] = _require_per_node(
        emitted_ours, instrumented, OURS, 1, TRANSITIONS_PER_NODE
    )
    sdks = [ours, theirs, floors.our_sdk, floors.peer_sdk]
    _bare_emits_nothing(database, sdks)
    for sdk in sdks:
        sdk.shutdown()
    return rows, facts


def _per_transition_rows(samples: Samples, floor: EqualFloor) -> list[Row]:
    """Ours against bare, with and without an SDK; against its equal floor; and with no SDK,
    what it adds against what the no-op listeners add."""
    return [
        *ratio_rows(
            samples,
            SUITE,
            f"{PER_TRANSITION}: instrumented vs bare",
            BARE,
            [OURS, OURS_NO_SDK, NO_OP],
            unit="transition",
            note="Tangle-like nodes QUEUED -> PENDING -> RUNNING -> SUCCEEDED, SQLite in memory",
        ),
        added_against_floor(
            samples,
            SUITE,
            f"{PER_TRANSITION}: added per transition vs the same SDK calls",
            OURS,
            floor,
            bare=BARE,
            unit="transition",
        ),
        _added_against(
            samples,
            f"{PER_TRANSITION}: no SDK, added per transition vs no-op listeners",
            OURS_NO_SDK,
            NO_OP,
            bare=BARE,
            goal=2.0,
        ),
    ]


def _peer_rows(samples: Samples, peers: str, floors: _Floors, *, tangle_order: bool) -> list[Row]:
    """Tangle's hook and ours against bare; what we add against what it adds, as it is and
    with the SDK cost of what we emit beyond it (less, where it emits more)."""
    order = (
        "Tangle's order: success autoflushed by a query before its commit"
        if tangle_order
        else "every change committed unflushed (query after the success's commit)"
    )
    timed = ratio_rows(samples, SUITE, peers, BARE, [TANGLE, OURS], unit="transition", note=order)
    return [
        *timed,
        added_cost_ratio(timed, OURS, TANGLE, f"{peers}: added per transition"),
        added_against_peer(
            samples,
            SUITE,
            f"{peers}: added per transition vs Tangle's plus our extra SDK calls",
            ours=floors.ours,
            peer=floors.peer,
            bare=BARE,
            unit="transition",
        ),
    ]


def _added_against(
    samples: Samples, benchmark: str, subject: str, baseline: str, *, bare: str, goal: float
) -> Row:
    """What ``subject`` adds per transition over ``bare`` against what ``baseline`` adds, each
    the median of its differences round by round (both timed in every round): a few
    microseconds on some hundreds, which a ratio per round, or a difference of medians, would
    leave to the noise of the bare time."""

    def added(case: str) -> float:
        return statistics.median(s - b for s, b in zip(samples[case], samples[bare]))

    subject_us, baseline_us = added(subject), added(baseline)
    return Row(
        suite=SUITE,
        benchmark=benchmark,
        subject=subject,
        baseline=baseline,
        unit=f"transition{ADDED}",
        ratio=subject_us / baseline_us if baseline_us > 0 else float("inf"),
        subject_us=subject_us,
        baseline_us=baseline_us,
        goal=goal,
    )


def _no_sdk_is_instrumented(database: Database) -> bool:
    """With no SDK there is nothing to read back: check instead that, while such a block runs,
    the instrumentation is on and the preset listens to the status column and to sessions."""
    with _preset_on({}) as column:
        Lifecycles(database, tangle_order=True)(1)
        return (
            telemetry.current() is not None
            and event.contains(ExecutionNode.container_execution_status, "set", column._on_set)
            and event.contains(Session, "after_commit", after_commit)
        )


def _same_listeners(database: Database, no_op: NoOpListeners) -> str:
    """The no-op listeners are the preset's, one on each of its events; returns how many
    listener calls they get per transition."""
    events = no_op.require_same_as(lambda: _preset_on({}), "the preset")
    calls = no_op.calls_per_unit(Lifecycles(database, tangle_order=True), UNITS)
    return f"one on each of the preset's {events} events: {calls:g} listener calls per transition"


def _bare_emits_nothing(database: Database, sdks: Sequence[Sdk]) -> None:
    """A bare run, after every instrumented block, reaches none of the SDKs."""
    before = [_Emitted(sdk) for sdk in sdks]
    Lifecycles(database, tangle_order=True)(2)
    for emitted in before:
        require(emitted.per_node(1) == (0, 0), "a bare run emitted telemetry")


def main() -> None:
    options = arguments(__doc__.splitlines()[0])
    results = Results(SUITE, versions=versions("SQLAlchemy"))
    database = Database()
    for tangle_order in (True, False):
        rows, facts = measured(options.quick, database, tangle_order=tangle_order)
        results.rows += rows
        results.facts.update(facts)
    results.facts["workload"] = (
        f"batches of {NODES} Tangle-like nodes created QUEUED under a graph node, then each "
        f"PENDING, RUNNING, SUCCEEDED with a commit per change and a downstream query at "
        f"success; SQLite in memory; per transition = per node / {TRANSITIONS_PER_NODE}"
    )
    finish(results, options.out)


if __name__ == "__main__":
    main()
