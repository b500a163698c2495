"""A real SQLite database file and the statements sent to it: what the SQLAlchemy status
column tests (``tests/sqlalchemy``) and the Tangle preset tests (``tests/tangle``) run on."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Engine, MetaData, create_engine, event


class Database:
    """A SQLite file with the tables of ``metadata``; ``statements`` records every statement
    sent to it after they were created (SQLAlchemy's ``before_cursor_execute`` event)."""

    def __init__(self, path: Path, *metadata: MetaData) -> None:
        self.url = f"sqlite:///{path}"
        self.engine: Engine = create_engine(self.url)
        self.statements: list[str] = []
        event.listen(self.engine, "before_cursor_execute", self._count)
        for tables in metadata:
            tables.create_all(self.engine)
        self.statements.clear()

    def _count(self, _conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        self.statements.append(" ".join(statement.split()))
