"""orcapod 0.1: the real framework and orchestrators, the real SDK with in-memory exporters."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections import Counter

import pytest
from opentelemetry.trace import StatusCode
from orcapod import Pipeline, PipelineJob, function_pod
from orcapod.databases import InMemoryArrowDatabase
from orcapod.operators import Join
from orcapod.pipeline.async_orchestrator import AsyncPipelineOrchestrator
from orcapod.pipeline.status_observer import StatusObserver
from orcapod.pipeline.sync_orchestrator import SyncPipelineOrchestrator
from orcapod.sources import DictSource
from support import EXAMPLES, console_points, console_spans, run_example_instrumented

from opentelemetry_instrumentation_execstatus import telemetry
from opentelemetry_instrumentation_execstatus.adapters import calls
from opentelemetry_instrumentation_execstatus.adapters.orcapod import OrcapodAdapter

sys.path.insert(0, str(EXAMPLES))
import orcapod_pipeline

NODES = ("numbers", "double", "add_one")
PIPELINE = "numbers_pipeline"


@pytest.fixture(autouse=True)
def _quiet_orcapod():
    """orcapod logs every failed item with its traceback; the tests fail items on purpose."""
    logger = logging.getLogger("orcapod")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    yield
    logger.setLevel(level)


class RecordingObserver:
    """A user's own observer: it records every hook orcapod calls, in order."""

    def __init__(self):
        self.events = []

    def contextualize(self, *identity_path):
        return self

    def on_run_start(self, run_id, pipeline_uri=""):
        self.events.append(("run_start", run_id))

    def on_run_end(self, run_id):
        self.events.append(("run_end", run_id))

    def on_node_start(self, node_label, node_hash, tag_schema=None):
        self.events.append(("node_start", node_label))

    def on_node_end(self, node_label, node_hash):
        self.events.append(("node_end", node_label))

    def on_data_start(self, node_label, tag, data):
        self.events.append(("data_start", node_label, tag["id"]))

    def on_data_end(self, node_label, tag, input_data, output_data, cached):
        self.events.append(("data_end", node_label, tag["id"], cached))

    def on_data_crash(self, node_label, tag, data, error):
        self.events.append(("data_crash", node_label, tag["id"], type(error).__name__))

    def create_data_logger(self, tag, data):
        return _DataLogger(self.events, tag["id"])


class _DataLogger:
    """The user's data logger: orcapod hands it what it captured of each computed item."""

    def __init__(self, events, item_id):
        self._events = events
        self._item_id = item_id

    def record(self, **captured):
        self._events.append(("logged", self._item_id, captured.get("success")))


def _runs(otel):
    return sorted(
        (s for s in otel.spans() if s.name == f"RUN {PIPELINE}"), key=lambda s: s.start_time
    )


def _stages(otel, run):
    return {
        s.name: s
        for s in otel.spans()
        if s.parent is not None and s.parent.span_id == run.context.span_id
    }


def test_run_nodes_and_items_on_the_sync_orchestrator(instrument):
    otel = instrument()
    recorder = RecordingObserver()
    orcapod_pipeline.run(runs=1, observer=recorder)

    (run,) = _runs(otel)
    (run_id,) = [event[1] for event in recorder.events if event[0] == "run_start"]
    # orcapod still gives the user's data logger every computed item (ours offers a no-op one).
    logged = Counter(event[1:] for event in recorder.events if event[0] == "logged")
    assert logged == {(0, True): 2, (1, True): 2, (2, True): 2, (3, False): 1}
    stages = _stages(otel, run)
    assert sorted(stages) == sorted(NODES)
    assert len(otel.spans()) == 1 + len(NODES)  # items are metrics only, unless asked for
    assert run.parent is None
    assert run.attributes["cicd.pipeline.run.id"] == run_id
    assert run.attributes["cicd.pipeline.name"] == PIPELINE
    assert run.attributes["execution.orchestrator"] == "orcapod"
    # The run went on past the failed item, but it did not succeed.
    assert run.attributes["execution.status"] == "failed"
    assert run.attributes["error.type"] == "ValueError"
    assert run.status.status_code is StatusCode.ERROR

    double = stages["double"]
    assert double.attributes["execution.level"] == "stage"
    assert double.attributes["cicd.pipeline.task.name"] == "double"
    assert double.attributes["cicd.pipeline.name"] == PIPELINE
    assert double.attributes["execution.status"] == "failed"
    assert double.attributes["error.type"] == "ValueError"
    (exception,) = [e for e in double.events if e.name == "exception"]
    assert exception.attributes["exception.message"] == "cannot double 3"
    for name in ("numbers", "add_one"):
        assert stages[name].attributes["execution.status"] == "succeeded"
        assert stages[name].status.status_code is StatusCode.UNSET
    assert stages["numbers"].end_time <= stages["double"].start_time  # sync: one node at a time

    assert otel.transition_counts(execution_level="item", cicd_pipeline_task_name="double") == {
        ("running", "succeeded"): 3,
        ("running", "failed"): 1,
    }
    assert otel.transition_counts(execution_level="item", cicd_pipeline_task_name="add_one") == {
        ("running", "succeeded"): 3
    }
    assert otel.transition_counts(execution_level="stage") == {
        ("running", "succeeded"): 2,
        ("running", "failed"): 1,
    }
    assert otel.transition_counts(execution_level="pipeline") == {("running", "failed"): 1}
    assert telemetry.current().tracker.in_flight_count() == 0


