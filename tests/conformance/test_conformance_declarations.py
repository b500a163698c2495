"""Declarations, of every listed adapter and in every environment: each brings a scenario,
and its name, version range and top-level module are ones the enablement can use."""

from __future__ import annotations

import importlib.util

import pytest
from packaging.specifiers import SpecifierSet

from conformance.scenarios import SCENARIOS
from opentelemetry_instrumentation_execstatus.adapters import all_adapters
from opentelemetry_instrumentation_execstatus.config import ExecStatusConfig
from opentelemetry_instrumentation_execstatus.semconv import Orchestrator

ADAPTERS = pytest.mark.parametrize("listed", all_adapters(), ids=lambda adapter: adapter.name)


def test_every_listed_adapter_has_a_scenario_and_every_scenario_an_adapter():
    assert sorted(SCENARIOS) == sorted(adapter.name for adapter in all_adapters())
    for name, module in SCENARIOS.items():  # found, not imported: it imports its framework
        assert importlib.util.find_spec(module) is not None, f"{name}: no module {module}"


def test_adapter_names_are_unique():
    names = [adapter.name for adapter in all_adapters()]
    assert len(set(names)) == len(names), names


@ADAPTERS
def test_the_orchestrators_option_can_name_the_adapter(listed):
    """The option is read trimmed, lower-cased and split on commas: a name it could not
    produce would select nothing."""
    by_name = ExecStatusConfig.load({"orchestrators": f"other, {listed.name.upper()} "}, {})
    assert listed.name in by_name.orchestrators
    by_orchestrator = ExecStatusConfig.load({"orchestrators": [listed.orchestrator.value]}, {})
    assert listed.orchestrator.value in by_orchestrator.orchestrators


@ADAPTERS
def test_the_declaration_is_one_enablement_can_use(listed):
    assert isinstance(listed.orchestrator, Orchestrator)
    assert listed.top_module and "." not in listed.top_module  # found without importing it
    if listed.distribution is not None:
        assert str(SpecifierSet(listed.supported)), "a distribution with no supported range"
        assert listed.requirement() == f"{listed.distribution} {listed.supported}"
