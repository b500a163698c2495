"""The core, with no orchestrator: the floor, the disabled path, memory, import cost.

- floor: a step reported queued -> running -> succeeded through the public API, against the
  same OpenTelemetry SDK calls made by hand (``harness.EqualFloor``: recorded from what the
  instrumented step made, one span with its three status-change events and its final
  attributes, two histogram records, the same attributes and instruments). The difference is
  everything the tracker adds.
- disabled: a step function behind a wrapper that reports running and succeeded around it, as
  an adapter does, with OpenTelemetry off in each of the three ways a user turns it off,
  against the same function behind a wrapt pass-through wrapper.
- memory and import: measured in fresh interpreters, reported as facts.
"""

from __future__ import annotations

import itertools
import os
import statistics
import subprocess
import sys
import time
from typing import Any, Callable, NamedTuple

import wrapt
from harness import (
    INSTRUMENTOR,
    Case,
    EqualFloor,
    Results,
    Sdk,
    added_against_floor,
    added_cost_ratio,
    arguments,
    compare,
    finish,
    instrumenting,
    measure,
    ratio_rows,
    require,
    scale,
    uninstrument,
    versions,
)
from opentelemetry.instrumentation.utils import suppress_instrumentation
from opentelemetry.metrics import MeterProvider

from opentelemetry_instrumentation_execstatus import api
from opentelemetry_instrumentation_execstatus.config import ExecStatusConfig
from opentelemetry_instrumentation_execstatus.instruments import Instruments

SUITE = "core"
MAX_IN_FLIGHT = ExecStatusConfig().max_in_flight
_ids = itertools.count()


# -- the floor --------------------------------------------------------------------------------


def _report_step(iterations: int) -> None:
    """A step's three statuses through the public API: two transitions."""
    for _ in range(iterations):
        step = next(_ids)
        api.report_status(step, "queued", name="load", pipeline="nightly")
        api.report_status(step, "running")
        api.report_status(step, "succeeded")


def _minimal_step(tracer_provider: Any, meter_provider: MeterProvider) -> Callable[[int], None]:
    """The issue's floor taken literally: one span, one histogram record, one counter change."""
    tracer = tracer_provider.get_tracer("minimal")
    meter = meter_provider.get_meter("minimal")
    duration = Instruments(meter).status_transition_duration
    active = meter.create_up_down_counter("minimal.active")
    attributes = {
        "execution.orchestrator": "api",
        "execution.level": "step",
        "execution.status.from": "running",
        "execution.status.to": "succeeded",
    }

    def run(iterations: int) -> None:
        for _ in range(iterations):
            span = tracer.start_span("load", attributes=attributes)
            duration.record(0.5, attributes)
            active.add(1, attributes)
            span.end()

    return run


def floor(quick: bool) -> tuple[list, dict[str, str]]:
    sdk = Sdk.create()
    iterations, rounds = scale(quick, 2000, 15)
    subject = "execstatus (public API)"
    equal = EqualFloor.record(subject, sdk, _report_step, units=2)
    minimal = Case(
        "one span + one record + one counter change",
        _minimal_step(sdk.tracer_provider, sdk.meter_provider),
    )
    instrumented = Case(
        subject, _report_step, 2, setup=instrumenting(**sdk.providers), teardown=uninstrument
    )
    samples = measure([equal.case(), instrumented, minimal], iterations=iterations, rounds=rounds)
    rows = [
        added_against_floor(
            samples,
            SUITE,
            "floor: per transition vs the same SDK calls",
            subject,
            equal,
            bare=None,
            unit="transition",
        ),
        *ratio_rows(
            samples,
            SUITE,
            "floor: what the contract's span events and attributes cost",
            minimal.name,
            [equal.name],
            unit="transition",
            note="the same SDK calls as execstatus makes, against the literal minimum",
        ),
    ]
    _require_spans_from_execstatus(sdk)
    sdk.shutdown()
    return rows, {"floor": equal.describe()}


def _require_spans_from_execstatus(sdk: Sdk) -> None:
    """The equal floor exports spans too: check the instrumented case made its own."""
    before = sdk.spans_exported()
    INSTRUMENTOR.instrument(**sdk.providers)
    try:
        _report_step(10)
    finally:
        INSTRUMENTOR.uninstrument()
    require(sdk.spans_exported() - before == 10, "execstatus made no span per step")


# -- the disabled path -----------------------------------------------------------------------


def _step() -> None:
    return None


@wrapt.decorator
def _pass_through(wrapped: Callable[..., Any], instance: Any, args: tuple, kwargs: dict) -> Any:
    return wrapped(*args, **kwargs)


def _reported_step() -> None:
    """A step as a control plane runs it with the public API: reported running, then done."""
    step = next(_ids)
    api.report_status(step, "running", name="load")
    _step()
    api.report_status(step, "succeeded")


def _calls(function: Callable[[], None]) -> Callable[[int], None]:
    def run(iterations: int) -> None:
        for _ in range(iterations):
            function()

    return run


class _Suppressed:
    """``suppress_instrumentation()`` held across a timed block."""

    def __init__(self) -> None:
        self._scope: Any = None

    def enter(self) -> None:
        self._scope = suppress_instrumentation()
        self._scope.__enter__()

    def exit(self) -> None:
        self._scope.__exit__(None, None, None)


def _with_environment(name: str, value: str, action: Callable[[], object]) -> Callable[[], None]:
    def run() -> None:
        saved = os.environ.get(name)
        os.environ[name] = value
        try:
            action()
        finally:
            if saved is None:
                del os.environ[name]
            else:
                os.environ[name] = saved

    return run


