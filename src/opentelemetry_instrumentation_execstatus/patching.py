"""Applying patches when their module is imported, and removing exactly those.

``instrument()`` must import no orchestrator, so each patch waits for its module with a wrapt
post-import hook (run at once when the module is already loaded). wrapt cannot unregister such
hooks, so one dispatcher per module name is registered for the life of the process and forwards
to whichever ``Patcher`` is active; after ``uninstrument()`` it forwards to nobody. Besides wrapt
wrappers (``Patch``), a patch may be any step that knows how to undo itself (``OnImport``), such
as listening to a framework's own events.
"""

from __future__ import annotations

import copy
import importlib
import logging
import sys
import threading
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Callable, Union

import wrapt
from opentelemetry.instrumentation.utils import unwrap

from opentelemetry_instrumentation_execstatus.forking import after_fork_in_child
from opentelemetry_instrumentation_execstatus.safety import report_internal_error

_LOG = logging.getLogger(__name__)

Wrapper = Callable[[Callable[..., Any], Any, tuple, dict], Any]


@dataclass(frozen=True)
class Patch:
    """Wrap ``module:target`` (``"function"`` or ``"Class.method"``) with ``wrapper``."""

    module: str
    target: str
    wrapper: Wrapper


@dataclass(frozen=True)
class OnImport:
    """Call ``apply(module)`` when ``module`` is imported; it returns what undoes it."""

    module: str
    apply: Callable[[ModuleType], Callable[[], None]]


AnyPatch = Union[Patch, OnImport]


class Patcher:
    """Owns one set of patches: applies each when its module loads, removes all on ``stop``."""

    def __init__(self, patches: list[AnyPatch]) -> None:
        self._patches = patches
        self._applied: set[Any] = set()  # what is applied: (owner, attribute) or an OnImport
        self._undo: list[Callable[[], None]] = []
        self._lock = threading.Lock()
        self._active = False

    def start(self) -> None:
        global _active_patcher
        self._active = True
        _active_patcher = self
        for module_name in dict.fromkeys(patch.module for patch in self._patches):
            _listen(module_name)

    def stop(self) -> None:
        global _active_patcher
        with self._lock:
            self._active = False
            undo, self._undo = self._undo, []
            self._applied = set()
        if _active_patcher is self:
            _active_patcher = None
        for step in reversed(undo):
            try:
                step()
            except Exception:
                report_internal_error("removing a patch")

    def _on_import(self, module: ModuleType) -> None:
        for patch in self._patches:
            if patch.module != module.__name__:
                continue
            with self._lock:
                if not self._active:
                    return
                try:
                    self._apply(module, patch)
                except Exception:
                    report_internal_error(f"patching {patch.module}")

    def _apply(self, module: ModuleType, patch: AnyPatch) -> None:
        # Called with self._lock held.
        if isinstance(patch, OnImport):
            if patch not in self._applied:
                self._undo.append(patch.apply(module))
                self._applied.add(patch)
            return
        owner, attribute = _resolve(module, patch.target)
        if (owner, attribute) in self._applied:
            return
        self._undo.append(wrap(owner, attribute, patch.wrapper))
        self._applied.add((owner, attribute))


def wrap(owner: Any, attribute: str, wrapper: Wrapper) -> Callable[[], None]:
    """Wrap ``owner.attribute`` with a wrapt ``wrapper``; returns what puts the original back."""
    wrapt.wrap_object(owner, attribute, _PatchedFunction, (wrapper, owner, attribute))
    return lambda: unwrap(owner, attribute)


class _BoundPatchedFunction(wrapt.BoundFunctionWrapper):  # type: ignore[misc]
    """``instance.method`` of a patched method pickles as a bound method does,
    ``getattr(instance, name)`` with the instance by value, and ``Class.method`` as
    ``getattr(Class, name)``; a deep copy is the method of a deep copy of the instance."""

    def __reduce_ex__(self, protocol: int) -> tuple[Any, ...]:
        return self.__reduce__()

    def __reduce__(self) -> tuple[Any, ...]:
        owner, attribute = self._self_parent._self_home
        instance = self._self_instance
        return _by_reference(owner if instance is None else instance, attribute)

    def __copy__(self) -> _BoundPatchedFunction:
        return self

    def __deepcopy__(self, memo: dict) -> Any:
        instance = self._self_instance
        if instance is None:
            return self
        return getattr(copy.deepcopy(instance, memo), self._self_parent._self_home[1])


class _PatchedFunction(wrapt.FunctionWrapper):  # type: ignore[misc]
    """A wrapt function wrapper that pickles and copies like the function it replaces.

    wrapt's proxies refuse to be pickled or copied, which would break the host wherever it
    pickles a patched function (multiprocessing, task queues) or copies an object holding one.
    Bare Python pickles a function by reference and copying returns the function itself; so
    does this. Unpickling looks the name up again: the wrapper while instrumented, the original
    after ``uninstrument()``, and it needs nothing of this package (another process may lack it).
    """

    __bound_function_wrapper__ = _BoundPatchedFunction

    def __init__(
        self, wrapped: Callable[..., Any], wrapper: Wrapper, owner: Any, attribute: str
    ) -> None:
        super().__init__(wrapped, wrapper)
        self._self_home = owner, attribute

    def __reduce_ex__(self, protocol: int) -> tuple[Any, ...]:
        return self.__reduce__()

    def __reduce__(self) -> tuple[Any, ...]:
        return _by_reference(*self._self_home)

    def __copy__(self) -> _PatchedFunction:
        return self

    def __deepcopy__(self, memo: dict) -> _PatchedFunction:
        return self


def _by_reference(owner: Any, attribute: str) -> tuple[Any, ...]:
    """``getattr(owner, attribute)`` as a pickle reduce value; a module goes by its name."""
    if isinstance(owner, ModuleType):
        owner = _ModuleByName(owner.__name__)
    return getattr, (owner, attribute)


class _ModuleByName:
    """A module for pickle, which refuses module objects: ``importlib.import_module(name)``."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __reduce__(self) -> tuple[Any, ...]:
        return importlib.import_module, (self.name,)


def _resolve(module: ModuleType, target: str) -> tuple[Any, str]:
    owner: Any = module
    *path, attribute = target.split(".")
    for part in path:
        owner = getattr(owner, part)
    if attribute not in owner.__dict__:
        raise AttributeError(f"{module.__name__}:{target} not found")
    return owner, attribute


_active_patcher: Patcher | None = None
_listening: set[str] = set()
_listening_lock = threading.Lock()


def _reset_locks_after_fork() -> None:
    """A parent thread importing a module at fork may have held them: re-create both."""
    global _listening_lock
    _listening_lock = threading.Lock()
    if _active_patcher is not None:
        _active_patcher._lock = threading.Lock()


after_fork_in_child(_reset_locks_after_fork)


def _listen(module_name: str) -> None:
    with _listening_lock:
        first = module_name not in _listening
        _listening.add(module_name)
    if first:
        wrapt.register_post_import_hook(_dispatch, module_name)
    else:
        module = sys.modules.get(module_name)
        if module is not None:
            _dispatch(module)


def _dispatch(module: ModuleType) -> None:
    patcher = _active_patcher
    if patcher is not None:
        patcher._on_import(module)
