"""Applying patches when their module is imported, and removing exactly those.

``instrument()`` must import no orchestrator, so each patch waits for its module with a wrapt
post-import hook (run at once when the module is already loaded). wrapt cannot unregister such
hooks, so one dispatcher per module name waits for its import and forwards to whichever
``Patcher`` is active; after ``uninstrument()`` it forwards to nobody. wrapt forgets a hook once
it has run, so a module imported anew (taken out of ``sys.modules`` and imported again) gets a
new dispatcher when it is next listened for. Besides wrapt wrappers (``Patch``), a patch may be
any step that knows how to undo itself (``OnImport``), such as listening to a framework's own
events, or what finds more patches once a module is imported (``LoadOnImport``): the adapters
of a framework are loaded only when it is.
"""

from __future__ import annotations

import copy
import importlib
import logging
import sys
import threading
from functools import partial
from types import ModuleType
from typing import Any, Callable, NamedTuple, Union

import wrapt
from opentelemetry.instrumentation.utils import unwrap

from opentelemetry_instrumentation_execstatus.forking import after_fork_in_child
from opentelemetry_instrumentation_execstatus.safety import report_internal_error

_LOG = logging.getLogger(__name__)

Wrapper = Callable[[Callable[..., Any], Any, tuple, dict], Any]


# The patches are named tuples, not dataclasses: every instrumented process defines them at
# start-up, and a frozen dataclass takes several times as long to define.


class Patch(NamedTuple):
    """Wrap ``module:target`` (``"function"`` or ``"Class.method"``) with ``wrapper``."""

    module: str
    target: str
    wrapper: Wrapper


class OnImport(NamedTuple):
    """Call ``apply(module)`` when ``module`` is imported; it returns what undoes it."""

    module: str
    apply: Callable[[ModuleType], Callable[[], None]]


class LoadOnImport(NamedTuple):
    """When ``module`` is imported, call ``load(module)`` for more patches, each applied as
    the others are: at once if its module is imported already, else when it is. They are
    removed with the others."""

    module: str
    load: Callable[[ModuleType], list[AnyPatch]]


AnyPatch = Union[Patch, OnImport, LoadOnImport]


class Patcher:
    """Owns one set of patches: applies each when its module loads, removes all on ``stop``."""

    def __init__(self, patches: list[AnyPatch]) -> None:
        self._patches = list(patches)
        # What is applied: (owner, attribute), an OnImport, or a LoadOnImport that has loaded.
        self._applied: set[Any] = set()
        self._undo: list[Callable[[], None]] = []
        # Reentrant: an OnImport applied under it may import a module that has patches too.
        self._lock = threading.RLock()
        self._active = False

    def start(self) -> None:
        global _active_patcher
        self._active = True
        _active_patcher = self
        _listen_all(self._patches)

    def add(self, patches: list[AnyPatch]) -> None:
        """Apply ``patches`` too: at once where their module is imported, else when it is."""
        with self._lock:
            if not self._active:
                return
            self._patches.extend(patches)
        _listen_all(patches)

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
        with self._lock:
            waiting = [patch for patch in self._patches if patch.module == module.__name__]
        for patch in waiting:
            if isinstance(patch, LoadOnImport):
                self._load(module, patch)
                continue
            with self._lock:
                if not self._active:
                    return
                try:
                    self._apply(module, patch)
                except Exception:
                    report_internal_error(f"patching {patch.module}")

    def _load(self, module: ModuleType, patch: LoadOnImport) -> None:
        """Once per activation. ``load`` runs without the lock: it imports modules (an
        adapter's), and an import in another thread may be waiting for the lock in a hook
        while holding what that import needs."""
        with self._lock:
            if not self._active or patch in self._applied:
                return
            self._applied.add(patch)
        try:
            found = patch.load(module)
        except Exception:
            report_internal_error(f"loading what patches {patch.module}")
            return
        self.add(list(found))

    def _apply(self, module: ModuleType, patch: Patch | OnImport) -> None:
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
_waiting: set[str] = set()  # module names whose dispatcher wrapt holds, not yet run
_waiting_lock = threading.Lock()


def _reset_locks_after_fork() -> None:
    """A parent thread importing a module at fork may have held them: re-create both."""
    global _waiting_lock
    _waiting_lock = threading.Lock()
    if _active_patcher is not None:
        _active_patcher._lock = threading.RLock()


after_fork_in_child(_reset_locks_after_fork)


def _listen_all(patches: list[AnyPatch]) -> None:
    for module_name in dict.fromkeys(patch.module for patch in patches):
        _listen(module_name)


def _listen(module_name: str) -> None:
    with _waiting_lock:
        first = module_name not in _waiting
        _waiting.add(module_name)
    if first:
        wrapt.register_post_import_hook(partial(_on_hook, module_name), module_name)
    else:  # a dispatcher waits already: the module may be loading right now
        module = sys.modules.get(module_name)
        if module is not None:
            _dispatch(module)


def _on_hook(module_name: str, module: ModuleType) -> None:
    """wrapt's call, once: the module is imported (or was already, at registration)."""
    with _waiting_lock:
        _waiting.discard(module_name)
    _dispatch(module)


def _dispatch(module: ModuleType) -> None:
    patcher = _active_patcher
    if patcher is not None:
        patcher._on_import(module)