def test_every_node_of_a_join_is_a_stage(instrument):
    """Two sources (hooks on the root observer), an operator and a function node."""

    @function_pod(output_keys="total")
    def add(x: int, y: int) -> int:
        return x + y

    xs = DictSource([{"id": i, "x": i} for i in range(3)], tag_columns="id", source_id="xs")
    ys = DictSource([{"id": i, "y": 10 * i} for i in range(3)], tag_columns="id", source_id="ys")
    with Pipeline("joined") as pipeline:
        add.pod(Join()(xs, ys))
    job = PipelineJob.from_pipeline(
        pipeline, store=InMemoryArrowDatabase(), sources={"xs": xs, "ys": ys}
    )
    otel = instrument()
    job.run()

    run = otel.span("RUN joined")
    stages = _stages(otel, run)
    assert sorted(stages) == ["Join", "add", "xs", "ys"]
    assert {s.attributes["execution.status"] for s in stages.values()} == {"succeeded"}
    assert run.attributes["execution.status"] == "succeeded"
    assert otel.transition_counts(execution_level="item") == {("running", "succeeded"): 3}


def test_cache_hits_are_cached_never_succeeded(instrument):
    otel = instrument()
    orcapod_pipeline.run(runs=2)

    first, second = _runs(otel)
    assert first.attributes["cicd.pipeline.run.id"] != second.attributes["cicd.pipeline.run.id"]
    stages = _stages(otel, second)
    assert stages["add_one"].attributes["execution.status"] == "cached"
    assert stages["add_one"].attributes["execution.cached"] is True
    assert stages["add_one"].attributes["cicd.pipeline.task.run.result"] == "success"
    # double's good items were cache hits, its failed item was retried and failed again.
    assert stages["double"].attributes["execution.status"] == "failed"
    assert _stages(otel, first)["add_one"].attributes["execution.cached"] is False

    assert otel.transition_counts(execution_level="item", cicd_pipeline_task_name="add_one") == {
        ("running", "succeeded"): 3,  # first run
        ("running", "cached"): 3,  # second run
    }
    assert otel.transition_counts(execution_level="item", cicd_pipeline_task_name="double") == {
        ("running", "succeeded"): 3,
        ("running", "cached"): 3,
        ("running", "failed"): 2,
    }
    assert otel.transition_counts(execution_level="stage", cicd_pipeline_task_name="add_one") == {
        ("running", "succeeded"): 1,
        ("running", "cached"): 1,
    }


def test_async_orchestrator_overlapping_nodes_and_concurrent_items(instrument):
    otel = instrument()
    orcapod_pipeline.run(runs=2, use_async=True)

    first, second = _runs(otel)
    for run in (first, second):
        stages = _stages(otel, run)
        assert sorted(stages) == sorted(NODES)
        assert {s.context.trace_id for s in stages.values()} == {run.context.trace_id}
        assert run.attributes["execution.status"] == "failed"
    stages = _stages(otel, first)
    # Nodes run concurrently on the async orchestrator: add_one starts before double ends.
    assert stages["add_one"].start_time < stages["double"].end_time
    assert stages["double"].attributes["execution.status"] == "failed"
    assert stages["add_one"].attributes["execution.status"] == "succeeded"
    assert _stages(otel, second)["add_one"].attributes["execution.status"] == "cached"
    # Items were matched start-to-end although orcapod hands over a new tag object each time.
    assert otel.transition_counts(execution_level="item", cicd_pipeline_task_name="double") == {
        ("running", "succeeded"): 3,
        ("running", "cached"): 3,
        ("running", "failed"): 2,
    }
    assert telemetry.current().tracker.in_flight_count() == 0


