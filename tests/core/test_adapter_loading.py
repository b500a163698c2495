"""Adapters are loaded when their framework is imported, not by ``instrument()``.

``instrument()`` waits for each listed framework's top-level module and imports nothing of an
adapter until then: start-up costs the same for any number of adapters. The framework and its
adapter here are modules written for the test, the adapter listed in ``adapters.ADAPTERS``
for it, pointed at a distribution installed everywhere (wrapt) for its version check.
"""

from __future__ import annotations

import importlib.metadata
import json
import logging
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import pytest

from opentelemetry_instrumentation_execstatus import adapters, telemetry
from opentelemetry_instrumentation_execstatus.adapters import ADAPTERS, Listed, all_adapters

WRAPT_VERSION = importlib.metadata.version("wrapt")

FRAMEWORK = """
def work():
    return "done"
"""

ADAPTER = """
from opentelemetry_instrumentation_execstatus.adapters.base import Adapter
from opentelemetry_instrumentation_execstatus.patching import Patch
from opentelemetry_instrumentation_execstatus.semconv import Orchestrator

made = []  # the telemetry of each adapter made
calls = []  # the telemetry of the adapter whose wrapper each call went through


class LateAdapter(Adapter):
    name = "late"
    orchestrator = Orchestrator.UNKNOWN
    top_module = {framework!r}
    distribution = "wrapt"
    supported = {supported!r}

    def __init__(self, telemetry):
        super().__init__(telemetry)
        made.append(telemetry)

    def patches(self):
        return [Patch({framework!r}, "work", self._work)]

    def _work(self, wrapped, _instance, args, kwargs):
        calls.append(self._telemetry)
        return wrapped(*args, **kwargs)
"""


@dataclass
class Late:
    """A framework nobody imported yet, and its adapter, listed."""

    framework: str
    adapter: str

    def import_framework(self) -> ModuleType:
        return __import__(self.framework)

    def adapter_module(self) -> ModuleType | None:
        return sys.modules.get(self.adapter)

    def forget_framework(self) -> None:
        sys.modules.pop(self.framework, None)


