"""Starting a forked child from a clean slate: every lock of the package re-created, no state
of the parent's executions or workers carried over.

A lock held by another thread of the parent at ``fork()`` stays held forever in the child,
where that thread does not exist: the child's next status or worker report would never return.
And the parent's in-flight executions are not the child's: it will never see them end, so it
must neither end them nor keep counting them. Each owner of a lock or of such state registers
what to redo; ``os.register_at_fork`` runs it in the child, before any code of the child.
"""

from __future__ import annotations

import os
import threading
import weakref
from types import MethodType
from typing import Callable, Union

from opentelemetry_instrumentation_execstatus.safety import report_internal_error

_Callback = Union[Callable[[], None], "weakref.WeakMethod[Callable[[], None]]"]
_callbacks: list[_Callback] = []
_callbacks_lock = threading.Lock()


# What makes a new lock of each kind (the lock types themselves cannot be instantiated).
_NEW_LOCKS = {type(threading.Lock()): threading.Lock, type(threading.RLock()): threading.RLock}


def new_lock_like(value: object) -> threading.Lock | threading.RLock | None:
    """A new, free lock of ``value``'s kind (``Lock`` or ``RLock``), for a forked child to
    replace one a parent thread may have held at the fork; None if ``value`` is no lock."""
    make = _NEW_LOCKS.get(type(value))
    return None if make is None else make()


def after_fork_in_child(callback: Callable[[], None]) -> None:
    """Run ``callback`` in every forked child. A bound method is held weakly, so registering
    never keeps an uninstrumented tracker or recorder alive."""
    entry: _Callback = (
        weakref.WeakMethod(callback) if isinstance(callback, MethodType) else callback
    )
    with _callbacks_lock:
        _callbacks[:] = [known for known in _callbacks if _resolve(known) is not None]
        _callbacks.append(entry)


def _resolve(entry: _Callback) -> Callable[[], None] | None:
    return entry() if isinstance(entry, weakref.WeakMethod) else entry


def _run_in_child() -> None:
    global _callbacks_lock
    _callbacks_lock = threading.Lock()
    for entry in list(_callbacks):
        callback = _resolve(entry)
        if callback is None:
            continue
        try:
            callback()
        except Exception:
            report_internal_error("resetting state after fork")


if hasattr(os, "register_at_fork"):  # not on Windows, which has no fork
    os.register_at_fork(after_in_child=_run_in_child)