def test_run_async_inside_a_running_loop(instrument):
    otel = instrument()
    job = orcapod_pipeline.build()

    async def main():
        return await AsyncPipelineOrchestrator().run_async(job.dag, run_id="in-loop")

    result = asyncio.run(main())
    assert {node.label: len(rows) for node, rows in result.node_outputs.items()} == {
        "numbers": 4,
        "double": 3,
        "add_one": 3,
    }
    (run,) = [s for s in otel.spans() if s.attributes.get("cicd.pipeline.run.id") == "in-loop"]
    assert run.name == "RUN pipeline"  # called with no pipeline_uri: orcapod has no name
    assert sorted(_stages(otel, run)) == sorted(NODES)


# What ``double_or_stop`` raises on item 2: set by each test.
STOP: dict[str, BaseException] = {}


@function_pod(output_keys="doubled")
def double_or_stop(x: int) -> int:
    """Fails on 1 (orcapod goes on with the other items), is interrupted on 2."""
    if x == 1:
        raise ValueError("cannot double 1")
    if x == 2:
        raise STOP["interrupt"]
    return 2 * x


SLOW_STARTED: list[int] = []  # the items ``slow_double`` has started


@function_pod(output_keys="doubled", function_name="double")
async def slow_double(x: int) -> int:
    """The example's ``double`` (its node is the same stage), but slow: an item still runs
    whenever its run is cancelled."""
    SLOW_STARTED.append(x)
    await asyncio.sleep(30)
    return 2 * x


def _job(name: str, pod) -> PipelineJob:
    numbers = DictSource(
        [{"id": i, "x": i} for i in range(4)], tag_columns="id", source_id="numbers"
    )
    with Pipeline(name) as pipeline:
        orcapod_pipeline.add_one.pod(pod.pod(numbers))
    return PipelineJob.from_pipeline(
        pipeline, store=InMemoryArrowDatabase(), sources={"numbers": numbers}
    )


def _items(otel, stage):
    return {
        s.attributes["cicd.pipeline.task.run.id"]: s
        for s in otel.spans()
        if s.parent is not None and s.parent.span_id == stage.context.span_id
    }


def _cancelled_without_error(span):
    assert span.attributes["execution.status"] == "cancelled", span.name
    assert "error.type" not in span.attributes, span.name
    assert not [e for e in span.events if e.name == "exception"], span.name
    assert span.status.status_code is StatusCode.UNSET, span.name


def test_cancelled_async_run_closes_its_open_nodes_and_items(instrument):
    otel = instrument()
    job = _job(PIPELINE, slow_double)

    class CancelOnFirstItem(RecordingObserver):
        """A user observer that cancels the run's task as soon as an item starts."""

        task = None

        def on_data_start(self, node_label, tag, data):
            super().on_data_start(node_label, tag, data)
            self.task.cancel()

    observer = CancelOnFirstItem()

    async def main():
        observer.task = asyncio.current_task()
        await AsyncPipelineOrchestrator().run_async(job.dag, observer=observer)

    with pytest.raises(asyncio.CancelledError):
        asyncio.run(main())

    (run,) = [s for s in otel.spans() if s.name == "RUN pipeline"]
    assert run.attributes["execution.status"] == "cancelled"
    stages = _stages(otel, run)
    assert stages["numbers"].attributes["execution.status"] == "succeeded"
    assert stages["double"].attributes["execution.status"] == "cancelled"
    # Items orcapod had started before the cancellation reached it are cancelled with it.
    started = [e for e in observer.events if e[0] == "data_start"]
    assert started
    assert otel.transition_counts(execution_level="item") == {
        ("running", "cancelled"): len(started)
    }
    assert telemetry.current().tracker.in_flight_count() == 0


