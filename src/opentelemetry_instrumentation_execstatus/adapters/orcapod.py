"""orcapod 0.1.x: orchestrator runs become pipeline runs, nodes stages, data items items.

Where it hooks, and why there: ``SyncPipelineOrchestrator.run``, ``AsyncPipelineOrchestrator.run``
and ``AsyncPipelineOrchestrator.run_async`` are every way a pipeline runs (``PipelineJob.run``
calls one of them). Each call gets a fresh observer of ours, passed to the orchestrator next to
the user's through orcapod's own ``CompositeObserver``, so the user's ``StatusObserver``,
``LoggingObserver`` or home-made observer receives every event as before, and its data logger is
still the one used (ours offers only orcapod's no-op logger). orcapod's own ``NoOpObserver``
(what ``PipelineJob.run`` passes when the user gave none) does nothing with any event: ours is
passed alone instead, without a composite in front. The observer answers both hook
vocabularies: ``on_data_*`` and ``create_data_logger`` of the PyPI releases, ``on_packet_*`` and
``create_packet_logger`` of orcapod's main branch. When nothing records, the orchestrator is
called as it was, with the user's observer alone.

Status mapping: a run is ``running`` from ``on_run_start``; a node (stage) from ``on_node_start``;
a data item from ``on_data_start``, ending ``cached`` on a cache hit (never ``succeeded``: a hit
is a signal), ``succeeded`` when computed, ``failed`` on a crash. A node ends ``failed`` if any of
its items failed, ``cached`` if all of its items were cache hits, else ``succeeded``; the run
likewise over all items (``failed`` with the first failed item's ``error.type``, and no exception
event: the run itself went on). When the orchestrator raises, the run ends by ``outcome_of``:
``failed`` with the exception, or ``cancelled`` for an interrupt (``KeyboardInterrupt``,
``SystemExit``) or asyncio cancellation, with no ``error.type``. orcapod catches only
``Exception`` in an item, so an interrupted item gets no hook at all: it is ended ``cancelled``
with its node and run. Under ``run_async`` such an interrupt stops the caller's event loop,
which abandons the run's coroutine: the run ends ``cancelled`` when that coroutine is closed
(collected), or at exit.

The async orchestrator runs nodes concurrently and item hooks as tasks on one event-loop thread,
so all state is keyed by (run, node, item) and held by the run's own observer, never by thread.
An item is known by its tag: on the async orchestrator, which hands each hook a fresh copy of
it, by the tag's values; on the sync one, which hands an item's end the very tag object its
start got, by that object (reading a tag's values converts its Arrow row to Python, which
orcapod itself does not do, and costs more than the rest of an item's bookkeeping), and by its
values only when another object comes.
orcapod skips ``on_node_end`` on some error paths and reports only ``on_run_end`` (no outcome),
so nodes and items still open when the orchestrator returns or raises are ended then: items
``cancelled``; a node by its items when the run returned, ``cancelled`` when it was interrupted,
and when it raised ``failed`` if one of its items failed, else ``cancelled`` (stopped by another
node's failure).
"""

from __future__ import annotations

import itertools
from collections.abc import Hashable, Iterator
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from opentelemetry_instrumentation_execstatus import clock
from opentelemetry_instrumentation_execstatus.adapters.base import Adapter
from opentelemetry_instrumentation_execstatus.adapters.calls import observe_call
from opentelemetry_instrumentation_execstatus.identity import Identity
from opentelemetry_instrumentation_execstatus.patching import Patch
from opentelemetry_instrumentation_execstatus.safety import guarded
from opentelemetry_instrumentation_execstatus.semconv import (
    ExecutionLevel,
    ExecutionStatus,
    Orchestrator,
)
from opentelemetry_instrumentation_execstatus.telemetry import Telemetry

SYNC_ORCHESTRATOR = "orcapod.pipeline.sync_orchestrator"
ASYNC_ORCHESTRATOR = "orcapod.pipeline.async_orchestrator"


