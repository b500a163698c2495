"""Celery in one process: eager tasks, and a real worker on a thread (Celery's own test worker,
``celery.contrib.testing.worker``) consuming from the in-memory transport, with the in-memory
SDK. Publish, receive, run, retry and their times go through the same signals as with a broker
and a prefork pool; ``test_celery_workers.py`` runs those across processes."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from celery import Celery
from celery.contrib.testing.worker import start_worker
from opentelemetry import trace

from opentelemetry_instrumentation_execstatus import telemetry

TIMEOUT = 10
PROVIDERS: dict[str, trace.TracerProvider] = {}  # what a task may trace to, by name


def _app(**conf: object) -> Celery:
    app = Celery("in_process", broker="memory://", backend="cache+memory://", set_as_current=False)
    # The in-memory transport polls its queues: briefly, so that a test worker stops at once.
    app.conf.broker_transport_options = {"polling_interval": 0.05}
    app.conf.update(conf)

    @app.task(shared=False, name="in_process.add")
    def add(x: int, y: int) -> int:
        return x + y

    @app.task(shared=False, name="in_process.fail")
    def fail() -> None:
        raise ValueError("the task failed")

    @app.task(shared=False, name="in_process.flaky", bind=True, max_retries=3)
    def flaky(self, countdown: float) -> str:
        if self.request.retries == 0:
            raise self.retry(countdown=countdown)
        return "done"

    @app.task(shared=False, name="in_process.traced", bind=True)
    def traced(self, provider_key: str) -> str:
        tracer = PROVIDERS[provider_key].get_tracer("inside")
        with tracer.start_as_current_span("inside the task"):
            return "traced"

    return app


@pytest.fixture
def worker_app(instrument) -> Iterator[tuple[Celery, object]]:
    """A worker on a thread of this process, instrumented with the in-memory SDK."""
    otel = instrument()
    app = _app()
    with start_worker(app, pool="solo", perform_ping_check=False, shutdown_timeout=TIMEOUT):
        yield app, otel


def _statuses(span) -> list[str]:
    """The statuses of the span's status-change events, in order."""
    return [
        event.attributes["execution.status.to"]
        for event in span.events
        if "execution.status.to" in event.attributes
    ]


def _wait_for_spans(otel, count: int) -> None:
    """The worker's thread ends a task after the caller got its result: wait for its spans."""
    deadline = time.monotonic() + TIMEOUT
    while len(otel.spans()) < count and time.monotonic() < deadline:
        time.sleep(0.01)


def test_a_task_through_a_worker_is_one_span_from_publish_to_success(worker_app):
    app, otel = worker_app
    caller = otel.tracer_provider.get_tracer("caller")
    with caller.start_as_current_span("caller") as parent:
        assert app.tasks["in_process.add"].delay(2, 3).get(timeout=TIMEOUT) == 5
    _wait_for_spans(otel, 2)
    task = otel.span("in_process.add")
    assert _statuses(task) == ["queued", "pending", "running", "succeeded"]
    assert task.parent.span_id == parent.get_span_context().span_id
    assert task.attributes["execution.orchestrator"] == "celery"
    assert task.attributes["execution.attempt"] == 1
    assert task.attributes["cicd.pipeline.task.run.result"] == "success"
    assert otel.transition_counts(cicd_pipeline_task_name="in_process.add") == {
        ("queued", "pending"): 1,
        ("pending", "running"): 1,
        ("running", "succeeded"): 1,
    }
    assert telemetry.current().tracker.in_flight_count() == 0


def test_the_task_span_is_current_inside_the_task(worker_app):
    app, otel = worker_app
    PROVIDERS["test"] = otel.tracer_provider
    assert app.tasks["in_process.traced"].delay("test").get(timeout=TIMEOUT) == "traced"
    _wait_for_spans(otel, 2)
    inside, task = otel.span("inside the task"), otel.span("in_process.traced")
    assert inside.parent.span_id == task.context.span_id


def test_a_failed_task_fails_with_its_error_type(worker_app):
    app, otel = worker_app
    result = app.tasks["in_process.fail"].delay()
    with pytest.raises(ValueError, match="the task failed"):
        result.get(timeout=TIMEOUT)
    _wait_for_spans(otel, 1)
    task = otel.span("in_process.fail")
    assert _statuses(task)[-1] == "failed"
    assert task.attributes["error.type"] == "ValueError"


def test_a_retry_is_a_second_attempt_whose_wait_is_the_time_retrying(worker_app):
    app, otel = worker_app
    assert app.tasks["in_process.flaky"].delay(0.2).get(timeout=TIMEOUT) == "done"
    _wait_for_spans(otel, 2)
    first, second = sorted(otel.spans(), key=lambda span: span.attributes["execution.attempt"])
    assert _statuses(first) == ["queued", "pending", "running", "retrying"]
    assert first.attributes["execution.status"] == "retrying"
    assert _statuses(second) == ["retrying", "running", "succeeded"]
    assert first.attributes["execution.attempt"] == 1
    assert second.attributes["execution.attempt"] == 2
    assert second.parent.span_id == first.context.span_id  # published by the first attempt
    (wait,) = [
        point
        for point in otel.points("execution.status_transition.duration")
        if point.attributes["execution.status.from"] == "retrying"
    ]
    assert wait.sum >= 0.15  # about the countdown (its ETA is set just before the publish)


