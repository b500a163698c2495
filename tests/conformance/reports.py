"""What an adapter reported of a run, in the terms a scenario declares it."""

from __future__ import annotations

from support import Telemetry

from conformance.scenarios import Scenario
from conformance.workload import Behaviour

Report = tuple[str, str, str]
"""One span: its ``execution.level``, its name and its ``execution.status``."""


def reported(otel: Telemetry) -> list[Report]:
    """Every finished span, sorted: a second span of one execution shows as a duplicate."""
    return sorted(
        (
            str(span.attributes.get("execution.level")),
            span.name,
            str(span.attributes.get("execution.status")),
        )
        for span in otel.spans()
    )


def declared(scenario: Scenario, behaviour: Behaviour) -> list[Report]:
    """What the scenario says one run with a step ending so reports, sorted."""
    return sorted(
        (level, name, status) for (level, name), status in scenario.reported[behaviour].items()
    )
