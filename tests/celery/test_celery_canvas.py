"""Celery canvases as pipeline runs, in one process: Celery's own test worker on a thread
(``celery.contrib.testing.worker``) consuming from the in-memory transport, with the in-memory
SDK. A chain or a chord is a ``RUN <kind> <final task>`` span, a child of the caller's span,
from the canvas's publish to its end, with its tasks as its steps; ``test_celery_workers.py``
runs the same across processes.

One worker serves the whole module: a test worker takes seconds to stop (its consumer polls
the transport in two-second waits), and the instrumentation, on for each test on its own,
connects to Celery's signals whichever worker is running."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

import pytest
from celery import Celery, chain, chord, group
from celery.contrib.testing.worker import start_worker
from celery.exceptions import ChordError

from opentelemetry_instrumentation_execstatus import ExecStatusInstrumentor, safety, telemetry

TIMEOUT = 10
POLL = 0.01  # how often a result is polled for (the cache backend has no push): not 0.5 s
DURATION = "execution.status_transition.duration"
SUCCEEDED = ["queued", "pending", "running", "succeeded"]


def _app(**conf: object) -> Celery:
    app = Celery("canvas", broker="memory://", backend="cache+memory://", set_as_current=False)
    # The in-memory transport polls its queues: briefly, so that a test waits little for it.
    app.conf.broker_transport_options = {"polling_interval": 0.05}
    app.conf.update(conf)

    @app.task(shared=False, name="canvas.add")
    def add(x: int, y: int) -> int:
        return x + y

    @app.task(shared=False, name="canvas.total")
    def total(values: list[int]) -> int:
        return sum(values)

    @app.task(shared=False, name="canvas.fail")
    def fail() -> None:
        raise ValueError("the task failed")

    @app.task(shared=False, name="canvas.flaky", bind=True, max_retries=3)
    def flaky(self: Any, x: int, countdown: float) -> int:
        if self.request.retries == 0:
            raise self.retry(countdown=countdown)
        return x

    @app.task(shared=False, name="canvas.other")
    def other(x: int) -> int:
        return -x

    @app.task(shared=False, name="canvas.calls_other")
    def calls_other(x: int) -> int:
        other.delay(x)  # work of its own, not a step of the chain it runs in
        return x

    return app


@pytest.fixture(autouse=True)
def no_internal_errors(monkeypatch, caplog) -> Iterator[None]:
    """The instrumentation's own errors, swallowed, are logged: each of them here (not only
    the first of each place in the process), and there must be none."""
    monkeypatch.setattr(safety, "_reported", set())
    caplog.set_level(logging.WARNING, logger=safety._LOG.name)  # the worker's root: ERROR
    yield
    ours = [record for record in caplog.get_records("call") if record.name == safety._LOG.name]
    assert ours == [], [record.getMessage() for record in ours]


@pytest.fixture(scope="module")
def worker() -> Iterator[Celery]:
    """The module's worker; the root logger as it was afterwards (a test worker sets it up
    for itself: its level to ERROR, a handler of its own)."""
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    app = _app()
    try:
        with start_worker(app, pool="solo", perform_ping_check=False, shutdown_timeout=TIMEOUT):
            yield app
    finally:
        root.setLevel(level)
        root.handlers[:] = handlers


@pytest.fixture
def worker_app(worker: Celery, instrument) -> tuple[Celery, Any]:
    """The module's worker, with the in-memory SDK instrumented for this test."""
    return worker, instrument()


def _task(app: Celery, name: str) -> Any:
    return app.tasks[f"canvas.{name}"]


def _statuses(span) -> list[str]:
    """The statuses of the span's status-change events, in order."""
    return [
        event.attributes["execution.status.to"]
        for event in span.events
        if "execution.status.to" in event.attributes
    ]


def _wait_for_spans(otel, count: int) -> list:
    """The worker's thread ends a task (and its run) after the caller got its result: wait
    for ``count`` spans, then a moment for any span more than expected."""
    deadline = time.monotonic() + TIMEOUT
    while len(otel.spans()) < count and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.1)
    return otel.spans()


def _named(spans: list, name: str) -> list:
    return [span for span in spans if span.name == f"canvas.{name}"]


