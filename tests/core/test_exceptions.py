"""A failed execution's ``exception`` event: capped, valid UTF-8, and as detailed as asked."""

from __future__ import annotations

import pytest
from opentelemetry.trace import StatusCode

from opentelemetry_instrumentation_execstatus import api, telemetry


class Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("cannot print")


def _fail(error: BaseException) -> None:
    try:
        raise error
    except BaseException as raised:
        api.report_status("s", "running", name="s")
        api.report_status("s", "failed", error=raised)


def _exception_event(otel):
    (span,) = otel.spans()
    assert span.status.status_code is StatusCode.ERROR
    events = [event for event in span.events if event.name == "exception"]
    assert len(events) <= 1
    return span, (dict(events[0].attributes) if events else None)


def test_the_message_and_stack_trace_are_capped_by_default(instrument):
    otel = instrument()
    _fail(ValueError("secret=" + "x" * 1_000_000))
    span, event = _exception_event(otel)
    assert span.attributes["error.type"] == "ValueError"
    assert event["exception.type"] == "ValueError"
    assert len(event["exception.message"]) == 4096
    assert event["exception.message"].startswith("secret=xxx")
    assert event["exception.message"].endswith("\u2026")
    stacktrace = event["exception.stacktrace"]
    assert len(stacktrace) == 4096 and stacktrace.startswith("\u2026")
    assert stacktrace.endswith("xxx\n")  # the end, where the message and failing frame are


def test_a_short_exception_is_exported_whole(instrument):
    otel = instrument()
    _fail(KeyError("order-7"))
    _, event = _exception_event(otel)
    assert event["exception.message"] == "'order-7'"
    assert "Traceback (most recent call last)" in event["exception.stacktrace"]
    assert event["exception.stacktrace"].endswith("KeyError: 'order-7'\n")


@pytest.mark.parametrize("how", ["keyword", "environment"])
def test_type_only(instrument, monkeypatch, how):
    if how == "keyword":
        otel = instrument(exception_detail="type", exception_text_limit=10)
    else:
        monkeypatch.setenv("OTEL_PYTHON_EXECSTATUS_EXCEPTION_DETAIL", "TYPE")
        otel = instrument()
    _fail(ValueError("password=hunter2"))
    span, event = _exception_event(otel)
    assert event == {"exception.type": "ValueError"}
    assert "hunter2" not in str(span.to_json())


def test_none_leaves_only_the_error_type(instrument):
    otel = instrument(exception_detail="none")
    _fail(ValueError("password=hunter2"))
    span, event = _exception_event(otel)
    assert event is None
    assert span.attributes["error.type"] == "ValueError"
    assert "hunter2" not in str(span.to_json())


def test_the_limit_is_an_option(instrument, monkeypatch):
    monkeypatch.setenv("OTEL_PYTHON_EXECSTATUS_EXCEPTION_TEXT_LIMIT", "20")
    otel = instrument()
    _fail(ValueError("y" * 100))
    _, event = _exception_event(otel)
    assert event["exception.message"] == "y" * 19 + "\u2026"
    assert len(event["exception.stacktrace"]) == 20


def test_an_exception_that_cannot_be_printed_still_ends_its_span(instrument):
    otel = instrument()
    _fail(Unprintable())
    span, event = _exception_event(otel)
    assert span.attributes["error.type"] == "test_exceptions.Unprintable"
    assert event["exception.message"] == "<exception str() failed>"
    assert telemetry.current().tracker.in_flight_count() == 0


def test_an_exception_class_as_error_is_its_type(instrument):
    otel = instrument()
    api.report_status("c", "running", name="c")
    api.report_status("c", "failed", error=TimeoutError)
    span, event = _exception_event(otel)
    assert span.attributes["error.type"] == "TimeoutError"
    assert event is None  # no instance: no message nor stack trace to report
