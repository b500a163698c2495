"""A small routilux 1.x pipeline with no OpenTelemetry code in it.

extract -> transform -> load, plus an ``audit`` routine that always fails. Run it plain
(``python examples/routilux_pipeline.py``) or under ``opentelemetry-instrument`` to see what
the instrumentation adds without touching the script.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from routilux.core import Flow, FlowRegistry, Routine, Runtime

# Released once by each of the two terminal routines of every job. routilux 1.1 has no
# "job finished" signal of its own (jobs end only when someone completes them, and
# Runtime.wait_until_all_workers_idle can return before work starts), so the script counts.
FINISHED = threading.Semaphore(0)
TERMINAL_ROUTINES = 2


def _take_new(slot_name: str):
    """Activation policy: run as soon as the slot has new data, consuming all of it."""

    def policy(slots: dict[str, Any], worker_state: Any) -> tuple[bool, dict, str]:
        slot = slots[slot_name]
        if slot.get_unconsumed_count():
            return True, {slot_name: slot.consume_all_new()}, "new_data"
        return False, {}, "no_new_data"

    return policy


class Extract(Routine):
    def __init__(self) -> None:
        super().__init__()
        self.add_slot("trigger")
        self.add_event("rows")
        self.set_activation_policy(_take_new("trigger"))

    def logic(self, trigger: list[Any], *, worker_state: Any, **_: Any) -> None:
        time.sleep(0.02)
        self.emit("rows", worker_state=worker_state, rows=[1, 2, 3])


class Transform(Routine):
    def __init__(self) -> None:
        super().__init__()
        self.add_slot("rows")
        self.add_event("clean")
        self.set_activation_policy(_take_new("rows"))

    def logic(self, rows: list[Any], *, worker_state: Any, **_: Any) -> None:
        time.sleep(0.03)
        self.emit("clean", worker_state=worker_state, rows=[r * 10 for r in rows[0]["rows"]])


class Load(Routine):
    def __init__(self) -> None:
        super().__init__()
        self.add_slot("clean")
        self.set_activation_policy(_take_new("clean"))

    def logic(self, clean: list[Any], **_: Any) -> None:
        try:
            time.sleep(0.01)
        finally:
            FINISHED.release()


class Audit(Routine):
    def __init__(self) -> None:
        super().__init__()
        self.add_slot("clean")
        self.set_activation_policy(_take_new("clean"))

    def logic(self, clean: list[Any], **_: Any) -> None:
        try:
            raise ValueError("audit rejected the batch")
        finally:
            FINISHED.release()


def build_flow(flow_id: str = "nightly_etl") -> Flow:
    flow = Flow(flow_id=flow_id)
    flow.add_routine(Extract(), "extract")
    flow.add_routine(Transform(), "transform")
    flow.add_routine(Load(), "load")
    flow.add_routine(Audit(), "audit")
    flow.connect("extract", "rows", "transform", "rows")
    flow.connect("transform", "clean", "load", "clean")
    flow.connect("transform", "clean", "audit", "clean")
    FlowRegistry.get_instance().register_by_name(flow_id, flow)
    return flow


def run(jobs: int = 1, flow_id: str = "nightly_etl") -> list[str]:
    """Post ``jobs`` jobs, wait for their terminal routines, shut down; return the job ids."""
    build_flow(flow_id)
    with Runtime(thread_pool_size=4) as runtime:
        job_ids = [
            runtime.post(flow_id, "extract", "trigger", {"go": True})[1].job_id for _ in range(jobs)
        ]
        for _ in range(jobs * TERMINAL_ROUTINES):
            if not FINISHED.acquire(timeout=30):
                raise TimeoutError("the pipeline did not finish within 30 s")
    return job_ids


if __name__ == "__main__":
    run()