def disabled(quick: bool) -> list:
    sdk = Sdk.create()
    suppressed = _Suppressed()

    def suppress_and_instrument() -> None:
        INSTRUMENTOR.instrument(**sdk.providers)
        suppressed.enter()

    def unsuppress_and_uninstrument() -> None:
        suppressed.exit()
        INSTRUMENTOR.uninstrument()

    iterations, rounds = scale(quick, 20000, 15)
    reported = _calls(_reported_step)
    pass_through = "wrapt pass-through"
    disabled_cases = [
        Case(
            "OTEL_SDK_DISABLED=true",
            reported,
            setup=_with_environment("OTEL_SDK_DISABLED", "true", INSTRUMENTOR.instrument),
            teardown=uninstrument,
        ),
        Case(
            "suppress_instrumentation()",
            reported,
            setup=suppress_and_instrument,
            teardown=unsuppress_and_uninstrument,
        ),
        Case("no SDK (API only)", reported, setup=INSTRUMENTOR.instrument, teardown=uninstrument),
    ]
    timed = compare(
        SUITE,
        "disabled",
        Case("bare step", _calls(_step)),
        [Case(pass_through, _calls(_pass_through(_step))), *disabled_cases],
        unit="step",
        iterations=iterations,
        rounds=rounds,
    )
    sdk.shutdown()
    rows = []
    for case in disabled_cases:
        row = added_cost_ratio(
            timed, case.name, pass_through, "disabled: added per step vs a wrapt pass-through"
        )
        row.goal = 2.0
        rows.append(row)
    return rows


# -- memory and import cost, in fresh interpreters -----------------------------------------------

_MEMORY_CHILD = """
import gc, sys
from harness import Sdk
from opentelemetry_instrumentation_execstatus import ExecStatusInstrumentor, api, telemetry
sdk = Sdk.create()
ExecStatusInstrumentor().instrument(**sdk.providers)
tracker = telemetry.current().tracker
for execution in range(int(sys.argv[1])):
    api.report_status(execution, "running", name=f"step-{execution % 50}", pipeline="nightly")
    api.report_status(execution, "succeeded")
spans = sdk.spans_exported()
gc.collect()
status = open("/proc/self/status").read().splitlines()
rss_kib = next(int(line.split()[1]) for line in status if line.startswith("VmRSS"))
print(tracker.in_flight_count(), len(tracker.executions.ended), rss_kib, spans)
"""


class _MemoryState(NamedTuple):
    in_flight: int
    ended_keys: int
    rss_kib: int
    spans: int

    def describe(self) -> str:
        return (
            f"in flight {self.in_flight}, ended keys kept {self.ended_keys}, "
            f"RSS {self.rss_kib / 1024:.1f} MiB, {self.spans:,} spans exported"
        )


def _memory_after(executions: int) -> _MemoryState:
    completed = subprocess.run(
        [sys.executable, "-c", _MEMORY_CHILD, str(executions)],
        capture_output=True,
        text=True,
        check=True,
        cwd=os.path.dirname(os.path.abspath(__file__)),
    )
    state = _MemoryState(*(int(value) for value in completed.stdout.split()))
    require(state.in_flight == 0, f"{state.in_flight} executions still in flight")
    require(state.ended_keys <= MAX_IN_FLIGHT, "the ended-keys table grew past its bound")
    require(state.spans > 0, "the memory run exported no spans")
    return state


def memory(quick: bool) -> dict[str, str]:
    small, large = (1_000, 20_000) if quick else (1_000, 1_000_000)
    started = time.monotonic()
    before, after = _memory_after(small), _memory_after(large)
    return {
        f"memory after {small:,} executions": before.describe(),
        f"memory after {large:,} executions": after.describe(),
        f"memory: RSS growth from {large // small:,}x more executions": (
            f"{(after.rss_kib - before.rss_kib) / 1024:+.1f} MiB "
            f"({after.rss_kib / before.rss_kib:.2f}x); "
            f"measured in {time.monotonic() - started:.0f} s"
        ),
    }


_STARTS = {
    "bare interpreter": "pass",
    "import the OpenTelemetry API": "import opentelemetry.trace, opentelemetry.metrics",
    "import BaseInstrumentor (what every instrumentor imports)": (
        "import opentelemetry.instrumentation.instrumentor"
    ),
    "instrument(), no orchestrator installed": (
        "from opentelemetry_instrumentation_execstatus import ExecStatusInstrumentor;"
        "ExecStatusInstrumentor().instrument()"
    ),
}


def import_cost(quick: bool) -> dict[str, str]:
    """Interpreter start to exit for each snippet, interleaved, medians. Bytecode is written
    and warmed up first, as an installed package has it."""
    environment = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}

    def start(code: str) -> float:
        began = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True, env=environment)
        return time.perf_counter() - began

    for code in _STARTS.values():
        start(code)
    runs = 3 if quick else 15
    seconds: dict[str, list[float]] = {name: [] for name in _STARTS}
    for _ in range(runs):
        for name, code in _STARTS.items():
            seconds[name].append(start(code))
    bare = statistics.median(seconds["bare interpreter"])
    facts = {}
    for name, times in seconds.items():
        median = statistics.median(times)
        facts[f"start: {name}"] = (
            f"{median * 1e3:.0f} ms ({median / bare:.2f}x bare, {(median - bare) * 1e3:+.0f} ms)"
        )
    return facts


def main() -> None:
    options = arguments(__doc__.splitlines()[0])
    results = Results(SUITE, versions=versions("opentelemetry-api"))
    rows, facts = floor(options.quick)
    results.rows += rows
    results.facts.update(facts)
    results.rows += disabled(options.quick)
    results.facts.update(memory(options.quick))
    results.facts.update(import_cost(options.quick))
    finish(results, options.out)


if __name__ == "__main__":
    main()