def _run_samples(otel) -> dict[str, Any]:
    """The histogram's points of the runs, by pipeline name."""
    return {
        point.attributes["cicd.pipeline.name"]: point
        for point in otel.points(DURATION)
        if point.attributes.get("execution.level") == "pipeline"
    }


def _assert_settled() -> None:
    assert telemetry.current().tracker.in_flight_count() == 0


def _caller(otel) -> Any:
    return otel.tracer_provider.get_tracer("caller").start_as_current_span("caller")


def test_a_chain_is_a_run_child_of_the_caller_with_its_tasks_as_steps(worker_app):
    app, otel = worker_app
    add = _task(app, "add")
    with _caller(otel) as caller:
        result = chain(add.s(1, 1), add.s(2), add.s(3)).apply_async()
        assert result.get(timeout=TIMEOUT, interval=POLL) == 7
    spans = _wait_for_spans(otel, 5)
    run = otel.span("RUN chain canvas.add")
    assert run.parent.span_id == caller.get_span_context().span_id
    assert run.context.trace_id == caller.get_span_context().trace_id
    assert run.attributes["execution.level"] == "pipeline"
    assert run.attributes["execution.orchestrator"] == "celery"
    assert run.attributes["cicd.pipeline.name"] == "chain canvas.add"
    assert run.attributes["cicd.pipeline.run.id"] == result.id  # what apply_async returned
    assert _statuses(run) == ["running", "succeeded"]
    assert run.attributes["cicd.pipeline.result"] == "success"
    steps = _named(spans, "add")
    assert len(steps) == 3
    for step in steps:
        assert step.parent.span_id == run.context.span_id
        assert step.attributes["cicd.pipeline.name"] == "chain canvas.add"
        assert _statuses(step) == SUCCEEDED
        assert run.start_time <= step.start_time and step.end_time <= run.end_time
    assert result.id in {step.attributes["cicd.pipeline.task.run.id"] for step in steps}
    # Its time, publish to end, is its sample on the histogram, at the pipeline level.
    sample = _run_samples(otel)["chain canvas.add"]
    assert (sample.attributes["execution.status.from"], sample.count) == ("running", 1)
    assert abs(sample.sum - (run.end_time - run.start_time) / 1e9) < 1e-3
    _assert_settled()


def test_a_chord_is_a_run_of_its_header_and_its_body(worker_app):
    app, otel = worker_app
    add, total = _task(app, "add"), _task(app, "total")
    with _caller(otel) as caller:
        result = chord([add.s(1, 1), add.s(2, 2), add.s(3, 3)], total.s()).apply_async()
        assert result.get(timeout=TIMEOUT, interval=POLL) == 12
    spans = _wait_for_spans(otel, 6)
    run = otel.span("RUN chord canvas.total")
    assert run.parent.span_id == caller.get_span_context().span_id
    assert run.attributes["cicd.pipeline.run.id"] == result.id
    assert _statuses(run) == ["running", "succeeded"]
    (body,) = _named(spans, "total")
    steps = [*_named(spans, "add"), body]
    assert len(steps) == 4
    for step in steps:
        assert step.parent.span_id == run.context.span_id
        assert step.attributes["cicd.pipeline.name"] == "chord canvas.total"
        assert _statuses(step) == SUCCEEDED
    assert body.attributes["cicd.pipeline.task.run.id"] == result.id
    assert run.end_time >= body.end_time  # it ends with its body
    assert _run_samples(otel)["chord canvas.total"].count == 1
    _assert_settled()


def test_a_chain_ending_in_a_chord_is_one_run(worker_app):
    app, otel = worker_app
    add, total = _task(app, "add"), _task(app, "total")
    with _caller(otel) as caller:
        result = (add.s(1, 1) | chord([add.s(1), add.s(2)], total.s())).apply_async()
        assert result.get(timeout=TIMEOUT, interval=POLL) == 7
    spans = _wait_for_spans(otel, 6)
    runs = [span for span in spans if span.name.startswith("RUN ")]
    assert [span.name for span in runs] == ["RUN chain canvas.total"]
    (run,) = runs
    assert run.parent.span_id == caller.get_span_context().span_id
    assert run.attributes["cicd.pipeline.run.id"] == result.id
    steps = [span for span in spans if span.parent and span.parent.span_id == run.context.span_id]
    assert sorted(step.name for step in steps) == ["canvas.add"] * 3 + ["canvas.total"]
    assert {step.attributes["cicd.pipeline.name"] for step in steps} == {"chain canvas.total"}
    assert _statuses(run) == ["running", "succeeded"]
    assert run.end_time >= max(step.end_time for step in steps)
    _assert_settled()


