"""Celery 5: one task run eagerly (``task_always_eager``), as Celery's test mode runs tasks.

The task runs through Celery's real tracer (``celery.app.trace``) in the caller's thread, with
its prerun, success or failure, and postrun signals. The step's exception reaches the caller
(``task_eager_propagates``), and so does an interrupt, after the tracer's postrun signal.
Running through a broker and a worker's processes is what ``tests/celery`` is for.
"""

from __future__ import annotations

from typing import Any, ClassVar

from celery import Celery

from conformance.scenarios import Reported, Scenario, ending_with_the_step
from conformance.workload import Outcome, Step

TASK = "conformance.step"
STEP = ("step", TASK)

app = Celery("conformance", broker="memory://", backend="cache+memory://")
app.conf.task_always_eager = True
app.conf.task_eager_propagates = True


class _Body:
    step: ClassVar[Step | None] = None  # the step of the run in progress


@app.task(name=TASK)
def conformance_step() -> Any:
    assert _Body.step is not None
    return _Body.step()


class CeleryScenario(Scenario):
    step = STEP
    reported: ClassVar[Reported] = ending_with_the_step(STEP)

    def run(self, step: Step) -> Outcome:
        _Body.step = step
        try:
            result = conformance_step.delay()
        except BaseException as error:
            return Outcome(None, error)
        finally:
            _Body.step = None
        return Outcome((result.get(), result.state), None)


SCENARIO = CeleryScenario()
