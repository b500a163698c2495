"""orcapod 0.1.x: orchestrator runs become pipeline runs, nodes stages, data items items.

Where it hooks, and why there: ``SyncPipelineOrchestrator.run``, ``AsyncPipelineOrchestrator.run``
and ``AsyncPipelineOrchestrator.run_async`` are every way a pipeline runs (``PipelineJob.run``
calls one of them). Each call gets a fresh observer of ours, passed to the orchestrator next to
the user's through orcapod's own ``CompositeObserver``, so the user's ``StatusObserver``,
``LoggingObserver`` or home-made observer receives every event as before, and its data logger is
still the one used (ours offers only orcapod's no-op logger). The observer answers both hook
vocabularies: ``on_data_*`` of the PyPI releases and ``on_packet_*`` of orcapod's main branch.

Status mapping: a run is ``running`` from ``on_run_start``; a node (stage) from ``on_node_start``;
a data item from ``on_data_start``, ending ``cached`` on a cache hit (never ``succeeded``: a hit
is a signal), ``succeeded`` when computed, ``failed`` on a crash. A node ends ``failed`` if any of
its items failed, ``cached`` if all of its items were cache hits, else ``succeeded``; the run
likewise over all items, and ``failed`` with the exception when the orchestrator raises
(``cancelled`` for KeyboardInterrupt or asyncio cancellation).

The async orchestrator runs nodes concurrently and item hooks as tasks on one event-loop thread,
so all state is keyed by (run, node, item) and held by the run's own observer, never by thread.
orcapod skips ``on_node_end`` on some error paths and reports only ``on_run_end`` (no outcome),
so nodes and items still open when the orchestrator returns are ended then, with the outcome the
wrapper saw.
"""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Hashable
from dataclasses import dataclass, field
from typing import Any, Callable

from opentelemetry_instrumentation_execstatus import clock
from opentelemetry_instrumentation_execstatus.adapters import Adapter
from opentelemetry_instrumentation_execstatus.patching import Patch
from opentelemetry_instrumentation_execstatus.safety import guarded
from opentelemetry_instrumentation_execstatus.semconv import (
    ExecutionLevel,
    ExecutionStatus,
    Orchestrator,
)
from opentelemetry_instrumentation_execstatus.tracker import StatusTracker, error_type_of

ORCAPOD = Orchestrator.ORCAPOD


class OrcapodAdapter(Adapter):
    name = "orcapod"
    orchestrator = Orchestrator.ORCAPOD
    top_module = "orcapod"
    distribution = "orcapod"
    supported = ">= 0.1.4, < 0.2"

    def __init__(self, telemetry: Any) -> None:
        super().__init__(telemetry)
        self._tracker: StatusTracker = telemetry.tracker
        self._item_spans: bool = telemetry.config.item_spans
        # Run ids come from the user and can repeat; each orchestrator call is its own run.
        self._run_serials = itertools.count()

    def patches(self) -> list[Patch]:
        return [
            Patch(
                "orcapod.pipeline.sync_orchestrator", "SyncPipelineOrchestrator.run", self._wrap_run
            ),
            Patch(
                "orcapod.pipeline.async_orchestrator",
                "AsyncPipelineOrchestrator.run",
                self._wrap_run,
            ),
            Patch(
                "orcapod.pipeline.async_orchestrator",
                "AsyncPipelineOrchestrator.run_async",
                self._wrap_run_async,
            ),
        ]

    def _wrap_run(
        self, wrapped: Callable[..., Any], instance: Any, args: tuple, kwargs: dict
    ) -> Any:
        run = self._observe(kwargs)
        if run is None:
            return wrapped(*args, **kwargs)
        try:
            result = wrapped(*args, **{**kwargs, "observer": run.observer})
        except BaseException as error:
            run.finish(error)
            raise
        run.finish(None)
        return result

    def _wrap_run_async(
        self, wrapped: Callable[..., Any], instance: Any, args: tuple, kwargs: dict
    ) -> Any:
        run = self._observe(kwargs)
        if run is None:
            return wrapped(*args, **kwargs)
        return _finish_when_awaited(wrapped(*args, **{**kwargs, "observer": run.observer}), run)

    @guarded
    def _observe(self, kwargs: dict) -> _Run | None:
        from orcapod.pipeline.composite_observer import CompositeObserver
        from orcapod.pipeline.observer import NoOpLogger

        run = _Run(self._tracker, next(self._run_serials), self._item_spans)
        ours = _RunObserver(run, NoOpLogger())
        user_observer = kwargs.get("observer")
        run.observer = ours if user_observer is None else CompositeObserver(user_observer, ours)
        return run


async def _finish_when_awaited(coroutine: Awaitable[Any], run: _Run) -> Any:
    try:
        result = await coroutine
    except BaseException as error:
        run.finish(error)
        raise
    run.finish(None)
    return result


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


@dataclass
class _Node:
    key: Hashable
    tally: _Tally = field(default_factory=_Tally)
    open_items: set[Hashable] = field(default_factory=set)


