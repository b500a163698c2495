"""Frameworks the suite brings itself: packages shaped like an unpublished framework.

Tangle is not on the package registries; ``tests/tangle`` holds a package shaped like it,
under its own module name. For each check of such an adapter, and only then, the package is put
on the path, and forgotten afterwards with everything imported from it, so that no other test
sees the framework installed (and each check imports it afresh, as a process would). Such an
adapter is checked wherever what the package itself imports is installed.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path


def is_installed(module_name: str) -> bool:
    """Whether ``module_name`` is importable as the framework (the adapters' own rule: a
    namespace package named like it, such as ``tests/sqlalchemy``, is not)."""
    spec = importlib.util.find_spec(module_name)
    return spec is not None and spec.origin is not None


TESTS = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class ShapedFramework:
    """A package shaped like a framework, and what it needs to be imported."""

    directory: Path
    """What goes on the path: the directory holding the shaped package."""

    package: str
    """The framework's top-level module, as the adapter knows it."""

    needs: tuple[str, ...]
    """What the shaped package imports (top-level modules)."""

    def can_run(self) -> bool:
        """Whether the shaped package can be imported here."""
        return all(is_installed(module) for module in self.needs)

    @contextmanager
    def on_path(self) -> Iterator[None]:
        """The package importable for the block, and every module of it forgotten after."""
        sys.path.insert(0, str(self.directory))
        try:
            yield
        finally:
            sys.path.remove(str(self.directory))
            for name in [name for name in sys.modules if name.split(".")[0] == self.package]:
                del sys.modules[name]


SHAPED_FRAMEWORKS: Mapping[str, ShapedFramework] = {
    "tangle": ShapedFramework(
        TESTS / "tangle" / "tangle_shaped", "cloud_pipelines_backend", needs=("sqlalchemy",)
    ),
}
"""Adapter name -> the framework the suite brings for it."""
