"""What the instrumentor declares to ``opentelemetry-instrument``.

``_instruments`` is empty on purpose: each orchestrator adapter is enabled only when its
framework is importable, so the auto-instrumentation loader must not refuse the whole package
because one of the optional orchestrators is missing. The version ranges we test are the
per-orchestrator extras in ``pyproject.toml`` and ``SUPPORTED_VERSIONS`` below.
"""

from __future__ import annotations

_instruments: tuple[str, ...] = ()

# Orchestrator distribution -> the version range the test suite runs.
SUPPORTED_VERSIONS: dict[str, str] = {
    "routilux": ">= 0.10, < 0.11 or >= 1.1, < 1.2",
}

_supports_metrics = True
