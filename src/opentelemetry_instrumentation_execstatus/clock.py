"""One timeline for durations and span timestamps.

Durations must come from a monotonic clock (wall clocks jump), but spans need wall-clock epoch
nanoseconds and orchestrators hand us their own wall-clock timestamps (a persisted
``status_updated_at``, an event's ``timestamp``). Everything is kept in monotonic nanoseconds
and converted through one anchor taken at import, so the two kinds of time mix safely.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Union


class Instant(int):
    """A monotonic instant in nanoseconds, as taken by ``now()`` (an adapter's own reading)."""


Timestamp = Union[Instant, datetime, float, int]
"""When a change happened: an ``Instant``, an aware or naive (local) datetime, or epoch seconds."""

_ANCHOR_MONO_NS = time.monotonic_ns()
_ANCHOR_WALL_NS = time.time_ns()

now_ns = time.monotonic_ns


def now() -> Instant:
    return Instant(time.monotonic_ns())


def to_wall_ns(mono_ns: int) -> int:
    """Epoch nanoseconds for a monotonic instant, as spans want them."""
    return _ANCHOR_WALL_NS + (mono_ns - _ANCHOR_MONO_NS)


def from_timestamp(timestamp: Timestamp) -> int:
    """Monotonic nanoseconds for a timestamp (an Instant already is one)."""
    if isinstance(timestamp, Instant):
        return int(timestamp)
    if isinstance(timestamp, datetime):
        if timestamp.tzinfo is None:
            timestamp = timestamp.astimezone()  # naive: local time, as datetime.now() gives
        wall_ns = int(timestamp.astimezone(timezone.utc).timestamp() * 1e9)
    else:
        wall_ns = int(float(timestamp) * 1e9)
    return _ANCHOR_MONO_NS + (wall_ns - _ANCHOR_WALL_NS)
