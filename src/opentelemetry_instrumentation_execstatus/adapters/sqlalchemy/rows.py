"""Reading a row: who it is, what status a value stands for, and what the database held before.

Everything is read from the row's loaded state (``InstanceState.dict`` and ``committed_state``),
never through attribute access, which could load an expired value: reading a row costs no
query. Who a row is (key, run id, names, parent) is read at its flush, while the object is
surely alive and loaded. The status a change replaces, and since when, is the database's: the
value loaded before any change of the transaction, and the model's "status changed at" value
as loaded (persisted, so a restart in between changes nothing).

Whatever a row holds, reading it never raises: a column may hold anything (a JSON column's
dict, a pickled array whose ``==`` has no truth value), and a listener that raised would lose
the change and, since the value stays in the row, the row's next change too. So a status the
map cannot look up is ``unknown``, like any unmapped one; a time that cannot be read is absent.
Values are handed to the core as they are, and the core cleans them (timestamps, text; a parent
that cannot be a key is none).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timezone
from decimal import Decimal
from enum import Enum
from typing import Any, Callable, NamedTuple, Optional, Union

from sqlalchemy import inspect
from sqlalchemy.orm.attributes import QueryableAttribute
from sqlalchemy.orm.base import NO_VALUE
from sqlalchemy.orm.state import InstanceState

from opentelemetry_instrumentation_execstatus import clock
from opentelemetry_instrumentation_execstatus.normalize import to_status
from opentelemetry_instrumentation_execstatus.safety import report_internal_error
from opentelemetry_instrumentation_execstatus.semconv import ExecutionStatus

Attribute = Union[QueryableAttribute, str]
"""A mapped attribute (``Job.name``) or its key (``"name"``)."""

Statuses = Union[Mapping[Any, Any], Callable[[Any, Mapping[str, Any]], Any]]
"""Raw value -> canonical status; a callable also gets the row's loaded values."""

ChangedAt = Union[Attribute, Callable[[Mapping[str, Any], Any], Optional[clock.Timestamp]]]
"""Where the previous status's start is stored: a column, or a callable given the row's loaded
values and the previous raw status (for a history kept in a JSON column)."""

RowKey = tuple[str, tuple[Any, ...]]
"""A row among all tables: its base table's name and its primary key's values (the reporting
adapter prefixes its name to make the execution key)."""


class RowFacts(NamedTuple):
    """Who a row is: its key, the names its spans carry, and its parent's key."""

    row: RowKey
    run_id: Any
    name: Any
    pipeline: Any
    parent: RowKey | None


class StoredStatus(NamedTuple):
    """The status the database holds for a row before a change, and since when (None when
    the row cannot say)."""

    status: ExecutionStatus | None
    since: clock.Timestamp | None


NOT_STORED = StoredStatus(None, None)


