"""A plain orcapod pipeline, with no OpenTelemetry code in it.

numbers -> double -> add_one, over four items; ``double`` fails on 3. The pipeline runs twice on
one store: the second run serves the three good items from the cache and retries the failed one
(orcapod does not cache failures). ``--async`` runs it on the async orchestrator.

Run it instrumented with ``opentelemetry-instrument python examples/orcapod_pipeline.py``.
"""

from __future__ import annotations

import sys
import time

from orcapod import Pipeline, PipelineJob, function_pod
from orcapod.databases import InMemoryArrowDatabase
from orcapod.pipeline.async_orchestrator import AsyncPipelineOrchestrator
from orcapod.pipeline.sync_orchestrator import SyncPipelineOrchestrator
from orcapod.sources import DictSource

ITEMS = 4
FAILING_X = 3


@function_pod(output_keys="doubled")
def double(x: int) -> int:
    time.sleep(0.01)
    if x == FAILING_X:
        raise ValueError(f"cannot double {x}")
    return 2 * x


@function_pod(output_keys="total")
def add_one(doubled: int) -> int:
    time.sleep(0.005)
    return doubled + 1


def build(name: str = "numbers_pipeline") -> PipelineJob:
    """A runnable job over a fresh in-memory store."""
    numbers = DictSource(
        [{"id": i, "x": i} for i in range(ITEMS)], tag_columns="id", source_id="numbers"
    )
    with Pipeline(name) as pipeline:
        add_one.pod(double.pod(numbers))
    return PipelineJob.from_pipeline(
        pipeline, store=InMemoryArrowDatabase(), sources={"numbers": numbers}
    )


def run(runs: int = 2, use_async: bool = False, observer: object = None) -> PipelineJob:
    """Run the pipeline ``runs`` times on one store (so later runs hit the cache)."""
    job = build()
    for _ in range(runs):
        orchestrator = AsyncPipelineOrchestrator() if use_async else SyncPipelineOrchestrator()
        job.run(orchestrator=orchestrator, observer=observer)
    return job


if __name__ == "__main__":
    finished = run(use_async="--async" in sys.argv)
    print("results:", finished.nodes["add_one"].as_table().to_pylist())
