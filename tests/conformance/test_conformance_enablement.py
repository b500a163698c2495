"""Enablement, per adapter: the ``orchestrators`` option selects it by name or by its
orchestrator, an installed version outside ``supported`` is left unpatched, with one log line
saying what was found and what is supported, and the adapter is loaded when its framework is
imported, never by ``instrument()``."""

from __future__ import annotations

import importlib.metadata
import json
import logging
import os
import subprocess
import sys

import pytest

from conformance.frameworks import SHAPED_FRAMEWORKS
from conformance.patched import Attributes, patched_modules, wraps_attributes
from conformance.reports import declared, reported
from conformance.scenarios import scenario_for
from conformance.workload import Behaviour, Step
from opentelemetry_instrumentation_execstatus.adapters import all_adapters
from opentelemetry_instrumentation_execstatus.config import ExecStatusConfig
from opentelemetry_instrumentation_execstatus.patching import Patch
from opentelemetry_instrumentation_execstatus.telemetry import Telemetry


def test_naming_another_adapter_leaves_this_one_unpatched(adapter, scenario, instrument):
    other = next(
        candidate.name
        for candidate in all_adapters()
        if candidate.name not in (adapter.name, adapter.orchestrator.value)
        and candidate.orchestrator is not adapter.orchestrator
    )
    before = Attributes(patched_modules(adapter))
    otel = instrument(orchestrators=[other], **scenario.options)
    assert before.changes() == []
    scenario.run(Step(Behaviour.RETURN))
    assert otel.spans() == []


@pytest.mark.parametrize("selected_by", ["name", "orchestrator"])
def test_naming_this_adapter_patches_it(adapter, scenario, instrument, selected_by):
    selection = adapter.name if selected_by == "name" else adapter.orchestrator.value
    before = Attributes(patched_modules(adapter))
    otel = instrument(orchestrators=f" {selection.upper()} ", **scenario.options)
    assert before.changes() or not wraps_attributes(adapter), f"{selection!r} patched nothing"
    scenario.run(Step(Behaviour.RETURN))
    assert reported(otel) == declared(scenario, Behaviour.RETURN)


def test_an_unsupported_version_is_left_unpatched_with_one_log_line(
    versioned_adapter, instrument, monkeypatch, caplog
):
    adapter = versioned_adapter
    scenario = scenario_for(adapter)
    distribution = adapter.distribution
    found = importlib.metadata.version(distribution)
    excluding = f"< {found}"
    monkeypatch.setattr(adapter, "supported", excluding)
    before = Attributes(patched_modules(adapter))

    with caplog.at_level(logging.WARNING):
        otel = instrument(**scenario.options)
    assert before.changes() == []
    lines = [
        record.getMessage()
        for record in caplog.records
        if record.levelno >= logging.WARNING and distribution in record.getMessage()
    ]
    assert len(lines) == 1, lines
    assert f"{distribution} {found} is installed" in lines[0]
    assert f"{distribution} {excluding}" in lines[0]
    scenario.run(Step(Behaviour.RETURN))
    assert otel.spans() == []


IMPORTED_AFTER_INSTRUMENT = """
import importlib, json, sys
from opentelemetry_instrumentation_execstatus import ExecStatusInstrumentor

adapter_module, modules, targets = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
instrumentor = ExecStatusInstrumentor()
instrumentor.instrument()
loaded_by_instrument = adapter_module in sys.modules
for name in modules:
    try:
        importlib.import_module(name)
    except ModuleNotFoundError:  # not in this version of the framework
        pass

def attributes():
    found = {}
    for module_name, target in targets:
        owner = sys.modules.get(module_name)
        *path, attribute = target.split(".")
        for part in path:
            owner = getattr(owner, part, None)
        if owner is not None and attribute in vars(owner):
            found[module_name + ":" + target] = vars(owner)[attribute]
    return found

instrumented = attributes()
instrumentor.uninstrument()
bare = attributes()
patched = [name for name, value in instrumented.items() if value is not bare[name]]
print(json.dumps({
    "loaded by instrument()": loaded_by_instrument,
    "loaded by the import": adapter_module in sys.modules,
    "targets found": sorted(instrumented),
    "targets patched": sorted(patched),
}))
"""


def test_a_framework_imported_after_instrument_loads_its_adapter_then_and_is_patched(adapter):
    """In a fresh interpreter: ``instrument()`` loads nothing of the adapter; importing the
    framework loads it, and every function it wraps that this version has is wrapped."""
    patches = adapter(Telemetry.create(ExecStatusConfig())).patches()
    modules = list(dict.fromkeys(patch.module for patch in patches))
    targets = [(patch.module, patch.target) for patch in patches if isinstance(patch, Patch)]
    environment = dict(os.environ)
    shaped = SHAPED_FRAMEWORKS.get(adapter.name)
    if shaped is not None:
        inherited = environment.get("PYTHONPATH")
        environment["PYTHONPATH"] = os.pathsep.join(
            filter(None, [str(shaped.directory), inherited])
        )
    completed = subprocess.run(
        [
            sys.executable,
            "-c",
            IMPORTED_AFTER_INSTRUMENT,
            adapter.__module__,
            json.dumps(modules),
            json.dumps(targets),
        ],
        capture_output=True,
        text=True,
        check=False,
        env=environment,
    )
    assert completed.returncode == 0, completed.stderr
    found = json.loads(completed.stdout)
    assert not found["loaded by instrument()"]
    assert found["loaded by the import"]
    assert found["targets patched"] == found["targets found"]
    assert found["targets found"] or not targets, "none of the functions it wraps exists"
