"""One adapter per orchestrator: where to hook it and how its statuses map to ours.

Adapters translate framework events into calls on the core and never build telemetry
themselves. Like botocore's ``extensions/`` in opentelemetry-python-contrib, each lives in its
own module, is built on ``base.Adapter`` and is listed here; ``docs/adding-an-orchestrator.md``
is the recipe.
"""

from __future__ import annotations

from opentelemetry_instrumentation_execstatus.adapters.base import Adapter


def all_adapters() -> list[type[Adapter]]:
    from opentelemetry_instrumentation_execstatus.adapters.loom import LoomAdapter
    from opentelemetry_instrumentation_execstatus.adapters.orcapod import OrcapodAdapter
    from opentelemetry_instrumentation_execstatus.adapters.routilux import RoutiluxAdapter
    from opentelemetry_instrumentation_execstatus.adapters.routilux_legacy import (
        RoutiluxLegacyAdapter,
    )
    from opentelemetry_instrumentation_execstatus.adapters.sqlalchemy import SQLAlchemyAdapter
    from opentelemetry_instrumentation_execstatus.adapters.tangle import TangleAdapter

    return [
        RoutiluxAdapter,
        RoutiluxLegacyAdapter,
        OrcapodAdapter,
        LoomAdapter,
        SQLAlchemyAdapter,
        TangleAdapter,
    ]


__all__ = ["Adapter", "all_adapters"]
