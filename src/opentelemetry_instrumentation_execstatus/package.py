"""What the instrumentor declares to ``opentelemetry-instrumentation``'s dependency checks.

Like botocore's instrumentation, the package instruments any of several libraries: nothing is
required (``_instruments``) and any one of ``_instruments_any`` is enough; the
``instruments-any`` extra of ``pyproject.toml`` lists the same, so the auto-instrumentation
loader reads it from the package's metadata. Each entry is one adapter's distribution and the
version range it supports (``Adapter.requirement()``; a test keeps the three in step). The
public API needs no orchestrator at all, only ``opentelemetry-api``: it is the last
alternative, so the loader never skips the package for want of an orchestrator, while each
adapter still checks its own framework's version when ``instrument()`` runs (a version outside
its range is left unpatched, with one log line).
"""

from __future__ import annotations

_instruments: tuple[str, ...] = ()

_instruments_any: tuple[str, ...] = (
    "routilux >= 1.1, < 1.2",
    "routilux >= 0.10, < 0.11",
    "orcapod >= 0.1.4, < 0.2",
    "loom-kernel >= 9.0, < 10",
    "sqlalchemy >= 2.0, < 3",
    "celery >= 5.3, < 6",
    "distributed >= 2024.1",
    "opentelemetry-api >= 1.33",
)

_supports_metrics = True