def _late(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, supported: str) -> Late:
    suffix = tmp_path.name.replace("-", "_")
    late = Late(f"execstatus_framework_{suffix}", f"execstatus_adapter_{suffix}")
    (tmp_path / f"{late.framework}.py").write_text(FRAMEWORK)
    (tmp_path / f"{late.adapter}.py").write_text(
        ADAPTER.format(framework=late.framework, supported=supported)
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    listed = Listed("late", "unknown", late.framework, late.adapter, "LateAdapter")
    monkeypatch.setattr(adapters, "ADAPTERS", (listed,))
    return late


@pytest.fixture
def late(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    found = _late(tmp_path, monkeypatch, f"== {WRAPT_VERSION}")
    yield found
    for name in (found.framework, found.adapter):
        sys.modules.pop(name, None)


@pytest.fixture
def unsupported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    found = _late(tmp_path, monkeypatch, ">= 999")
    yield found
    for name in (found.framework, found.adapter):
        sys.modules.pop(name, None)


def test_no_adapter_is_loaded_until_its_framework_is_imported(late, instrument):
    instrument()
    assert late.adapter_module() is None

    framework = late.import_framework()
    adapter = late.adapter_module()
    assert adapter is not None
    assert adapter.made == [telemetry.current()]
    assert framework.work() == "done"
    assert adapter.calls == [telemetry.current()]


def test_uninstrument_undoes_what_the_loaded_adapter_patched(late):
    from opentelemetry_instrumentation_execstatus import ExecStatusInstrumentor

    instrumentor = ExecStatusInstrumentor()
    instrumentor.instrument()
    framework = late.import_framework()
    original = framework.work.__wrapped__
    instrumentor.uninstrument()
    assert framework.work is original
    assert framework.work() == "done"
    assert late.adapter_module().calls == []


def test_a_framework_imported_before_instrument_is_patched_at_once(late, instrument):
    framework = late.import_framework()
    instrument()
    adapter = late.adapter_module()
    assert adapter is not None and adapter.made == [telemetry.current()]
    assert framework.work() == "done"
    assert adapter.calls == [telemetry.current()]


def test_instrumenting_again_patches_an_imported_framework_with_the_new_telemetry(late):
    from opentelemetry_instrumentation_execstatus import ExecStatusInstrumentor

    instrumentor = ExecStatusInstrumentor()
    framework = late.import_framework()
    lives = []
    try:
        for _ in range(2):
            instrumentor.instrument()
            lives.append(telemetry.current())
            assert framework.work() == "done"
            instrumentor.uninstrument()
    finally:
        instrumentor.uninstrument()
    adapter = late.adapter_module()
    assert adapter.made == lives
    assert adapter.calls == lives


def test_a_framework_imported_anew_is_patched_by_the_next_instrumentation(late):
    """Taken out of ``sys.modules`` (as the suite does with the frameworks it brings) and
    imported again after the next ``instrument()``."""
    from opentelemetry_instrumentation_execstatus import ExecStatusInstrumentor

    instrumentor = ExecStatusInstrumentor()
    lives = []
    for _ in range(2):
        instrumentor.instrument()
        try:
            lives.append(telemetry.current())
            assert late.import_framework().work() == "done"
        finally:
            instrumentor.uninstrument()
            late.forget_framework()
    assert late.adapter_module().calls == lives


def test_an_adapter_the_orchestrators_option_leaves_out_is_never_loaded(late, instrument):
    instrument(orchestrators=["routilux"])
    framework = late.import_framework()
    assert late.adapter_module() is None
    assert not hasattr(framework.work, "__wrapped__")


@pytest.mark.parametrize("selection", ["late", "unknown"])
def test_an_adapter_the_orchestrators_option_names_is_loaded(late, instrument, selection):
    instrument(orchestrators=[selection])
    assert late.import_framework().work() == "done"
    assert late.adapter_module().calls == [telemetry.current()]


def test_an_unsupported_version_is_logged_once_when_its_framework_is_imported(
    unsupported, instrument, caplog
):
    with caplog.at_level(logging.WARNING):
        instrument()
        assert caplog.records == []
        framework = unsupported.import_framework()
    (record,) = caplog.records
    assert f"wrapt {WRAPT_VERSION} is installed, but only wrapt >= 999" in record.getMessage()
    assert not hasattr(framework.work, "__wrapped__")
    assert unsupported.adapter_module().made == []


def test_the_list_names_each_adapter_as_its_class_does():
    """What selects an adapter and what loads it are read from the list, before its class
    exists: they must be the class's own."""
    classes = all_adapters()
    assert len(classes) == len(ADAPTERS)
    for listed, adapter in zip(ADAPTERS, classes):
        assert listed.class_name == adapter.__name__
        assert (listed.name, listed.orchestrator, listed.top_module) == (
            adapter.name,
            adapter.orchestrator.value,
            adapter.top_module,
        )


STARTED = """
import json, sys
from opentelemetry_instrumentation_execstatus import ExecStatusInstrumentor
from opentelemetry_instrumentation_execstatus.adapters import ADAPTERS
ExecStatusInstrumentor().instrument()
package = "opentelemetry_instrumentation_execstatus.adapters"
print(json.dumps({
    "adapter modules": sorted(name for name in sys.modules if name.startswith(package + ".")),
    "frameworks": sorted({listed.top_module for listed in ADAPTERS} & set(sys.modules)),
}))
"""


def test_instrument_imports_no_adapter_module_and_no_framework():
    """In a fresh interpreter: nothing of any adapter, and no orchestrator, whatever is
    installed here."""
    completed = subprocess.run(
        [sys.executable, "-c", STARTED], capture_output=True, text=True, check=True
    )
    assert json.loads(completed.stdout) == {"adapter modules": [], "frameworks": []}