class _Run:
    """One orchestrator call: its run, node and item executions, and their outcomes."""

    def __init__(self, tracker: StatusTracker, serial: int, item_spans: bool) -> None:
        self._tracker = tracker
        self._item_spans = item_spans
        self.key: Hashable = ("orcapod", "run", serial)
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
        self._transition(
            self.key, ExecutionStatus.RUNNING, ExecutionLevel.PIPELINE,
            pipeline_name=(pipeline_uri or "").partition("@")[0] or None, run_id=run_id,
        )  # fmt: skip

    def ended(self) -> None:
        self._ended_at = clock.now()

    @guarded
    def finish(self, error: BaseException | None) -> None:
        """The orchestrator returned (``error`` None) or raised: end whatever is still open."""
        if not self._started:
            return  # it raised before the run began: there is no run to report
        at = self._ended_at if self._ended_at is not None else clock.now()
        interrupted = error is not None and not isinstance(error, Exception)
        for node in list(self._open_nodes.values()):
            if node.tally.failed:
                status = ExecutionStatus.FAILED
            elif error is not None:
                status = ExecutionStatus.CANCELLED
            else:
                status = node.tally.outcome()
            self._end_node(node, status, node.tally.first_error, at)
        if interrupted:
            status, reported = ExecutionStatus.CANCELLED, None
        elif error is not None:
            status, reported = ExecutionStatus.FAILED, error
        else:
            # Items failed but the run went on: its error.type is the first item's.
            status, reported = self._tally.outcome(), error_type_of(self._tally.first_error)
        self._transition(self.key, status, ExecutionLevel.PIPELINE, timestamp=at, error=reported)

    # -- nodes -------------------------------------------------------------------------

    def node_started(self, label: str, node_hash: str) -> _Node:
        node = _Node(key=(*self.key, "node", node_hash))
        self._nodes[label] = node
        self._open_nodes[node.key] = node
        self._transition(
            node.key, ExecutionStatus.RUNNING, ExecutionLevel.STAGE,
            name=label, parent_key=self.key,
        )  # fmt: skip
        return node

    def node_ended(self, node: _Node) -> None:
        self._end_node(node, node.tally.outcome(), node.tally.first_error, None)

    def node_by_label(self, label: str) -> _Node | None:
        return self._nodes.get(label)

    def _end_node(
        self,
        node: _Node,
        status: ExecutionStatus,
        error: BaseException | None,
        at: clock.Instant | None,
    ) -> None:
        if self._open_nodes.pop(node.key, None) is None:
            return  # a second on_node_end, or already ended at finish
        for item_key in node.open_items:
            self._transition(item_key, ExecutionStatus.CANCELLED, ExecutionLevel.ITEM, timestamp=at)
        node.open_items.clear()
        self._transition(node.key, status, ExecutionLevel.STAGE, timestamp=at, error=error)

    # -- items -------------------------------------------------------------------------

    def item_started(self, node: _Node, label: str, tag: Any) -> None:
        identity = _tag_identity(tag)
        item_key = (*node.key, "item", identity)
        node.open_items.add(item_key)
        self._transition(
            item_key, ExecutionStatus.RUNNING, ExecutionLevel.ITEM,
            name=label, parent_key=node.key,
            # A span's item id is the tag itself: only when item spans are asked for.
            run_id=_tag_text(identity) if self._item_spans else None,
        )  # fmt: skip

    def item_ended(
        self, node: _Node, tag: Any, status: ExecutionStatus, error: BaseException | None
    ) -> None:
        item_key = (*node.key, "item", _tag_identity(tag))
        node.open_items.discard(item_key)
        node.tally.count(status, error)
        self._tally.count(status, error)
        self._transition(item_key, status, ExecutionLevel.ITEM, error=error)

    def _transition(
        self, key: Hashable, status: ExecutionStatus, level: ExecutionLevel, **identity: Any
    ) -> None:
        self._tracker.transition(key, status, orchestrator=ORCAPOD, level=level, **identity)


class _RunObserver:
    """Our side of the ``CompositeObserver``: orcapod's observer protocol, both vocabularies.

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

    # orcapod's main branch (seed 001) names the item hooks after packets.
    on_packet_start = on_data_start
    on_packet_end = on_data_end
    on_packet_crash = on_data_crash
    create_packet_logger = create_data_logger

    def _node_for(self, label: str) -> _Node | None:
        return self._node if self._node is not None else self._run.node_by_label(label)


def _tag_identity(tag: Any) -> Hashable:
    """What tells one item from another within a node, stable across orcapod's tag copies.

    The async path hands over a fresh copy of the tag at every hook, so the tag's values
    (user and system tags, which include the source record id) identify it, not the object.
    """
    try:
        values = tag.as_dict(columns={"system_tags": True})
        identity = tuple(sorted(values.items()))
        hash(identity)
    except Exception:
        return id(tag)
    return identity


def _tag_text(identity: Hashable) -> str:
    if isinstance(identity, tuple):
        return ",".join(f"{key}={value}" for key, value in identity if not key.startswith("_"))
    return str(identity)
