"""A real SQLite database file per test, the statements sent to it, and instrumented status
columns removed after each test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable

import pytest
from models import Base
from sqlalchemy_database import Database

from opentelemetry_instrumentation_execstatus.adapters.sqlalchemy import (
    StatusColumn,
    instrument_status_column,
)


@pytest.fixture
def database(tmp_path: Path) -> Iterator[Database]:
    database = Database(tmp_path / "executions.db", Base.metadata)
    yield database
    database.engine.dispose()


@pytest.fixture
def columns() -> Iterator[Callable[..., StatusColumn]]:
    """Instrument columns for one test; their listeners are removed afterwards."""
    made: list[StatusColumn] = []

    def _instrument(status: Any, **options: Any) -> StatusColumn:
        made.append(instrument_status_column(status, **options))
        return made[-1]

    yield _instrument
    for column in made:
        column.remove()