@pytest.mark.parametrize("interrupt", [KeyboardInterrupt, SystemExit])
def test_an_interrupted_item_cancels_its_node_and_run(instrument, monkeypatch, interrupt):
    """The interrupt rule: an interrupt raised in an item function ends the item, its node and
    its run ``cancelled``, with no error.type, although an earlier item of the node failed;
    orcapod calls no hook for it (it catches only ``Exception``).

    Run on the sync orchestrator. On the async ones an interrupt escapes the event loop from a
    task, and asyncio abandons the loop's other tasks, orcapod's among them: they are closed
    only when collected, where orcapod's coroutines ignore GeneratorExit (an unraisable error,
    which fails whichever test is running then)."""
    otel = instrument(item_spans=True)
    stop = interrupt()
    monkeypatch.setitem(STOP, "interrupt", stop)
    job = _job("stopped", double_or_stop)

    with pytest.raises(interrupt) as raised:
        job.run(orchestrator=SyncPipelineOrchestrator())
    assert raised.value is stop

    run = otel.span("RUN stopped")
    stages = _stages(otel, run)
    node = stages["double_or_stop"]
    items = _items(otel, node)
    assert items["id=1"].attributes["execution.status"] == "failed"
    assert items["id=1"].attributes["error.type"] == "ValueError"
    for span in (items["id=2"], node, run):
        _cancelled_without_error(span)
    assert run.attributes["cicd.pipeline.result"] == "cancellation"
    assert node.attributes["cicd.pipeline.task.run.result"] == "cancellation"
    assert sorted(stages) == ["double_or_stop", "numbers"]  # add_one never started
    assert stages["numbers"].attributes["execution.status"] == "succeeded"
    assert items["id=0"].attributes["execution.status"] == "succeeded"
    assert sorted(items) == ["id=0", "id=1", "id=2"]  # the run stopped at item 2
    assert otel.transition_counts(execution_level="pipeline") == {("running", "cancelled"): 1}
    assert set(otel.sums("execution.active").values()) == {0}
    assert telemetry.current().tracker.in_flight_count() == 0


def test_run_async_cancelled_from_another_task_is_cancelled(instrument):
    """asyncio cancellation from outside the run (the caller cancels its task, as a timeout
    does) ends the run, its open nodes and its items ``cancelled``, with no error.type."""
    otel = instrument(item_spans=True)
    job = _job("slow", slow_double)
    SLOW_STARTED.clear()

    async def main():
        run = asyncio.ensure_future(
            AsyncPipelineOrchestrator().run_async(job.dag, pipeline_uri="slow@1")
        )
        while len(SLOW_STARTED) < 4 and not run.done():
            await asyncio.sleep(0.005)
        run.cancel()
        await run

    with pytest.raises(asyncio.CancelledError):
        asyncio.run(main())

    run = otel.span("RUN slow")
    stages = _stages(otel, run)
    assert stages["numbers"].attributes["execution.status"] == "succeeded"
    for name in ("double", "add_one"):
        _cancelled_without_error(stages[name])
    items = _items(otel, stages["double"])
    assert sorted(items) == ["id=0", "id=1", "id=2", "id=3"]
    for span in (*items.values(), run):
        _cancelled_without_error(span)
    assert otel.transition_counts(execution_level="item") == {("running", "cancelled"): 4}
    assert telemetry.current().tracker.in_flight_count() == 0


def test_fail_fast_reraises_exactly_as_without_instrumentation(instrument):
    def failure():
        job = orcapod_pipeline.build()
        with pytest.raises(ValueError, match="cannot double 3") as raised:
            job.run(orchestrator=SyncPipelineOrchestrator(error_policy="fail_fast"))
        return raised.value, raised.traceback

    bare_error, bare_traceback = failure()
    otel = instrument()
    error, traceback = failure()

    assert type(error) is type(bare_error)
    # The same frames, plus the instrumentation's one wrapper frame (the kit's call wrapper).
    ours = [e for e in traceback if str(e.path) == calls.__file__]
    assert [e.name for e in ours] == ["wrapper"]
    assert [e.name for e in traceback if e not in ours] == [e.name for e in bare_traceback]
    assert traceback[-1].name == "double"
    run = otel.span(f"RUN {PIPELINE}")
    assert run.attributes["execution.status"] == "failed"
    assert run.attributes["error.type"] == "ValueError"
    assert [e.attributes["exception.message"] for e in run.events if e.name == "exception"] == [
        "cannot double 3"
    ]
    stages = _stages(otel, run)
    assert sorted(stages) == ["double", "numbers"]  # add_one never started
    assert stages["double"].attributes["execution.status"] == "failed"
    assert otel.transition_counts(execution_level="item") == {
        ("running", "succeeded"): 3,
        ("running", "failed"): 1,
    }


def test_the_users_observer_still_receives_every_event(instrument):
    def states(status_observer):
        table = status_observer.get_status()
        return Counter(zip(table.column("id").to_pylist(), table["_status_state"].to_pylist()))

    bare = StatusObserver(status_database=InMemoryArrowDatabase())
    orcapod_pipeline.run(runs=2, observer=bare)
    otel = instrument()
    observed = StatusObserver(status_database=InMemoryArrowDatabase())
    orcapod_pipeline.run(runs=2, observer=observed)

    assert states(observed) == states(bare)
    assert states(observed)[("3", "FAILED")] == 2  # StatusObserver writes tags as text
    assert states(observed)[("0", "CACHED")] == 2  # double and add_one, second run
    assert len(_runs(otel)) == 2


