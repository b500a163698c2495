"""Hostile values: what a buggy or careless caller can hand the instrumentation.

Each is something real code produces: a file name decoded with ``os.fsdecode`` (lone
surrogates), an object whose ``__str__`` raises, an int too long for ``str()``, a timestamp in
milliseconds, a sentinel datetime of year 9999, a NaN from a failed computation.
"""

from __future__ import annotations

import enum
import os
from datetime import datetime, timezone
from typing import Any


class RaisingStr:
    def __str__(self) -> str:
        raise RuntimeError("__str__ failed")

    __repr__ = __str__


class NonStringStr:
    def __str__(self) -> Any:
        return 42  # noqa: PLE0307 - the point: str() then raises TypeError


class RaisingHash:
    def __hash__(self) -> int:
        raise RuntimeError("__hash__ failed")


class RaisingEq:
    """Hashes like every other instance, and refuses to compare: every lookup raises."""

    def __hash__(self) -> int:
        return 7

    def __eq__(self, other: object) -> bool:
        raise RuntimeError("__eq__ failed")


class SneakyStr(str):
    """A ``str`` whose methods raise: only ``str``'s own code may touch it."""

    def strip(self, *args: Any) -> str:
        raise RuntimeError("strip failed")

    def __str__(self) -> str:
        raise RuntimeError("__str__ failed")


class RaisingException(Exception):
    def __str__(self) -> str:
        raise RuntimeError("the exception's __str__ failed")


class ForeignStatus(enum.Enum):
    RUNNING = "RUNNING"
    WEIRD = object()


class RaisingValueEnum(enum.Enum):
    MEMBER = 1

    @property
    def value(self) -> Any:  # type: ignore[override]
        raise RuntimeError("value failed")


LONE_SURROGATE = os.fsdecode(b"job-\xff")

HOSTILE: dict[str, Any] = {
    "lone surrogate": LONE_SURROGATE,
    "surrogate pair halves": "\ud83d\ude00",
    "error text with surrogate": "Timeout\udcff",
    "1 MB string": "x" * 1_000_000,
    "blank": "   ",
    "bytes": b"job-\xff",
    "raising __str__": RaisingStr(),
    "non-string __str__": NonStringStr(),
    "raising __hash__": RaisingHash(),
    "raising __eq__": RaisingEq(),
    "str subclass with raising methods": SneakyStr("sneaky"),
    "int over 4300 digits": 10**5000,
    "int over int64": 2**70,
    "negative int": -(2**70),
    "bool": True,
    "NaN": float("nan"),
    "infinity": float("inf"),
    "negative seconds": -5.0,
    "epoch milliseconds": 1.7e12,
    "year 1": datetime(1, 1, 1),
    "year 9999": datetime(9999, 12, 31, 23, 59, 59, tzinfo=timezone.utc),
    "list": [1, 2],
    "dict": {"status": "running"},
    "object": object(),
    "foreign enum": ForeignStatus.WEIRD,
    "enum whose value raises": RaisingValueEnum.MEMBER,
    "exception whose __str__ raises": RaisingException(),
}
