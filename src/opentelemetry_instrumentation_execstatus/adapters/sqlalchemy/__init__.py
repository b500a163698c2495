"""Status columns of SQLAlchemy-mapped models: every committed change of status is a transition.

Orchestrators that keep their executions in a database (Tangle, most home-grown control planes)
assign a status column from many code paths. Naming the column once makes every assignment a
transition of the core, with no change to those code paths and no extra query::

    from opentelemetry_instrumentation_execstatus.adapters.sqlalchemy import (
        instrument_status_column,
    )

    instrument_status_column(Job.status, name=Job.name, changed_at=Job.status_changed_at)

One module per job:

- ``column``: registering a column (``instrument_status_column``, ``StatusColumn``): the
  attribute and flush listeners, and the report of each committed change;
- ``transactions``: the per-session transaction buffer: changes held until their commit,
  in order and with their own times, dropped when their transaction or savepoint rolls back;
- ``rows``: reading a row from its loaded state, never through a query: its key, names,
  parent and run id, the canonical status of a value, and the status the database held before
  a change and since when;
- ``adapter``: ``SQLAlchemyAdapter``, and the columns the application declared.

Who reports: no column looks the core up. Each column reports through the adapter it belongs
to, which the instrumentor made with the core it handed to it. A column the application
declares belongs to the ``sqlalchemy`` adapter: declarations outlive ``instrument()`` and
``uninstrument()`` (they may come before or after either), so they are kept in the adapter
module, and the adapter of the current instrumentation becomes their reporter through its
patch, applied when SQLAlchemy is imported and undone by ``uninstrument()``, after which the
columns report nothing; so do they when the ``orchestrators`` option leaves that adapter out.
A preset (the Tangle adapter) makes its own column with itself as reporter, when the
framework's models are imported, and removes it when its patch is undone.

Listeners: a declared column's attribute and flush listeners are installed by its declaration
and removed by ``StatusColumn.remove()``, whatever the instrumentation does meanwhile (a
column without an adapter holds and reports nothing); a preset's column lives as long as its
adapter's patch. The three session listeners are shared by every column, installed with the
first one and removed with the last. So no instrumentation cycle leaves a listener behind.

Importing this package imports no SQLAlchemy (the instrumentor lists its adapter in every
environment): ``instrument_status_column`` and ``StatusColumn`` load the ``column`` module, and
SQLAlchemy, on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from opentelemetry_instrumentation_execstatus.adapters.sqlalchemy.adapter import (
    SQLAlchemyAdapter,
)

if TYPE_CHECKING:
    from opentelemetry_instrumentation_execstatus.adapters.sqlalchemy.column import (
        StatusColumn,
        instrument_status_column,
    )

_IN_COLUMN_MODULE = frozenset({"StatusColumn", "instrument_status_column"})


def __getattr__(name: str) -> Any:
    if name in _IN_COLUMN_MODULE:
        from opentelemetry_instrumentation_execstatus.adapters.sqlalchemy import column

        return getattr(column, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["SQLAlchemyAdapter", "StatusColumn", "instrument_status_column"]