def test_repeated_run_ids_are_separate_runs(instrument):
    otel = instrument()
    job = orcapod_pipeline.build()
    for _ in range(2):
        AsyncPipelineOrchestrator().run(job.dag, run_id="daily", pipeline_uri="daily@1")
    runs = [s for s in otel.spans() if s.name == "RUN daily"]
    assert [r.attributes["cicd.pipeline.run.id"] for r in runs] == ["daily", "daily"]
    assert runs[0].context.trace_id != runs[1].context.trace_id


def test_item_spans_when_asked_for(instrument):
    otel = instrument(item_spans=True)
    orcapod_pipeline.run(runs=1)

    (run,) = _runs(otel)
    double = _stages(otel, run)["double"]
    items = [
        s
        for s in otel.spans()
        if s.parent is not None and s.parent.span_id == double.context.span_id
    ]
    assert sorted(s.attributes["cicd.pipeline.task.run.id"] for s in items) == [
        "id=0",
        "id=1",
        "id=2",
        "id=3",
    ]
    assert {s.name for s in items} == {"double"}
    assert {s.attributes["execution.level"] for s in items} == {"item"}
    (failed,) = [s for s in items if s.attributes["execution.status"] == "failed"]
    assert failed.attributes["cicd.pipeline.task.run.id"] == "id=3"
    assert failed.attributes["error.type"] == "ValueError"


def test_main_branch_packet_hook_names_reach_the_same_telemetry(instrument):
    """orcapod's main branch calls on_packet_*; our observer answers both vocabularies."""
    otel = instrument()
    job = orcapod_pipeline.build()
    (tag, packet), *_ = job.nodes["numbers"].iter_data()
    run = OrcapodAdapter(telemetry.current()).new_run()
    root = run.observer
    root.on_run_start("packet-run", pipeline_uri="packets@1")
    node = root.contextualize("double", "v0")
    node.on_node_start("double", "hash-1", tag_keys=("id",), pipeline_path=("packets",))
    node.on_packet_start("double", tag, packet)
    node.on_packet_end("double", tag, packet, packet, cached=True)
    node.on_node_end("double", "hash-1", pipeline_path=("packets",))
    root.on_run_end("packet-run")
    run.finish(None)

    assert otel.span("double").attributes["execution.status"] == "cached"
    assert otel.span("RUN packets").attributes["execution.status"] == "cached"
    assert otel.transition_counts(execution_level="item") == {("running", "cached"): 1}


def test_uninstrument_restores_the_orchestrators(instrument):
    originals = {
        (SyncPipelineOrchestrator, "run"): SyncPipelineOrchestrator.__dict__["run"],
        (AsyncPipelineOrchestrator, "run"): AsyncPipelineOrchestrator.__dict__["run"],
        (AsyncPipelineOrchestrator, "run_async"): AsyncPipelineOrchestrator.__dict__["run_async"],
    }
    instrument()
    for (owner, name), original in originals.items():
        assert owner.__dict__[name] is not original
        assert owner.__dict__[name].__wrapped__ is original

    from opentelemetry_instrumentation_execstatus import ExecStatusInstrumentor

    ExecStatusInstrumentor().uninstrument()
    for (owner, name), original in originals.items():
        assert owner.__dict__[name] is original


def test_zero_code_on_an_unmodified_script():
    """`opentelemetry-instrument` on the example script, as a user runs it."""
    documents = run_example_instrumented("orcapod_pipeline.py", "--async")

    spans = console_spans(documents)
    assert Counter(s["name"] for s in spans) == Counter(
        {f"RUN {PIPELINE}": 2, "numbers": 2, "double": 2, "add_one": 2}
    )
    run_span_ids = {s["context"]["span_id"] for s in spans if s["name"] == f"RUN {PIPELINE}"}
    assert all(s["parent_id"] in run_span_ids for s in spans if s["name"] in NODES)
    cached = [s["name"] for s in spans if s["attributes"].get("execution.status") == "cached"]
    assert cached == ["add_one"]

    item_counts = Counter()
    for point in console_points(documents, "execution.status_transition.duration"):
        attributes = point["attributes"]
        if attributes["execution.level"] == "item":
            key = (attributes["execution.status.from"], attributes["execution.status.to"])
            item_counts[key] += point["count"]
    assert item_counts == {
        ("running", "succeeded"): 6,
        ("running", "cached"): 6,
        ("running", "failed"): 2,
    }