def test_a_task_a_link_calls_is_not_a_step_and_does_not_end_the_run(worker_app):
    app, otel = worker_app
    add, calls_other = _task(app, "add"), _task(app, "calls_other")
    with _caller(otel):
        result = chain(add.s(1, 1), calls_other.s(), add.s(3)).apply_async()
        assert result.get(timeout=TIMEOUT, interval=POLL) == 5
    spans = _wait_for_spans(otel, 6)
    (run,) = [span for span in spans if span.name.startswith("RUN ")]
    assert run.name == "RUN chain canvas.add"
    (link,), (other,) = _named(spans, "calls_other"), _named(spans, "other")
    assert link.parent.span_id == run.context.span_id
    assert other.parent.span_id == link.context.span_id  # under what called it
    assert "cicd.pipeline.name" not in other.attributes
    assert _statuses(other) == SUCCEEDED
    steps = [span for span in spans if span.parent and span.parent.span_id == run.context.span_id]
    assert sorted(step.name for step in steps) == ["canvas.add", "canvas.add", "canvas.calls_other"]
    assert run.end_time >= max(step.end_time for step in steps)  # ended after its last link
    assert _statuses(run) == ["running", "succeeded"]
    _assert_settled()


def test_a_group_alone_is_no_run(worker_app):
    app, otel = worker_app
    add = _task(app, "add")
    with _caller(otel) as caller:
        result = group(add.s(1, 1), add.s(2, 2)).apply_async()
        assert result.get(timeout=TIMEOUT, interval=POLL) == [2, 4]
    spans = _wait_for_spans(otel, 3)
    assert sorted(span.name for span in spans) == ["caller", "canvas.add", "canvas.add"]
    for task in _named(spans, "add"):
        assert task.parent.span_id == caller.get_span_context().span_id
        assert "cicd.pipeline.name" not in task.attributes
    assert _run_samples(otel) == {}
    _assert_settled()


def test_a_link_that_retries_stays_in_its_run_which_ends_once_after_the_last_link(worker_app):
    app, otel = worker_app
    add, flaky = _task(app, "add"), _task(app, "flaky")
    with _caller(otel):
        result = chain(add.s(1, 1), flaky.s(0.05), add.s(3)).apply_async()
        assert result.get(timeout=TIMEOUT, interval=POLL) == 5
    spans = _wait_for_spans(otel, 6)
    (run,) = [span for span in spans if span.name.startswith("RUN ")]
    first, second = sorted(
        _named(spans, "flaky"), key=lambda span: span.attributes["execution.attempt"]
    )
    assert _statuses(first) == ["queued", "pending", "running", "retrying"]
    assert _statuses(second) == ["retrying", "running", "succeeded"]
    assert first.parent.span_id == run.context.span_id
    assert second.parent.span_id == first.context.span_id  # published by the first attempt
    for attempt in (first, second):
        assert attempt.attributes["cicd.pipeline.name"] == "chain canvas.add"
    last = next(span for span in _named(spans, "add") if span.start_time > second.start_time)
    assert last.parent.span_id == run.context.span_id
    assert _statuses(run) == ["running", "succeeded"]
    assert run.end_time >= last.end_time
    assert _run_samples(otel)["chain canvas.add"].count == 1
    _assert_settled()