def test_a_retry_received_after_its_countdown_is_retrying_until_it_runs(worker_app):
    """A retry with no countdown left when the worker receives it (here none at all; on a
    loaded machine, a short one) is not ``pending`` meanwhile: all of its wait is the retry's."""
    app, otel = worker_app
    assert app.tasks["in_process.flaky"].delay(0).get(timeout=TIMEOUT) == "done"
    _wait_for_spans(otel, 2)
    _first, second = sorted(otel.spans(), key=lambda span: span.attributes["execution.attempt"])
    assert _statuses(second) == ["retrying", "running", "succeeded"]
    assert otel.transition_counts(cicd_pipeline_task_name="in_process.flaky") == {
        ("queued", "pending"): 1,
        ("pending", "running"): 1,
        ("running", "retrying"): 1,
        ("retrying", "running"): 1,
        ("running", "succeeded"): 1,
    }


def test_an_eager_task_runs_in_the_callers_trace(instrument):
    otel = instrument()
    app = _app(task_always_eager=True)
    with otel.tracer_provider.get_tracer("caller").start_as_current_span("caller") as parent:
        assert app.tasks["in_process.add"].delay(1, 1).get() == 2
    task = otel.span("in_process.add")
    assert _statuses(task) == ["running", "succeeded"]
    assert task.parent.span_id == parent.get_span_context().span_id


def test_results_exceptions_and_retries_are_the_hosts_own(instrument):
    """The same calls, bare and instrumented, give the same values and exceptions."""
    seen = []
    for instrumented in (False, True):
        if instrumented:
            instrument()
        app = _app(task_always_eager=True)
        outcome = [app.tasks["in_process.add"].delay(2, 2).get()]
        with pytest.raises(ValueError, match="the task failed") as raised:
            app.tasks["in_process.fail"].apply(throw=True)
        outcome.append((type(raised.value), str(raised.value)))
        outcome.append(app.tasks["in_process.flaky"].apply(args=(0,)).get())
        seen.append(outcome)
    assert seen[0] == seen[1]


@pytest.fixture
def contrib(otel) -> Iterator[None]:
    """opentelemetry-instrumentation-celery on, with the same in-memory SDK."""
    from opentelemetry.instrumentation.celery import CeleryInstrumentor

    instrumentor = CeleryInstrumentor()
    instrumentor.instrument(
        tracer_provider=otel.tracer_provider, meter_provider=otel.meter_provider
    )
    yield
    instrumentor.uninstrument()


@pytest.mark.parametrize("contrib_first", [True, False], ids=["contrib first", "ours first"])
def test_next_to_the_contrib_instrumentation_no_task_gets_two_spans(
    otel, instrument, request, contrib_first
):
    """Its spans, our metrics and status events in its ``run/<task>`` span, whichever
    instrumentation connected to Celery's signals first."""
    if contrib_first:
        request.getfixturevalue("contrib")
        instrument()
    else:
        instrument()
        request.getfixturevalue("contrib")
    app = _app()
    with start_worker(app, pool="solo", perform_ping_check=False, shutdown_timeout=TIMEOUT):
        assert app.tasks["in_process.add"].delay(2, 3).get(timeout=TIMEOUT) == 5
        assert app.tasks["in_process.flaky"].delay(0.1).get(timeout=TIMEOUT) == "done"
        _wait_for_spans(otel, 6)  # 3 publishes (one a retry) and 3 runs
    names = sorted(span.name for span in otel.spans())
    assert names == [
        "apply_async/in_process.add",
        "apply_async/in_process.flaky",
        "apply_async/in_process.flaky",
        "run/in_process.add",
        "run/in_process.flaky",
        "run/in_process.flaky",
    ]
    run_add = otel.span("run/in_process.add")
    assert _statuses(run_add) == ["queued", "pending", "running", "succeeded"]
    first, second = sorted(
        (span for span in otel.spans() if span.name == "run/in_process.flaky"),
        key=lambda span: span.start_time,
    )
    assert _statuses(first) == ["queued", "pending", "running", "retrying"]
    assert _statuses(second) == ["retrying", "running", "succeeded"]
    assert otel.transition_counts(cicd_pipeline_task_name="in_process.add") == {
        ("queued", "pending"): 1,
        ("pending", "running"): 1,
        ("running", "succeeded"): 1,
    }
    assert telemetry.current().tracker.in_flight_count() == 0
