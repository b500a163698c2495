"""Keeping the host application safe from the instrumentation's own failures.

Instrumentation code runs inside someone else's pipeline. Any exception it raises is caught
here, logged once per place (not once per step, which could flood a log), and swallowed; the
host's own return values and exceptions never pass through these helpers.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
from typing import Any, Callable, TypeVar

_LOG = logging.getLogger("opentelemetry_instrumentation_execstatus")
_reported: set[str] = set()
_reported_lock = threading.Lock()

F = TypeVar("F", bound=Callable[..., Any])


def report_internal_error(where: str) -> None:
    """Log the exception being handled, the first time it happens at ``where``."""
    with _reported_lock:
        if where in _reported:
            return
        _reported.add(where)
    _LOG.warning(
        "execstatus instrumentation error in %s (further errors there are not logged); "
        "the instrumented application is not affected",
        where,
        exc_info=True,
    )


def _reset_lock_after_fork() -> None:
    """A thread of the parent may have held the lock at fork: the child's would stay held."""
    global _reported_lock
    _reported_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_lock_after_fork)


def guarded(func: F) -> F:
    """Run ``func``; on an exception, report it once and return None instead."""
    where = f"{func.__module__}.{func.__qualname__}"

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except Exception:
            report_internal_error(where)
            return None

    return wrapper  # type: ignore[return-value]
