"""A forked child's metrics start empty: the SDK's aggregations of the package's instruments,
copied from the parent by ``fork()``, are dropped in the child.

The SDK keeps, for each reader, each instrument and each view that matches it, one aggregation
per attribute set: a running sum, a histogram's buckets, an observed value and the start time
of its series. ``fork()`` copies them all, and nothing in the SDK resets them. A child forked
after its parent recorded (a Celery pool process, a ``multiprocessing`` worker, an
``os.fork`` work horse) would export the parent's counts and samples again, under its own
resource: a counter summed over processes counts the parent's spawns and health checks once
per child, a histogram repeats the parent's transitions, and every series claims the parent's
start time. With delta temporality the child would export again what its parent recorded
since its last export. The locks go with the aggregations: one a thread of the parent held at
the fork (a measurement or a collection under way) stays held in the child forever, and the
child's next measurement or export would wait for it (opentelemetry-python#4345).

So in a forked child, each view-instrument match of the package's instruments (those of its
instrumentation scope, and no one else's) gets an empty aggregation table (each aggregation's
own lock goes with it) and a new lock: the child's first measurement of each attribute set
starts a series of its own, from its own start time, and the child exports only what it
records. The package's own observed counts restart at
0 in the child at the same moment (``counts``), so ``execution.active`` and
``execution.worker.count`` read the child's executions and workers only.

Where the SDK keeps the aggregations is not public: the meter provider's measurement consumer
holds one storage per reader (``_reader_storages``), which maps each instrument to its matches
(``_instrument_view_instrument_matches``), each with its aggregations by attribute set
(``_attributes_aggregation``) and the lock that guards adding one (``_lock``), in SDK 1.41 as
in 1.45. Each step is guarded: an SDK that keeps them elsewhere is left as it was.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from opentelemetry_instrumentation_execstatus.forking import new_lock_like
from opentelemetry_instrumentation_execstatus.safety import report_internal_error


def forget_parent_measurements(meter_provider: Any, scope_name: str) -> None:
    """In a forked child: every aggregation the SDK holds for the instruments of the
    instrumentation scope ``scope_name`` dropped, with a new lock. Never raises."""
    try:
        matches = list(_matches_of_scope(meter_provider, scope_name))
    except Exception:
        report_internal_error("finding the metric storage to empty after fork")
        return
    for match in matches:
        try:
            _emptied(match)
        except Exception:
            report_internal_error("emptying an instrument's metric storage after fork")


def _matches_of_scope(meter_provider: Any, scope_name: str) -> Iterator[Any]:
    """The view-instrument matches of the scope's instruments, in every reader's storage."""
    consumer = getattr(meter_provider, "_measurement_consumer", None)
    storages = getattr(consumer, "_reader_storages", None)
    for storage in list(storages.values()) if isinstance(storages, Mapping) else ():
        by_instrument = getattr(storage, "_instrument_view_instrument_matches", None)
        if not isinstance(by_instrument, dict):
            continue
        for instrument, matches in list(by_instrument.items()):
            scope = getattr(instrument, "instrumentation_scope", None)
            if getattr(scope, "name", None) == scope_name and isinstance(matches, list):
                yield from matches


def _emptied(match: Any) -> None:
    """A match with no aggregation and a new lock; left as it was unless both are where the
    SDK keeps them (a table emptied under a lock the child cannot take would make every next
    measurement wait for it)."""
    new_lock = new_lock_like(getattr(match, "_lock", None))
    if new_lock is None or not isinstance(getattr(match, "_attributes_aggregation", None), dict):
        return
    match._lock = new_lock
    match._attributes_aggregation = {}
    # SDK 1.45, delta temporality: the start of the next aggregations (the last collection's,
    # the parent's); without it they start when first measured, in the child.
    if isinstance(getattr(match, "_previous_collection_start_nanos", None), int):
        match._previous_collection_start_nanos = None
