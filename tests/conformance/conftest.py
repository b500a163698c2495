"""The adapters of this environment, each with its scenario, and the ways the checks run them.

The per-adapter checks are generated for the adapters usable here (framework importable, its
installed version supported); where there is none (the core environment) they are deselected,
not skipped, and only the framework-free checks run.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable

import pytest

from conformance.frameworks import SHAPED_FRAMEWORKS
from conformance.scenarios import Scenario, scenario_for
from opentelemetry_instrumentation_execstatus import ExecStatusInstrumentor, telemetry
from opentelemetry_instrumentation_execstatus.adapters import Adapter, all_adapters
from opentelemetry_instrumentation_execstatus.adapters.base import (
    enabled_adapters,
    installed_version,
)
from opentelemetry_instrumentation_execstatus.tracker import StatusTracker
from opentelemetry_instrumentation_execstatus.workers import WorkerRecorder

HERE = Path(__file__).resolve().parent


def usable_adapters() -> list[type[Adapter]]:
    """The adapters enabled here, with the frameworks the suite brings on the path."""
    usable = enabled_adapters(all_adapters(), None)
    for adapter in all_adapters():
        shaped = SHAPED_FRAMEWORKS.get(adapter.name)
        if shaped is not None and adapter not in usable and shaped.can_run():
            with shaped.on_path():
                usable += enabled_adapters([adapter], None)
    return usable


def versioned_adapters() -> list[type[Adapter]]:
    """Usable adapters whose installed version is checked against ``supported``."""
    return [
        adapter
        for adapter in usable_adapters()
        if adapter.distribution is not None and installed_version(adapter.distribution)
    ]


ADAPTER_FIXTURES: dict[str, Callable[[], list[type[Adapter]]]] = {
    "adapter": usable_adapters,
    "versioned_adapter": versioned_adapters,
}
"""The fixtures parametrized over this environment's adapters, and which adapters each gets."""


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    for fixture, adapters in ADAPTER_FIXTURES.items():
        if fixture in metafunc.fixturenames:
            found = adapters()
            metafunc.parametrize(fixture, found, ids=[adapter.name for adapter in found])


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Deselect the per-adapter checks that got no adapter: not skips, there is nothing to do."""
    without = [item for item in items if _lacks_an_adapter(item)]
    if without:
        config.hook.pytest_deselected(items=without)
        items[:] = [item for item in items if not _lacks_an_adapter(item)]


def _lacks_an_adapter(item: pytest.Item) -> bool:
    """A per-adapter check whose adapter parameter is empty (pytest's placeholder, no class)."""
    if HERE not in item.path.parents:
        return False  # this hook sees the whole session: other directories' tests are theirs
    wanted = [name for name in ADAPTER_FIXTURES if name in getattr(item, "fixturenames", ())]
    params = getattr(getattr(item, "callspec", None), "params", {})
    return any(not isinstance(params.get(name), type) for name in wanted)


@pytest.fixture(autouse=True)
def shaped_framework(request: pytest.FixtureRequest) -> Iterator[None]:
    """For a check of an adapter whose framework the suite brings: the framework on the path,
    before anything else of the check (``instrument`` included) and until after it."""
    params = getattr(getattr(request.node, "callspec", None), "params", {})
    adapter = params.get("adapter") or params.get("versioned_adapter")
    shaped = SHAPED_FRAMEWORKS.get(getattr(adapter, "name", ""))
    if shaped is None:
        yield
        return
    with shaped.on_path():
        yield


@pytest.fixture
def scenario(adapter: type[Adapter]) -> Scenario:
    return scenario_for(adapter)


@pytest.fixture
def instrument_without_sdk() -> Iterator[Callable[..., Any]]:
    """Instrument with no providers and none set globally: the API's proxies, nothing records.

    Returns the live telemetry; uninstrumented afterwards."""
    instrumentor = ExecStatusInstrumentor()

    def _instrument(**options: Any) -> Any:
        instrumentor.instrument(**options)
        return telemetry.current()

    yield _instrument
    instrumentor.uninstrument()


CORE_CALLS = {
    StatusTracker: ("transition", "status_of", "context_of"),
    WorkerRecorder: ("spawn", "health_check", "drain", "set_state"),
}
"""The core's entry points an adapter calls: what ``broken_core`` makes raise."""


@pytest.fixture
def broken_core(monkeypatch: pytest.MonkeyPatch) -> Callable[[], list[str]]:
    """Call to make every entry point of the core raise ``RuntimeError`` from then on;
    returns the list of the calls that raised (the core was reached, it was not skipped)."""
    raised: list[str] = []

    def breaking(where: str) -> Callable[..., Any]:
        def broken(*_: Any, **__: Any) -> Any:
            raised.append(where)
            raise RuntimeError(f"{where} is broken")

        return broken

    def _break() -> list[str]:
        for owner, names in CORE_CALLS.items():
            for name in names:
                monkeypatch.setattr(owner, name, breaking(f"{owner.__name__}.{name}"))
        return raised

    return _break