class OrcapodAdapter(Adapter):
    name = "orcapod"
    orchestrator = Orchestrator.ORCAPOD
    top_module = "orcapod"
    distribution = "orcapod"
    supported = ">= 0.1.4, < 0.2"

    def __init__(self, telemetry: Telemetry) -> None:
        super().__init__(telemetry)
        # Run ids come from the user and can repeat; each orchestrator call is its own run.
        self._run_serials = itertools.count()

    def patches(self) -> list[Patch]:
        # One wrapper for all three: run_async's coroutine is awaited by observe_call itself.
        run = observe_call(
            on_call=self._run_called,
            arguments=lambda run, args, kwargs: (args, {**kwargs, "observer": run.observer}),
            on_success=lambda run, _result: run.finish(None),
            on_error=lambda run, error: run.finish(error),
            name="orcapod run",
        )
        return [
            Patch(SYNC_ORCHESTRATOR, "SyncPipelineOrchestrator.run", run),
            Patch(ASYNC_ORCHESTRATOR, "AsyncPipelineOrchestrator.run", run),
            Patch(ASYNC_ORCHESTRATOR, "AsyncPipelineOrchestrator.run_async", run),
        ]

    def new_run(self, *, same_tag_objects: bool = False) -> _Run:
        """A run of ours for one orchestrator call, with its observer (next to the user's).
        ``same_tag_objects``: the orchestrator hands an item's end the very tag object its
        start got (the sync one does)."""
        from orcapod.pipeline.observer import NoOpLogger
        from orcapod.types import ColumnConfig

        run = _Run(self, next(self._run_serials), ColumnConfig(system_tags=True), same_tag_objects)
        run.observer = _RunObserver(run, NoOpLogger())
        return run

    def _run_called(self, orchestrator: Any, _args: tuple, kwargs: dict) -> _Run | None:
        if self.is_off():
            return None
        from orcapod.pipeline.composite_observer import CompositeObserver
        from orcapod.pipeline.observer import NoOpObserver
        from orcapod.pipeline.sync_orchestrator import SyncPipelineOrchestrator

        run = self.new_run(same_tag_objects=isinstance(orchestrator, SyncPipelineOrchestrator))
        user_observer = kwargs.get("observer")  # keyword-only in all three methods
        if user_observer is not None and type(user_observer) is not NoOpObserver:
            run.observer = CompositeObserver(user_observer, run.observer)
        return run


@dataclass
class _Tally:
    """Item outcomes under a node or a run: what their own final status is derived from."""

    items: int = 0
    cached: int = 0
    failed: int = 0
    first_error: BaseException | None = None

    def count(self, status: ExecutionStatus, error: BaseException | None) -> None:
        self.items += 1
        if status is ExecutionStatus.CACHED:
            self.cached += 1
        elif status is ExecutionStatus.FAILED:
            self.failed += 1
            if self.first_error is None:
                self.first_error = error

    def outcome(self) -> ExecutionStatus:
        if self.failed:
            return ExecutionStatus.FAILED
        if self.items and self.cached == self.items:
            return ExecutionStatus.CACHED
        return ExecutionStatus.SUCCEEDED


class _OpenItem(NamedTuple):
    identity: Identity
    tag: Any  # the tag object its start was given


@dataclass
class _Node:
    key: Hashable
    identity: Identity
    tally: _Tally = field(default_factory=_Tally)
    open_items: dict[Hashable, _OpenItem] = field(default_factory=dict)
    # The tag object of the item started last, and that item's key: orcapod's sync path
    # hands the same object to the item's end, whose key then needs no reading of the tag.
    last_started: tuple[Any, Hashable] | None = None
    # Without item spans, every item of the node has the same identity (for its label).
    item_identity: Identity | None = None
    item_serials: Iterator[int] = field(default_factory=itertools.count)

    def status_at_finish(self, error: BaseException | None) -> ExecutionStatus:
        """The status of a node still open when the orchestrator returned or raised."""
        if error is None:
            return self.tally.outcome()
        if isinstance(error, Exception) and self.tally.failed:
            return ExecutionStatus.FAILED
        return ExecutionStatus.CANCELLED


