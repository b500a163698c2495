"""Enablement, per adapter: the ``orchestrators`` option selects it by name or by its
orchestrator, and an installed version outside ``supported`` is left unpatched, with one log
line saying what was found and what is supported."""

from __future__ import annotations

import importlib.metadata
import logging

import pytest

from conformance.patched import Attributes, patched_modules, wraps_attributes
from conformance.reports import declared, reported
from conformance.scenarios import scenario_for
from conformance.workload import Behaviour, Step
from opentelemetry_instrumentation_execstatus.adapters import all_adapters


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
