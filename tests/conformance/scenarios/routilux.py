"""routilux 1.1: a flow of one routine, posted once to a real ``Runtime`` and shut down.

routilux runs the routine on its own threads and swallows what the logic raises, a
``KeyboardInterrupt`` included: the caller of ``post`` sees none of it. What the host gets is
routilux's own record (the job's and the worker's status) and the exceptions routilux hands
to the flow's error handler.
"""

from __future__ import annotations

import threading
from typing import Any, ClassVar

from routilux.core import Flow, FlowRegistry, Routine, Runtime
from routilux.core.error import ErrorHandler, ErrorStrategy

from conformance.scenarios import Reported, Scenario, ending_with_the_step
from conformance.workload import Outcome, Step

FLOW = "conformance"
ROUTINE = "step"
RUN = ("pipeline", f"RUN {FLOW}")
STEP = ("step", ROUTINE)


def _take_new(slot_name: str) -> Any:
    """Activation policy: run as soon as the slot has new data, consuming all of it."""

    def policy(slots: dict[str, Any], worker_state: Any) -> tuple[bool, dict, str]:
        slot = slots[slot_name]
        if slot.get_unconsumed_count():
            return True, {slot_name: slot.consume_all_new()}, "new_data"
        return False, {}, "no_new_data"

    return policy


class _StepRoutine(Routine):
    def __init__(self, step: Step, done: threading.Event) -> None:
        super().__init__()
        self._step = step
        self._done = done
        self.add_slot("trigger")
        self.set_activation_policy(_take_new("trigger"))

    def logic(self, trigger: list[Any], **_: Any) -> int:
        try:
            return self._step()
        finally:
            self._done.set()


class _RecordingHandler(ErrorHandler):
    """The host's error handler: routilux hands it the routine's exception."""

    def __init__(self) -> None:
        super().__init__(strategy=ErrorStrategy.CONTINUE)
        self.handled: list[BaseException] = []

    def handle_error(self, error: Any, *args: Any, **kwargs: Any) -> Any:
        self.handled.append(error)
        return super().handle_error(error, *args, **kwargs)


class RoutiluxScenario(Scenario):
    step = STEP
    reported: ClassVar[Reported] = ending_with_the_step(RUN, STEP)

    def run(self, step: Step) -> Outcome:
        done = threading.Event()
        handler = _RecordingHandler()
        flow = Flow(flow_id=FLOW)
        flow.add_routine(_StepRoutine(step, done), ROUTINE)
        flow.set_error_handler(handler)
        registry = FlowRegistry.get_instance()
        registry.register_by_name(FLOW, flow)
        try:
            with Runtime(thread_pool_size=2) as runtime:
                worker_state, job = runtime.post(FLOW, ROUTINE, "trigger", {"go": True})
                # Shutting down does not wait for the routine's task on routilux's shared pool:
                # the step has run, then routilux's own wait sees its task done.
                if not done.wait(10) or not worker_state.wait_for_completion(
                    flow, worker_state, timeout=10
                ):
                    raise TimeoutError("the routine did not finish within 10 s")
        except BaseException as error:
            return Outcome(None, error)
        finally:
            registry.unregister_by_name(FLOW)
        status = (str(job.status), str(worker_state.status))
        return Outcome((status, handler.handled), None)


SCENARIO = RoutiluxScenario()