class _Run:
    """One orchestrator call: its run, node and item executions, and their outcomes."""

    def __init__(
        self, adapter: Adapter, serial: int, tag_columns: Any, same_tag_objects: bool
    ) -> None:
        self._adapter = adapter
        self._item_spans = adapter.item_spans
        self._tag_columns = tag_columns  # what of a tag identifies its item (see _tag_identity)
        # Items keyed by their tag object's arrival (a serial) rather than by its values:
        # reading a tag's values converts its Arrow row to Python, which orcapod itself never
        # does, and which would cost more than all the rest of an item's bookkeeping.
        self._same_tag_objects = same_tag_objects
        self.key = adapter.key("run", serial)
        self.identity: Identity | None = None  # built at on_run_start
        self.observer: Any = None
        self._nodes: dict[str, _Node] = {}  # by label, for hooks called on the root observer
        self._open_nodes: dict[Hashable, _Node] = {}
        self._tally = _Tally()
        self._started = False
        self._ended_at: clock.Instant | None = None

    # -- run ---------------------------------------------------------------------------

    def started(self, run_id: str, pipeline_uri: str) -> None:
        # Pipeline.run passes "<name>@<snapshot hash>"; the name is what stays stable.
        self._started = True
        self.identity = self._adapter.identity(
            ExecutionLevel.PIPELINE,
            pipeline=(pipeline_uri or "").partition("@")[0] or None,
            run_id=run_id,
        )
        self._adapter.report(self.key, ExecutionStatus.RUNNING, self.identity)

    def ended(self) -> None:
        self._ended_at = clock.now()

    def finish(self, error: BaseException | None) -> None:
        """The orchestrator returned (``error`` None) or raised: end whatever is still open."""
        if not self._started:
            return  # it raised before the run began: there is no run to report
        at = self._ended_at if self._ended_at is not None else clock.now()
        for node in list(self._open_nodes.values()):
            self._end_node(node, node.status_at_finish(error), at)
        if error is not None:
            self._adapter.end(self.key, self.identity, error, timestamp=at)
            return
        # Items failed but the run went on: its error.type is the first failed item's.
        self._adapter.report(
            self.key,
            self._tally.outcome(),
            self.identity,
            timestamp=at,
            error_type=self._tally.first_error,
        )

    # -- nodes -------------------------------------------------------------------------

    def node_started(self, label: str, node_hash: str) -> _Node:
        key = (*self.key, "node", node_hash)
        node = _Node(key, self._adapter.identity(ExecutionLevel.STAGE, name=label, parent=self.key))
        self._nodes[label] = node
        self._open_nodes[key] = node
        self._adapter.report(key, ExecutionStatus.RUNNING, node.identity)
        return node

    def node_ended(self, node: _Node) -> None:
        self._end_node(node, node.tally.outcome(), None)

    def node_by_label(self, label: str) -> _Node | None:
        return self._nodes.get(label)

    def _end_node(self, node: _Node, status: ExecutionStatus, at: clock.Instant | None) -> None:
        if self._open_nodes.pop(node.key, None) is None:
            return  # a second on_node_end, or already ended at finish
        for item_key, item in node.open_items.items():
            self._adapter.report(item_key, ExecutionStatus.CANCELLED, item.identity, timestamp=at)
        node.open_items.clear()
        error = node.tally.first_error if status is ExecutionStatus.FAILED else None
        self._adapter.report(node.key, status, node.identity, timestamp=at, error=error)

    # -- items -------------------------------------------------------------------------

    def item_started(self, node: _Node, label: str, tag: Any) -> None:
        if self._same_tag_objects:
            item_key = (*node.key, "item", next(node.item_serials))
        else:
            item_key = (*node.key, "item", _tag_identity(tag, self._tag_columns))
        if self._item_spans:
            # A span's item id is the tag itself: only when item spans are asked for.
            identity = self._adapter.identity(
                ExecutionLevel.ITEM,
                name=label,
                parent=node.key,
                run_id=_tag_text(_tag_identity(tag, self._tag_columns)),
            )
        else:
            identity = node.item_identity
            if identity is None or identity.name != label:
                identity = node.item_identity = self._adapter.identity(
                    ExecutionLevel.ITEM, name=label, parent=node.key
                )
        node.open_items[item_key] = _OpenItem(identity, tag)
        node.last_started = (tag, item_key)
        self._adapter.report(item_key, ExecutionStatus.RUNNING, identity)

    def item_ended(
        self, node: _Node, tag: Any, status: ExecutionStatus, error: BaseException | None
    ) -> None:
        last_started = node.last_started
        if last_started is not None and last_started[0] is tag:  # a tag is never changed
            item_key = last_started[1]
            node.last_started = None
        else:  # another copy of the item's tag (the async path), or another item's
            item_key = self._item_key_of_copy(node, tag)
        item = node.open_items.pop(item_key, None)
        if item is None:  # its start was not seen: the tracker needs only the level
            identity = self._adapter.identity(ExecutionLevel.ITEM, parent=node.key)
        else:
            identity = item.identity
        node.tally.count(status, error)
        self._tally.count(status, error)
        self._adapter.report(item_key, status, identity, error=error)

    def _item_key_of_copy(self, node: _Node, tag: Any) -> Hashable:
        """The key of the item ``tag`` is a copy of, found by its values: the key itself when
        items are keyed by them; else that of the open item whose tag has the same values, or
        a key of its own for an item whose start was not seen."""
        tag_identity = _tag_identity(tag, self._tag_columns)
        if not self._same_tag_objects:
            return (*node.key, "item", tag_identity)
        for item_key, item in node.open_items.items():
            if _tag_identity(item.tag, self._tag_columns) == tag_identity:
                return item_key
        return (*node.key, "item", next(node.item_serials))


