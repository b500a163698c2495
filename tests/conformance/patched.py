"""What an adapter patches: the modules its patches name, and their attributes by identity.

Every check of patching compares objects with ``is``: a module's globals and the attributes of
each class it defines, taken before and compared after. A wrapper left behind, a descriptor
added and never removed, or an original replaced by an equal copy all show as a change.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

from opentelemetry_instrumentation_execstatus.adapters import Adapter
from opentelemetry_instrumentation_execstatus.config import ExecStatusConfig
from opentelemetry_instrumentation_execstatus.patching import AnyPatch, Patch
from opentelemetry_instrumentation_execstatus.telemetry import Telemetry


def _patches(adapter: type[Adapter]) -> list[AnyPatch]:
    """What an instance of ``adapter`` patches (made with a core of its own, never used)."""
    return adapter(Telemetry.create(ExecStatusConfig())).patches()


def wraps_attributes(adapter: type[Adapter]) -> bool:
    """Whether ``adapter`` wraps attributes (``Patch``): then ``instrument()`` must replace
    some. An adapter that only hooks imports (``OnImport``) may change no attribute at all
    (it listens to the framework's events)."""
    return any(isinstance(patch, Patch) for patch in _patches(adapter))


def patched_modules(adapter: type[Adapter]) -> list[ModuleType]:
    """The modules named by ``adapter.patches()``, imported.

    A module this version of the framework does not have is left out (nothing of it can be
    patched), but at least one must exist: an adapter enabled here patches something here.
    """
    names = list(dict.fromkeys(patch.module for patch in _patches(adapter)))
    modules = []
    for name in names:
        try:
            modules.append(importlib.import_module(name))
        except ModuleNotFoundError:
            continue
    assert modules, f"{adapter.name}: none of the modules it patches exists: {names}"
    return modules


class Attributes:
    """The attributes of some modules and of the classes they define, as they are now."""

    def __init__(self, modules: list[ModuleType]) -> None:
        self._owners: dict[str, tuple[Any, dict[str, Any]]] = {}
        for module in modules:
            self._owners[module.__name__] = (module, dict(vars(module)))
            for value in vars(module).values():
                if isinstance(value, type) and value.__module__ == module.__name__:
                    where = f"{module.__name__}.{value.__qualname__}"
                    self._owners[where] = (value, dict(vars(value)))

    def changes(self) -> list[str]:
        """What differs from then: each attribute added, removed or no longer the same object."""
        found = []
        for where, (owner, then) in self._owners.items():
            now = vars(owner)
            found += [f"{where}.{name} added" for name in now.keys() - then.keys()]
            found += [f"{where}.{name} removed" for name in then.keys() - now.keys()]
            found += [
                f"{where}.{name} replaced"
                for name, value in then.items()
                if name in now and now[name] is not value
            ]
        return sorted(found)
