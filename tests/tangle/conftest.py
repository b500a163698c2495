"""Tangle's package, as shaped here (Tangle is not on the package registries), importable under
its own name for one test, and a real SQLite database file with its tables.

The instrumentation finds the package and patches it as it would Tangle's: imported before
``instrument()`` here (afresh for each test, and forgotten afterwards, so that no other test
sees a Tangle installed), after it in the orchestrator process of ``test_tangle_preset``.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
from sqlalchemy_database import Database

TANGLE_SHAPED = Path(__file__).parent / "tangle_shaped"
TANGLE_PACKAGE = "cloud_pipelines_backend"


@pytest.fixture
def tangle_path(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """``cloud_pipelines_backend`` on this process's path and on its children's."""
    monkeypatch.syspath_prepend(str(TANGLE_SHAPED))
    inherited = os.environ.get("PYTHONPATH")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(TANGLE_SHAPED), inherited])))
    yield TANGLE_SHAPED
    for name in [name for name in sys.modules if name.split(".")[0] == TANGLE_PACKAGE]:
        del sys.modules[name]


@pytest.fixture
def models(tangle_path: Path) -> ModuleType:
    """``cloud_pipelines_backend.backend_types_sql``: the execution nodes."""
    return importlib.import_module(f"{TANGLE_PACKAGE}.backend_types_sql")


@pytest.fixture
def launchers(tangle_path: Path) -> ModuleType:
    """``cloud_pipelines_backend.launchers.local_docker_launchers``."""
    return importlib.import_module(f"{TANGLE_PACKAGE}.launchers.local_docker_launchers")


@pytest.fixture
def database(tmp_path: Path, models: ModuleType) -> Iterator[Database]:
    database = Database(tmp_path / "executions.db", models.TangleBase.metadata)
    yield database
    database.engine.dispose()