def test_a_failing_link_fails_the_run_and_the_links_after_it_never_run(worker_app):
    app, otel = worker_app
    add, fail = _task(app, "add"), _task(app, "fail")
    with _caller(otel), pytest.raises(ValueError, match="the task failed"):
        chain(add.s(1, 1), fail.si(), add.s(3)).apply_async().get(timeout=TIMEOUT, interval=POLL)
    spans = _wait_for_spans(otel, 4)
    run = otel.span("RUN chain canvas.add")
    assert _statuses(run) == ["running", "failed"]
    assert run.attributes["error.type"] == "ValueError"
    assert run.attributes["cicd.pipeline.result"] == "failure"
    assert run.status.status_code.name == "ERROR"
    assert sorted(span.name for span in spans) == [
        "RUN chain canvas.add",
        "caller",
        "canvas.add",
        "canvas.fail",
    ]
    (failed,) = _named(spans, "fail")
    assert failed.parent.span_id == run.context.span_id
    assert _run_samples(otel)["chain canvas.add"].attributes["execution.status.to"] == "failed"
    _assert_settled()


def test_a_failing_chord_header_fails_the_run_with_a_chord_error(worker_app):
    app, otel = worker_app
    add, fail, total = _task(app, "add"), _task(app, "fail"), _task(app, "total")
    # The caller's result raises Celery's ChordError, or the header task's own error if it
    # sees the header fail before the body does: Celery's race, with or without us.
    with _caller(otel), pytest.raises((ChordError, ValueError), match="the task failed"):
        chord([add.s(1, 1), fail.si()], total.s()).apply_async().get(timeout=TIMEOUT, interval=POLL)
    spans = _wait_for_spans(otel, 4)
    run = otel.span("RUN chord canvas.total")
    assert _statuses(run) == ["running", "failed"]
    assert run.attributes["error.type"] == "celery.exceptions.ChordError"
    assert _named(spans, "total") == []  # its body never ran
    header = [*_named(spans, "add"), *_named(spans, "fail")]
    assert len(header) == 2
    for task in header:
        assert task.parent.span_id == run.context.span_id
    assert len([span for span in spans if span.name.startswith("RUN ")]) == 1
    _assert_settled()


def _canvases(app: Celery) -> list[Any]:
    """Each kind of canvas, one of them failing: what a test runs bare and instrumented."""
    add, total, fail = _task(app, "add"), _task(app, "total"), _task(app, "fail")
    return [
        chain(add.s(1, 1), add.s(2), add.s(3)),
        chord([add.s(1, 1), add.s(2, 2)], total.s()),
        add.s(1, 1) | chord([add.s(1), add.s(2)], total.s()),
        group(add.s(1, 1), add.s(2, 2)),
        chain(add.s(1, 1), fail.si(), add.s(3)),
    ]


def _outcomes(app: Celery) -> list[Any]:
    """Each canvas's result, or its exception's type and text."""
    outcomes: list[Any] = []
    for canvas in _canvases(app):
        try:
            outcomes.append(canvas.apply_async().get(timeout=TIMEOUT, interval=POLL))
        except Exception as error:
            outcomes.append((type(error), str(error)))
    return outcomes


EXPECTED = [7, 6, 7, [2, 4], (ValueError, "the task failed")]
CANVAS_SPANS = 4 + 4 + 5 + 2 + 3  # their tasks' spans, and a run's for each but the group


def test_eager_canvases_make_no_run_and_keep_their_results(instrument):
    """Eagerly nothing is published: a canvas runs in the caller's thread, as plain tasks."""
    otel = instrument()
    app = _app(task_always_eager=True)
    with _caller(otel):
        assert _outcomes(app) == EXPECTED
    assert [span for span in otel.spans() if span.name.startswith("RUN ")] == []
    assert _run_samples(otel) == {}
    assert {span.name for span in otel.spans()} == {
        "caller",
        "canvas.add",
        "canvas.total",
        "canvas.fail",
    }
    _assert_settled()


def test_canvas_results_are_the_same_bare_instrumented_and_uninstrumented(worker, otel):
    instrumentor = ExecStatusInstrumentor()
    bare = _outcomes(worker)
    instrumentor.instrument(
        tracer_provider=otel.tracer_provider, meter_provider=otel.meter_provider
    )
    try:
        instrumented = _outcomes(worker)
        _wait_for_spans(otel, CANVAS_SPANS)
    finally:
        instrumentor.uninstrument()
    recorded = len(otel.spans())
    after = _outcomes(worker)
    assert bare == instrumented == after == EXPECTED
    assert len(_wait_for_spans(otel, recorded)) == recorded  # nothing recorded once off
