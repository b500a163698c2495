"""routilux 0.10: a flow of one entry routine, run by ``Flow.execute`` to completion.

routilux 0.10 runs the entry routine in the caller's thread: its exception is recorded in the
job state (which ends ``failed``), while a ``KeyboardInterrupt`` goes through to the caller.
"""

from __future__ import annotations

from typing import Any, ClassVar

from routilux import Flow, Routine
from routilux.job_state import JobState

from conformance.scenarios import Reported, Scenario, ending_with_the_step
from conformance.workload import Outcome, Step

FLOW = "conformance"
ROUTINE = "step"
RUN = ("pipeline", f"RUN {FLOW}")
STEP = ("step", ROUTINE)


class _StepRoutine(Routine):
    def __init__(self, step: Step) -> None:
        super().__init__()
        self._step = step
        self.define_slot("trigger", handler=self._on_trigger)

    def _on_trigger(self, **_: Any) -> int:
        return self._step()


class RoutiluxLegacyScenario(Scenario):
    step = STEP
    reported: ClassVar[Reported] = ending_with_the_step(RUN, STEP)

    def run(self, step: Step) -> Outcome:
        flow = Flow(flow_id=FLOW)
        entry = flow.add_routine(_StepRoutine(step), ROUTINE)
        try:
            job_state = flow.execute(entry)
            completed = JobState.wait_for_completion(flow, job_state, timeout=10)
        except BaseException as error:
            return Outcome(None, error)
        state = job_state.get_routine_state(entry) or {}
        routine = (state.get("status"), state.get("error"))
        return Outcome((completed, job_state.status, routine), None)


SCENARIO = RoutiluxLegacyScenario()
