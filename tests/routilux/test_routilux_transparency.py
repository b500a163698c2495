"""routilux 1.1 sees its own objects while instrumented: the user's routine reaches its error
handler, and what the adapter patches pickles and copies like the functions it replaced."""

from __future__ import annotations

import copy
import itertools
import pickle
import sys
import threading
from typing import Any, Callable

import pytest
import routilux.core.hooks as routilux_hooks
import wrapt
from opentelemetry.trace import StatusCode
from routilux.core import Flow, FlowRegistry, Routine, Runtime
from routilux.core import runtime as runtime_module
from routilux.core.error import ErrorHandler, ErrorStrategy
from routilux.core.manager import WorkerManager
from support import EXAMPLES, wait_until_settled

from opentelemetry_instrumentation_execstatus import ExecStatusInstrumentor

sys.path.insert(0, str(EXAMPLES))
from routilux_pipeline import _take_new

_flow_ids = itertools.count()


class _Failing(Routine):
    """Its logic is a method, as routilux's examples write routines."""

    def __init__(self) -> None:
        super().__init__()
        self.add_slot("trigger")
        self.set_activation_policy(_take_new("trigger"))

    def logic(self, trigger: list[Any], **_: Any) -> None:
        raise ValueError("rejected")


def _failing_by_set_logic(seen_logic: list[Any]) -> Routine:
    """Its logic is a function given to ``set_logic``; it records what ``_logic`` holds while
    it runs (the user's own function, never ours)."""
    routine = Routine()
    routine.add_slot("trigger")
    routine.set_activation_policy(_take_new("trigger"))

    def logic(trigger: list[Any], **_: Any) -> None:
        seen_logic.append(routine._logic)
        raise ValueError("rejected")

    return routine.set_logic(logic)


class _RecordingHandler(ErrorHandler):
    def __init__(self) -> None:
        super().__init__(strategy=ErrorStrategy.CONTINUE)
        self.handled: list[tuple[BaseException, Any, str]] = []
        self.called = threading.Event()

    def handle_error(self, error, routine, routine_id, flow, worker_state=None, context=None):
        self.handled.append((error, routine, routine_id))
        self.called.set()
        return super().handle_error(error, routine, routine_id, flow, worker_state, context)


@pytest.mark.parametrize("logic_kind", ["method", "set_logic"])
def test_error_handlers_receive_the_users_routine(instrument, logic_kind):
    otel = instrument()
    seen_logic: list[Any] = []
    routine = _Failing() if logic_kind == "method" else _failing_by_set_logic(seen_logic)
    own_attributes = dict(vars(routine))
    flow_id = f"transparency_{next(_flow_ids)}"
    flow = Flow(flow_id=flow_id)
    flow.add_routine(routine, "fails")
    handler = _RecordingHandler()
    flow.set_error_handler(handler)
    FlowRegistry.get_instance().register_by_name(flow_id, flow)

    with Runtime(thread_pool_size=2) as runtime:
        runtime.post(flow_id, "fails", "trigger", {})
        assert handler.called.wait(5)
    wait_until_settled()

    ((error, handled_routine, routine_id),) = handler.handled
    assert handled_routine is routine
    assert type(error) is ValueError and routine_id == "fails"
    assert vars(routine) == own_attributes  # nothing of ours left on it
    if logic_kind == "set_logic":
        assert seen_logic == [own_attributes["_logic"]]
    step = otel.span("fails")
    assert step.status.status_code is StatusCode.ERROR
    assert step.attributes["error.type"] == "ValueError"


def test_routine_logic_stays_the_instance_attribute(instrument):
    """While instrumented, ``_logic`` outside an activation check is the instance attribute;
    uninstrumenting leaves routines, created before or during, with their own values."""
    instrument()
    assert "_logic" in vars(Routine)
    routine = Routine()
    assert routine._logic is None and vars(routine)["_logic"] is None

    def logic(**_: Any) -> None:
        pass

    assert routine.set_logic(logic)._logic is logic and vars(routine)["_logic"] is logic
    del routine._logic
    assert not hasattr(routine, "_logic")
    with pytest.raises(AttributeError, match="'Routine' object has no attribute '_logic'"):
        del routine._logic
    routine.set_logic(logic)

    ExecStatusInstrumentor().uninstrument()
    assert "_logic" not in vars(Routine)
    assert routine._logic is logic and Routine()._logic is None


def test_a_shutdown_with_a_parameter_we_do_not_know_is_called_as_asked(monkeypatch, instrument):
    """A routilux whose ``Runtime.shutdown`` takes one more keyword: the instrumented call
    returns what the bare one does, and the worker it stops is still counted as drained."""
    original = runtime_module.Runtime.shutdown

    def shutdown(self, wait=True, timeout=30.0, drain_grace=None):
        original(self, wait=wait, timeout=timeout)
        return ("shut down", drain_grace)

    monkeypatch.setattr(runtime_module.Runtime, "shutdown", shutdown)
    flow_id = f"transparency_{next(_flow_ids)}"
    flow = Flow(flow_id=flow_id)
    flow.add_routine(_Failing(), "fails")
    FlowRegistry.get_instance().register_by_name(flow_id, flow)

    def started_runtime() -> Runtime:
        runtime = Runtime(thread_pool_size=2)
        runtime.exec(flow_id)
        return runtime

    bare = started_runtime().shutdown(wait=True, drain_grace=1.0)
    otel = instrument()
    assert started_runtime().shutdown(wait=True, drain_grace=1.0) == bare == ("shut down", 1.0)
    drains = {
        dict(k)["execution.worker.outcome"]: v
        for k, v in otel.sums("execution.worker.drains").items()
    }
    assert drains == {"success": 1}
    (duration,) = otel.points("execution.worker.drain.duration")  # it waited for the pool
    assert duration.count == 1


def _patched_targets() -> dict[str, Callable[[], Any]]:
    """The four patched functions, fetched as a user's code (or multiprocessing) fetches them."""
    return {
        "get_execution_hooks": lambda: routilux_hooks.get_execution_hooks,
        "Runtime._check_routine_activation": lambda: Runtime._check_routine_activation,
        "Runtime.shutdown": lambda: Runtime.shutdown,
        "WorkerManager.start_worker": lambda: WorkerManager.start_worker,
    }


def _outcome(target: Any) -> tuple[bool, bool, bool]:
    """Whether a pickle round trip, a copy and a deep copy each give back the same function."""
    return (
        pickle.loads(pickle.dumps(target)) == target,
        copy.copy(target) is target,
        copy.deepcopy(target) is target,
    )


def test_patched_functions_pickle_and_copy_as_bare(instrument):
    bare = {name: _outcome(fetch()) for name, fetch in _patched_targets().items()}
    assert set(bare.values()) == {(True, True, True)}
    instrument()
    for name, fetch in _patched_targets().items():
        patched = fetch()
        assert isinstance(patched, (wrapt.FunctionWrapper, wrapt.BoundFunctionWrapper)), name
        assert _outcome(patched) == bare[name], name
        restored = pickle.loads(pickle.dumps(patched))
        assert type(restored) is type(patched), name  # unpickled as the wrapper: still observed
        assert restored.__wrapped__ is patched.__wrapped__, name
