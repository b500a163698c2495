"""Turning whatever an orchestrator reports into bounded, typed label values.

Rules: values are trimmed; a value outside its enum becomes the enum's fallback (``unknown``
or ``other``), never passed through; names beyond a cardinality cap become ``_OTHER``;
durations that come out negative (clock skew, out-of-order events) are clamped to 0.

Text is made safe to export before it is kept: one string the OTLP encoder cannot encode (a
lone surrogate, as ``os.fsdecode`` makes of a file name's undecodable bytes) fails the whole
export batch, so every other execution's spans would be lost with it. Every string that reaches
a span, an event or a metric attribute therefore goes through ``clean_text`` (or
``bounded_text``): valid UTF-8, bounded, and produced without ever raising, whatever the
value's ``__str__`` does.
"""

from __future__ import annotations

import math
import re
import threading
from enum import Enum
from typing import Any, TypeVar

from opentelemetry_instrumentation_execstatus.forking import after_fork_in_child
from opentelemetry_instrumentation_execstatus.semconv import ExecutionStatus

E = TypeVar("E", bound=Enum)

OTHER_NAME = "_OTHER"
MAX_NAME_LENGTH = 128


def to_enum(enum_cls: type[E], value: Any, fallback: E) -> E:
    """``value`` as a member of ``enum_cls``: a member, its value, or its name, any case.

    Never raises: a value that cannot be read (another enum whose ``value`` raises, a ``str``
    subclass overriding ``strip``) is the fallback, like any value outside the enum."""
    if isinstance(value, enum_cls):
        return value
    try:
        if isinstance(value, Enum):  # another framework's enum: use its value
            value = value.value
        if not isinstance(value, str):
            return fallback
        text = str.lower(str.strip(value))
        try:
            return enum_cls(text)
        except ValueError:
            member = enum_cls.__members__.get(text.upper())
            return member if member is not None else fallback
    except Exception:
        return fallback


STATUS_BY_TEXT: dict[str, ExecutionStatus] = {
    **{member.value: member for member in ExecutionStatus},
    **{name: member for name, member in ExecutionStatus.__members__.items()},
}
"""Every spelling ``to_enum`` accepts without trimming or case folding: members (a str-valued
member hashes and compares as its value), values and names. Looked up first on every change
(``to_status``; the tracker looks a str up here itself, before calling it)."""


def to_status(value: Any) -> ExecutionStatus:
    """A canonical status, or ``unknown`` for anything we don't know."""
    if isinstance(value, str):
        status = STATUS_BY_TEXT.get(value)
        if status is not None:
            return status
    return to_enum(ExecutionStatus, value, ExecutionStatus.UNKNOWN)


def clamp_seconds(value: float) -> float:
    """Durations are never negative, NaN nor infinite: all become 0."""
    if value > 0 and not math.isinf(value):
        return float(value)
    return 0.0


_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
REPLACEMENT = "\ufffd"
TRUNCATED = "\u2026"  # what stands for the cut part of a bounded text


def as_text(value: Any) -> str | None:
    """``value`` as a plain ``str``, or None when it has no usable text.

    A ``str`` subclass is copied without calling its own methods; bytes are decoded as UTF-8
    (a file name, a Redis reply); anything else is ``str(value)``, which may raise, return a
    non-string, or refuse an int of more than 4,300 digits: all of those are None.
    """
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("utf-8", "replace")
    try:
        text = str(value)
    except Exception:
        return None
    return str.__str__(text) if isinstance(text, str) else None


def _valid_utf8(text: str) -> str:
    """``text`` with every lone surrogate replaced by U+FFFD, so that it encodes as UTF-8."""
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return _LONE_SURROGATE.sub(REPLACEMENT, text)
    return text


def clean_text(value: Any, limit: int = MAX_NAME_LENGTH) -> str | None:
    """A trimmed, length-capped, valid UTF-8 string, or None when there is nothing to say
    (None, blank, or a value with no usable text). Never raises."""
    if value is None:
        return None
    kind = type(value)
    if kind is str:  # the common cases, written out: a plain str has no methods of its own...
        text = value.strip()
    elif kind is int:  # ...nor a plain int, whose digits need no trimming
        try:
            text = str(value)
        except ValueError:  # more digits than ``sys.get_int_max_str_digits()``
            return None
    else:
        text = as_text(value)
        if text is None:
            return None
        text = text.strip()
    if not text:
        return None
    if len(text) > limit:
        text = text[:limit]
    return text if text.isascii() else _valid_utf8(text)


def bounded_text(text: str, limit: int, *, keep_end: bool = False) -> str:
    """``text`` as valid UTF-8 in at most ``limit`` characters, the cut part shown as "…".

    ``keep_end`` keeps the tail instead of the head: the end of a stack trace holds the frame
    that raised and the message.
    """
    if len(text) > limit:
        kept = max(0, limit - 1)
        text = TRUNCATED + text[len(text) - kept :] if keep_end else text[:kept] + TRUNCATED
    return _valid_utf8(text)


class NameLimiter:
    """Admits the first ``limit`` distinct names; every later newcomer becomes ``_OTHER``.

    Pipeline and step names go on metric attributes, where each distinct value is a new time
    series. Keeping the first names seen (rather than evicting) keeps series stable over time.
    """

    def __init__(self, limit: int) -> None:
        self._limit = max(0, limit)
        self._admitted: set[str] = set()
        self._lock = threading.Lock()
        after_fork_in_child(self._after_fork)

    def _after_fork(self) -> None:
        # The names admitted stay (the child's series continue the parent's); only the lock,
        # which a parent thread may have held at fork, is new.
        self._lock = threading.Lock()

    def admit(self, name: str | None) -> str | None:
        if name is None:
            return None
        if name in self._admitted:  # lock-free fast path: set membership is atomic
            return name
        with self._lock:
            if name in self._admitted:
                return name
            if len(self._admitted) < self._limit:
                self._admitted.add(name)
                return name
        return OTHER_NAME
