"""A real SQLite database file per test, the statements sent to it, and instrumented status
columns removed after each test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable

import pytest
from models import Base
from sqlalchemy import Engine, create_engine, event
from tangle_like import TangleBase

from opentelemetry_instrumentation_execstatus.status_columns import (
    StatusColumn,
    instrument_status_column,
)


class Database:
    def __init__(self, path: Path) -> None:
        self.url = f"sqlite:///{path}"
        self.engine: Engine = create_engine(self.url)
        self.statements: list[str] = []
        event.listen(self.engine, "before_cursor_execute", self._count)
        Base.metadata.create_all(self.engine)
        TangleBase.metadata.create_all(self.engine)
        self.statements.clear()

    def _count(self, _conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        self.statements.append(" ".join(statement.split()))


@pytest.fixture
def database(tmp_path: Path) -> Iterator[Database]:
    database = Database(tmp_path / "executions.db")
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
