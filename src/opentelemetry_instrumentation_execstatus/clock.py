"""One timeline for durations and span timestamps.

Durations must come from a monotonic clock (wall clocks jump), but spans need wall-clock epoch
nanoseconds and orchestrators hand us their own wall-clock timestamps (a persisted
``status_updated_at``, an event's ``timestamp``). Everything is kept in monotonic nanoseconds
and converted through one anchor taken at import, so the two kinds of time mix safely.

An orchestrator's timestamp is checked before it is used: one span whose start does not fit the
OTLP encoding (before 1970, or past 2554: a year-9999 sentinel, milliseconds taken for seconds)
fails the export of its whole batch. A timestamp that cannot be read, is NaN or infinite, or
lies outside a sane range (before 2000, or more than a day ahead of this machine's clock) is
not used: ``from_timestamp`` says so with None, and the caller falls back (to now, for the time
of a change). The first such timestamp is logged at debug level.
"""

from __future__ import annotations

import logging
import math
import time
from datetime import datetime, timezone
from typing import Any, Union

_LOG = logging.getLogger(__name__)


class Instant(int):
    """A monotonic instant in nanoseconds, as taken by ``now()`` (an adapter's own reading)."""


Timestamp = Union[Instant, datetime, float, int]
"""When a change happened: an ``Instant``, an aware or naive (local) datetime, or epoch seconds."""

_ANCHOR_MONO_NS = time.monotonic_ns()
_ANCHOR_WALL_NS = time.time_ns()

MONO_TO_WALL_NS = _ANCHOR_WALL_NS - _ANCHOR_MONO_NS
"""Added to a monotonic instant, gives its epoch nanoseconds (``to_wall_ns``, written out where
a span's every timestamp is converted: a function call is most of what the conversion costs)."""

now_ns = time.monotonic_ns


def now() -> Instant:
    return Instant(time.monotonic_ns())


def to_wall_ns(mono_ns: int) -> int:
    """Epoch nanoseconds for a monotonic instant, as spans want them."""
    return mono_ns + MONO_TO_WALL_NS


EARLIEST_WALL_NS = 946_684_800 * 10**9  # 2000-01-01T00:00:00Z
FUTURE_SLACK_NS = 86_400 * 10**9  # clocks of other machines may run ahead, not by a day
_rejected_logged = False


def from_timestamp(timestamp: Any) -> int | None:
    """Monotonic nanoseconds for a timestamp (an Instant already is one), or None when it is
    unreadable, not finite, or outside the sane range. Never raises."""
    try:
        if isinstance(timestamp, Instant):
            wall_ns = to_wall_ns(int(timestamp))
        elif isinstance(timestamp, datetime):
            if timestamp.tzinfo is None:
                timestamp = timestamp.astimezone()  # naive: local time, as datetime.now() gives
            wall_ns = int(timestamp.astimezone(timezone.utc).timestamp() * 1e9)
        else:
            seconds = float(timestamp)
            if not math.isfinite(seconds):
                return _rejected(timestamp)
            wall_ns = int(seconds * 1e9)
    except Exception:  # a year-1 datetime, a string, an object with a raising __float__
        return _rejected(timestamp)
    if not EARLIEST_WALL_NS <= wall_ns <= time.time_ns() + FUTURE_SLACK_NS:
        return _rejected(timestamp)
    return wall_ns - MONO_TO_WALL_NS


def _rejected(timestamp: Any) -> None:
    global _rejected_logged
    if not _rejected_logged:
        _rejected_logged = True
        _LOG.debug(
            "execstatus: ignoring a timestamp outside 2000 .. now + 1 day, or unreadable "
            "(a %s); further ones are not logged",
            type(timestamp).__name__,
        )