class RowReader:
    """Reads the rows of one status column: built once, when the column is instrumented."""

    __slots__ = (
        "_changed_at",
        "_changed_at_key",
        "_id_key",
        "_name_key",
        "_parent_key",
        "_parent_table",
        "_pipeline_key",
        "_primary_key",
        "_single_key",
        "_status_key",
        "_statuses",
        "_table",
        "attribute",
    )

    def __init__(
        self,
        status: QueryableAttribute,
        *,
        id: Attribute | None = None,
        name: Attribute | None = None,
        pipeline: Attribute | None = None,
        parent: Attribute | None = None,
        changed_at: ChangedAt | None = None,
        statuses: Statuses | None = None,
    ) -> None:
        self.attribute = status
        self._status_key: str = status.key
        self._id_key = _key_of(id) if id is not None else None
        self._name_key = _key_of(name) if name is not None else None
        self._pipeline_key = _key_of(pipeline) if pipeline is not None else None
        self._parent_key = _key_of(parent) if parent is not None else None
        # Where the previous status's start is read: a function's answer, or a column's value.
        self._changed_at: Callable[[Mapping[str, Any], Any], Any] | None = None
        self._changed_at_key: str | None = None
        if callable(changed_at) and not isinstance(changed_at, QueryableAttribute):
            self._changed_at = changed_at
        elif changed_at is not None:
            self._changed_at_key = _key_of(changed_at)
        self._statuses = statuses
        mapper = inspect(status.class_)
        # The base table names the row even under joined inheritance, where a subclass row
        # spans two tables but keeps the base's primary key; foreign keys point to it too.
        self._table: str = mapper.base_mapper.local_table.name
        self._primary_key = tuple(
            mapper.get_property_by_column(column).key for column in mapper.primary_key
        )
        # The one primary key column of most tables (None: a composite key).
        self._single_key = self._primary_key[0] if len(self._primary_key) == 1 else None
        # The parent's table: the one the parent column's foreign key points to, else this one.
        parent_column = mapper.columns.get(self._parent_key) if self._parent_key else None
        foreign_keys = getattr(parent_column, "foreign_keys", ())
        self._parent_table = next((fk.column.table.name for fk in foreign_keys), self._table)

    def facts(self, loaded: Mapping[str, Any]) -> RowFacts:
        """Who the row is, from its loaded values (read at flush)."""
        single = self._single_key
        if single is not None:
            identity: tuple[Any, ...] = (loaded.get(single),)
        else:
            identity = tuple(loaded.get(key) for key in self._primary_key)
        if self._id_key is not None:
            run_id = loaded.get(self._id_key)
        else:
            run_id = identity[0] if single is not None else "/".join(map(str, identity))
        # A parent value that cannot be a key (a JSON column's list) is no parent: the core
        # keeps the row's execution, without one.
        parent = loaded.get(self._parent_key) if self._parent_key else None
        return RowFacts(
            row=(self._table, identity),
            run_id=run_id,
            name=loaded.get(self._name_key) if self._name_key else None,
            pipeline=loaded.get(self._pipeline_key) if self._pipeline_key else None,
            parent=None if parent is None else (self._parent_table, (parent,)),
        )

    def status(self, raw: Any, loaded: Mapping[str, Any]) -> ExecutionStatus:
        """``raw``'s canonical status. Total, as the rule it applies: anything unmapped is
        ``unknown``, including a value the map cannot look up (unhashable, as a JSON column's
        dict or list; a ``__hash__`` or ``==`` that raises) and whatever a status function
        raises (reported once: that is a bug of the function, not a status)."""
        statuses = self._statuses
        try:
            if statuses is None:
                return to_status(raw)
            if callable(statuses):
                return to_status(statuses(raw, loaded))
            for candidate in (raw, raw.value if isinstance(raw, Enum) else None):
                if candidate is not None and candidate in statuses:
                    return to_status(statuses[candidate])
        except Exception:
            if callable(statuses):
                report_internal_error(f"the status function of {self.attribute}")
        return ExecutionStatus.UNKNOWN

    def stored(self, state: InstanceState, old: Any, loaded: Mapping[str, Any]) -> StoredStatus:
        """What the database holds before a change that replaces ``old``: the value loaded,
        or the one loaded before an uncommitted change (a session closed without commit
        leaves its objects modified), and when it began. ``loaded`` is the row's loaded
        values (``state.dict``)."""
        committed = state.committed_state
        stored = committed.get(self._status_key, old)
        if stored is NO_VALUE or stored is None:
            return NOT_STORED
        return StoredStatus(
            self.status(stored, loaded), self._stored_since(committed, loaded, stored)
        )

    def _stored_since(
        self, committed: Mapping[str, Any], loaded: Mapping[str, Any], old: Any
    ) -> clock.Timestamp | None:
        """When the status being replaced began, as stored in the row (never loaded for it).
        None when the row cannot say, as when a ``changed_at`` function raises (reported once):
        the core then measures from its own record, and the change is kept."""
        changed_at = self._changed_at
        if changed_at is not None:
            try:
                value = changed_at(loaded, old)
            except Exception:
                report_internal_error(f"the changed_at function of {self.attribute}")
                return None
        else:
            key = self._changed_at_key
            if key is None:
                return None
            # The value as loaded from the database, even if this transaction already set it anew.
            value = committed.get(key, loaded.get(key))
        return as_timestamp(value)


def as_timestamp(value: Any) -> clock.Timestamp | None:
    """A stored time: datetimes without a zone are UTC, as databases store them."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return None
    if isinstance(value, datetime):
        return value if value.tzinfo is not None else value.replace(tzinfo=timezone.utc)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value
    if isinstance(value, Decimal):  # epoch seconds from a Numeric column
        try:
            return float(value)
        except ValueError:  # a signalling NaN
            return None
    return None


def _key_of(attribute: Attribute) -> str:
    return attribute if isinstance(attribute, str) else attribute.key
