"""orcapod 0.1: how items are told apart, and what that costs orcapod's run.

A tag's values are read from its Arrow row (a conversion orcapod itself does not make): on the
sync orchestrator, which hands an item's end the very tag its start got, they are not read at
all unless item spans need the item's id; a copy of the tag at the end still ends its item.
"""

from __future__ import annotations

import sys
from collections import Counter

import pytest
from orcapod.core.datagrams import Tag
from orcapod.pipeline import composite_observer
from orcapod.pipeline.observer import NoOpObserver
from support import EXAMPLES

from opentelemetry_instrumentation_execstatus import telemetry
from opentelemetry_instrumentation_execstatus.adapters.orcapod import OrcapodAdapter

sys.path.insert(0, str(EXAMPLES))
import orcapod_pipeline


@pytest.fixture
def tag_reads(monkeypatch):
    """``Tag.as_dict`` calls, counted."""
    calls = Counter()
    as_dict = Tag.as_dict

    def counted(self, *args, **kwargs):
        calls["as_dict"] += 1
        return as_dict(self, *args, **kwargs)

    monkeypatch.setattr(Tag, "as_dict", counted)
    return calls


def test_a_sync_run_reads_no_tag_values_without_item_spans(instrument, tag_reads):
    orcapod_pipeline.run(runs=1)  # bare: what orcapod reads of its tags itself
    bare = tag_reads["as_dict"]
    otel = instrument()
    orcapod_pipeline.run(runs=1)

    assert tag_reads["as_dict"] - bare == 0
    assert otel.transition_counts(execution_level="item") == {
        ("running", "succeeded"): 6,
        ("running", "failed"): 1,
    }


def test_item_spans_read_each_tag_once_for_the_item_id(instrument, tag_reads):
    orcapod_pipeline.run(runs=1)
    bare = tag_reads["as_dict"]
    otel = instrument(item_spans=True)
    orcapod_pipeline.run(runs=1)

    assert tag_reads["as_dict"] - bare == 7  # one read per item, at its start
    item_ids = Counter(
        span.attributes["cicd.pipeline.task.run.id"]
        for span in otel.spans()
        if span.attributes["execution.level"] == "item"
    )
    assert item_ids == {"id=0": 2, "id=1": 2, "id=2": 2, "id=3": 1}


def test_a_copy_of_the_tag_at_the_end_still_ends_its_item(instrument):
    """Items keyed by tag object: an end given another object is matched by its values."""
    otel = instrument()
    job = orcapod_pipeline.build()
    (tag, data), (other_tag, other_data), *_ = job.nodes["numbers"].iter_data()
    run = OrcapodAdapter(telemetry.current()).new_run(same_tag_objects=True)
    root = run.observer
    root.on_run_start("copies", pipeline_uri="copies@1")
    node = root.contextualize("double", "v0")
    node.on_node_start("double", "hash-1")
    node.on_data_start("double", tag, data)
    node.on_data_start("double", other_tag, other_data)
    node.on_data_end("double", tag.copy(include_cache=False), data, data, cached=False)
    node.on_data_end("double", other_tag.copy(include_cache=False), data, data, cached=True)
    node.on_data_end("double", tag, data, data, cached=False)  # no start left: its own item
    node.on_node_end("double", "hash-1")
    root.on_run_end("copies")
    run.finish(None)

    assert otel.transition_counts(execution_level="item") == {
        ("running", "succeeded"): 1,
        ("running", "cached"): 1,
    }
    assert otel.span("double").attributes["execution.status"] == "succeeded"
    assert telemetry.current().tracker.in_flight_count() == 0


def test_orcapods_own_no_op_observer_is_not_composed_with_ours(instrument, monkeypatch):
    """``PipelineJob.run`` passes a ``NoOpObserver`` when the user gave none: it would only
    receive every event to do nothing with it."""
    composed = []
    composite = composite_observer.CompositeObserver

    class Counted(composite):
        def __init__(self, *observers):
            composed.append([type(observer) for observer in observers])
            super().__init__(*observers)

    monkeypatch.setattr(composite_observer, "CompositeObserver", Counted)
    otel = instrument()
    orcapod_pipeline.run(runs=1)
    assert composed == []
    assert otel.span("RUN numbers_pipeline").attributes["execution.status"] == "failed"

    orcapod_pipeline.run(runs=1, observer=NoOpObserver())
    assert composed == []
    orcapod_pipeline.run(runs=1, observer=type("UsersNoOp", (NoOpObserver,), {})())
    assert len(composed) >= 1  # a subclass is the user's own: composed, like any other
