"""One adapter per orchestrator: where to hook it and how its statuses map to ours.

Adapters translate framework events into calls on the core and never build telemetry
themselves. Like botocore's ``extensions/`` in opentelemetry-python-contrib, each lives in its
own module, is built on ``base.Adapter`` and is listed here; ``docs/adding-an-orchestrator.md``
is the recipe.

The list (``ADAPTERS``) says, for each adapter, what selects it, which framework module loads
it and where its class is, without importing anything: ``instrument()`` waits for each
framework's import and only then loads its adapters, so that start-up costs the same whatever
number of adapters the package has, and whatever frameworks are installed. A test keeps each
entry in step with its class.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    from opentelemetry_instrumentation_execstatus.adapters.base import Adapter


class Listed(NamedTuple):
    """An adapter, as known before its framework is imported."""

    name: str
    """The adapter's ``name``."""
    orchestrator: str
    """Its ``orchestrator``'s value: the ``orchestrators`` option selects by either."""
    top_module: str
    """Its ``top_module``: the adapter is loaded when this module is imported."""
    module: str
    """The module that defines it; relative to this package when it starts with a dot."""
    class_name: str

    def is_selected(self, selected: frozenset[str] | None) -> bool:
        """Named by the ``orchestrators`` option (None names every adapter)."""
        return selected is None or self.name in selected or self.orchestrator in selected

    def load(self) -> type[Adapter]:
        """The adapter's class (imports its module)."""
        module = importlib.import_module(self.module, __name__)
        return getattr(module, self.class_name)  # type: ignore[no-any-return]


ADAPTERS: tuple[Listed, ...] = (
    Listed("routilux", "routilux", "routilux", ".routilux", "RoutiluxAdapter"),
    Listed("routilux-legacy", "routilux", "routilux", ".routilux_legacy", "RoutiluxLegacyAdapter"),
    Listed("orcapod", "orcapod", "orcapod", ".orcapod", "OrcapodAdapter"),
    Listed("loom", "loom", "loom", ".loom", "LoomAdapter"),
    Listed("sqlalchemy", "sqlalchemy", "sqlalchemy", ".sqlalchemy", "SQLAlchemyAdapter"),
    Listed("tangle", "tangle", "cloud_pipelines_backend", ".tangle", "TangleAdapter"),
    Listed("celery", "celery", "celery", ".celery", "CeleryAdapter"),
    Listed("dask", "dask", "distributed", ".dask", "DaskAdapter"),
)


def all_adapters() -> list[type[Adapter]]:
    """Every adapter's class (imports every adapter module, and no framework)."""
    return [listed.load() for listed in ADAPTERS]


def selected_by_top_module(selected: frozenset[str] | None) -> dict[str, list[Listed]]:
    """The adapters ``selected`` names, by the framework module whose import loads them."""
    found: dict[str, list[Listed]] = {}
    for listed in ADAPTERS:
        if listed.is_selected(selected):
            found.setdefault(listed.top_module, []).append(listed)
    return found


def __getattr__(name: str) -> Any:
    # ``Adapter`` is re-exported for adapters and tests, imported when first asked for: the
    # instrumentor reads the list above without loading the adapter kit.
    if name == "Adapter":
        from opentelemetry_instrumentation_execstatus.adapters.base import Adapter

        return Adapter
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["ADAPTERS", "Adapter", "Listed", "all_adapters", "selected_by_top_module"]
