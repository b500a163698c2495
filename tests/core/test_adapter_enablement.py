"""Version-aware enablement: which adapters are used, and what the dependency checks read.

The adapters here are test subclasses of the real base, pointed at distributions that are
really installed in every environment (wrapt, opentelemetry-api), so the installed version is
read from real package metadata.
"""

from __future__ import annotations

import importlib.metadata
import logging

import pytest
from opentelemetry.instrumentation.dependencies import get_dist_dependency_conflicts
from packaging.requirements import Requirement

from opentelemetry_instrumentation_execstatus import ExecStatusInstrumentor
from opentelemetry_instrumentation_execstatus.adapters import Adapter, all_adapters
from opentelemetry_instrumentation_execstatus.adapters.base import enabled_adapters
from opentelemetry_instrumentation_execstatus.package import _instruments, _instruments_any
from opentelemetry_instrumentation_execstatus.semconv import Orchestrator

WRAPT_VERSION = importlib.metadata.version("wrapt")
DISTRIBUTION = "opentelemetry-instrumentation-execstatus"


class _WraptLine(Adapter):
    """An adapter of a framework that is installed everywhere: wrapt."""

    name = "wrapt-current"
    orchestrator = Orchestrator.UNKNOWN
    top_module = "wrapt"
    distribution = "wrapt"
    supported = f"== {WRAPT_VERSION}"

    def patches(self) -> list:
        return []


class _WraptOldLine(_WraptLine):
    name = "wrapt-old"
    supported = ">= 0.1, < 0.2"


class _NotInstalled(_WraptLine):
    name = "absent"
    top_module = "a_framework_that_is_not_installed"
    distribution = "a-framework-that-is-not-installed"


class _NoDistribution(_WraptLine):
    name = "no-distribution"
    distribution = None
    supported = ""


def test_the_line_supporting_the_installed_version_is_the_one_enabled(caplog):
    with caplog.at_level(logging.WARNING):
        assert enabled_adapters([_WraptLine, _WraptOldLine], None) == [_WraptLine]
    assert caplog.records == []


def test_an_unsupported_version_is_left_out_with_one_line_naming_found_and_supported(caplog):
    class _WraptFuture(_WraptLine):
        name = "wrapt-future"
        supported = ">= 999"

    with caplog.at_level(logging.WARNING):
        assert enabled_adapters([_WraptOldLine, _WraptFuture], None) == []
    (record,) = caplog.records
    message = record.getMessage()
    assert f"wrapt {WRAPT_VERSION} is installed" in message
    assert "wrapt >= 0.1, < 0.2 or wrapt >= 999" in message


def test_a_framework_that_is_not_importable_is_not_enabled_and_not_logged(caplog):
    with caplog.at_level(logging.DEBUG, logger="opentelemetry_instrumentation_execstatus"):
        assert enabled_adapters([_NotInstalled], None) == []
    assert caplog.records == []


def test_a_framework_without_a_distribution_is_trusted_when_importable():
    assert enabled_adapters([_NoDistribution], None) == [_NoDistribution]


@pytest.mark.parametrize(
    ("selected", "expected"),
    [
        (frozenset({"wrapt-current"}), [_WraptLine]),
        (frozenset({"unknown"}), [_WraptLine, _NoDistribution]),  # the orchestrator's value
        (frozenset({"something-else"}), []),
    ],
)
def test_the_orchestrators_option_selects_by_adapter_name_or_orchestrator(selected, expected):
    assert enabled_adapters([_WraptLine, _NoDistribution], selected) == expected


def test_an_unparsable_installed_version_or_range_is_unsupported():
    class _BadRange(_WraptLine):
        supported = "not a range"

    assert not _BadRange.supports(WRAPT_VERSION)
    assert not _WraptLine.supports("not a version")
    assert _WraptLine.supports(WRAPT_VERSION)


def test_instruments_any_lists_every_adapters_requirement_and_the_public_api():
    requirements = [adapter.requirement() for adapter in all_adapters()]
    declared = [requirement for requirement in requirements if requirement is not None]
    assert sorted(_instruments_any) == sorted([*declared, "opentelemetry-api >= 1.33"])
    assert len(set(adapter.name for adapter in all_adapters())) == len(all_adapters())


def test_the_package_metadata_declares_the_same_instruments_any_extra():
    requires = [Requirement(text) for text in importlib.metadata.requires(DISTRIBUTION) or []]
    extra = {
        (requirement.name, requirement.specifier)
        for requirement in requires
        if requirement.marker is not None
        and requirement.marker.evaluate({"extra": "instruments-any"})
    }
    assert extra == {(r.name, r.specifier) for r in map(Requirement, _instruments_any)}


def test_the_auto_instrumentation_loader_finds_no_conflict_without_any_orchestrator():
    """With no orchestrator installed the public API still works, so the loader must load it."""
    assert get_dist_dependency_conflicts(importlib.metadata.distribution(DISTRIBUTION)) is None
    assert ExecStatusInstrumentor().instrumentation_dependencies() == _instruments == ()
