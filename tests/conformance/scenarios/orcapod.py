"""orcapod 0.1: a source of one item and one function pod, run once on the sync orchestrator.

orcapod catches an item's ``Exception`` (the item crashes, the run goes on and returns) but not
a ``KeyboardInterrupt``, which reaches the caller. The step is an item of the function pod's
node: item spans are asked for, so that it is a span of its own.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, ClassVar

from orcapod import Pipeline, PipelineJob, function_pod
from orcapod.databases import InMemoryArrowDatabase
from orcapod.pipeline.sync_orchestrator import SyncPipelineOrchestrator
from orcapod.sources import DictSource

from conformance.scenarios import Reported, Scenario, ending_with_the_step
from conformance.workload import Outcome, Step

PIPELINE = "conformance"
RUN = ("pipeline", f"RUN {PIPELINE}")
SOURCE = ("stage", "source")
NODE = ("stage", "step")
ITEM = ("item", "step")


def _job(body: Step) -> PipelineJob:
    """A runnable job over a fresh in-memory store (no cache hit from an earlier run)."""

    @function_pod(output_keys="out")
    def step(x: int) -> int:  # the function pod's node is named after it
        return body() + x

    source = DictSource([{"id": 0, "x": 1}], tag_columns="id", source_id="source")
    with Pipeline(PIPELINE) as pipeline:
        step.pod(source)
    return PipelineJob.from_pipeline(
        pipeline, store=InMemoryArrowDatabase(), sources={"source": source}
    )


class OrcapodScenario(Scenario):
    options: ClassVar[Mapping[str, Any]] = {"item_spans": True}
    step = ITEM
    reported: ClassVar[Reported] = ending_with_the_step(RUN, NODE, ITEM, succeeding=(SOURCE,))

    def run(self, step: Step) -> Outcome:
        job = _job(step)
        orcapod_log = logging.getLogger("orcapod")
        level = orcapod_log.level
        orcapod_log.setLevel(logging.CRITICAL)  # it logs the crashed item with its traceback
        try:
            returned = job.run(orchestrator=SyncPipelineOrchestrator())
        except BaseException as error:
            return Outcome(None, error)
        finally:
            orcapod_log.setLevel(level)
        rows = job.nodes["step"].as_table().to_pylist()
        return Outcome((returned is job, rows), None)


SCENARIO = OrcapodScenario()