class _RunObserver:
    """Our observer (next to the user's in a ``CompositeObserver``, or alone): orcapod's
    observer protocol, both vocabularies.

    ``contextualize`` gives each node its own view, which remembers that node, so item hooks
    find it without relying on labels being unique. orcapod calls source nodes' hooks on the
    root observer itself; there nodes are found by label.
    """

    def __init__(self, run: _Run, no_op_logger: Any, contextualized: bool = False) -> None:
        self._run = run
        self._no_op_logger = no_op_logger
        self._contextualized = contextualized
        self._node: _Node | None = None

    def contextualize(self, *identity_path: str) -> _RunObserver:
        return _RunObserver(self._run, self._no_op_logger, contextualized=True)

    @guarded
    def on_run_start(self, run_id: str, pipeline_uri: str = "", **_: Any) -> None:
        self._run.started(run_id, pipeline_uri)

    @guarded
    def on_run_end(self, run_id: str, **_: Any) -> None:
        self._run.ended()

    @guarded
    def on_node_start(
        self, node_label: str, node_hash: str, tag_schema: Any = None, **_: Any
    ) -> None:
        if not self._contextualized:
            self._run.node_started(node_label, node_hash)
        elif self._node is None:  # a relay may announce its node twice: the first counts
            self._node = self._run.node_started(node_label, node_hash)

    @guarded
    def on_node_end(self, node_label: str, node_hash: str, **_: Any) -> None:
        node = self._node_for(node_label)
        if node is not None:
            self._run.node_ended(node)

    @guarded
    def on_data_start(self, node_label: str, tag: Any, data: Any) -> None:
        node = self._node_for(node_label)
        if node is not None:
            self._run.item_started(node, node_label, tag)

    @guarded
    def on_data_end(
        self, node_label: str, tag: Any, input_data: Any, output_data: Any, cached: bool
    ) -> None:
        node = self._node_for(node_label)
        if node is not None:
            status = ExecutionStatus.CACHED if cached else ExecutionStatus.SUCCEEDED
            self._run.item_ended(node, tag, status, None)

    @guarded
    def on_data_crash(self, node_label: str, tag: Any, data: Any, error: BaseException) -> None:
        node = self._node_for(node_label)
        if node is not None:
            self._run.item_ended(node, tag, ExecutionStatus.FAILED, error)

    def create_data_logger(self, tag: Any, data: Any, **_: Any) -> Any:
        # orcapod's own no-op logger: CompositeObserver then picks the user's logger.
        return self._no_op_logger

    # orcapod's main branch names the item hooks after packets.
    on_packet_start = on_data_start
    on_packet_end = on_data_end
    on_packet_crash = on_data_crash
    create_packet_logger = create_data_logger

    def _node_for(self, label: str) -> _Node | None:
        return self._node if self._node is not None else self._run.node_by_label(label)


def _tag_identity(tag: Any, columns: Any) -> Hashable:
    """What tells one item from another within a node, stable across orcapod's tag copies.

    The async path hands over a fresh copy of the tag at every hook, so the tag's values
    (user and system tags, which include the source record id) identify it, not the object.
    ``columns`` is orcapod's ``ColumnConfig(system_tags=True)``, built once per run: given
    as a dict, each call would build it again, twice.
    """
    try:
        values = tag.as_dict(columns=columns)
        identity = tuple(sorted(values.items()))
        hash(identity)
    except Exception:
        return id(tag)
    return identity


def _tag_text(identity: Hashable) -> str:
    if isinstance(identity, tuple):
        return ",".join(f"{key}={value}" for key, value in identity if not key.startswith("_"))
    return str(identity)
