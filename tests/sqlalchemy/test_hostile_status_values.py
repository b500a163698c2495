"""Hostile values in the columns a status column reads: whatever one row holds, it affects only
that change of that row, never its next change nor other rows, never the application's commit,
and ``execution.active`` is back to 0 in every status once every row has reached a final one.

The values live in real columns (a JSON column; ``Oddity``'s pickled columns, which hold any
Python value) of a real SQLite database, so the instrumentation meets them as an application's
rows give them: assigned, loaded by a later session, or replaced blind on an expired instance.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from enum import Enum
from typing import Any, Callable, NamedTuple

import pytest
from models import Document, Oddity
from sqlalchemy.orm import Session
from sqlalchemy_database import Database
from support import Telemetry

from opentelemetry_instrumentation_execstatus import telemetry
from opentelemetry_instrumentation_execstatus.adapters.sqlalchemy import StatusColumn
from opentelemetry_instrumentation_execstatus.adapters.sqlalchemy.rows import as_timestamp

MAP = {"QUEUED": "queued", "RUNNING": "running", "SUCCEEDED": "succeeded"}
LIFE = ("QUEUED", "RUNNING", "SUCCEEDED")
VICTIM, BYSTANDER = "victim", "bystander"
SURROGATE = os.fsdecode(b"job-\xff")  # a file name's undecodable byte: a lone surrogate
NOW = object()  # stands for the time of the assignment (hostile values are never compared)


def _events(span: Any) -> list[tuple[str | None, str]]:
    return [
        (event.attributes.get("execution.status.from"), event.attributes["execution.status.to"])
        for event in span.events
    ]


def _assert_nothing_in_flight(otel: Telemetry) -> None:
    live = telemetry.current()
    assert live is not None and live.tracker.in_flight_count() == 0, "rows still in flight"
    assert set(otel.sums("execution.active").values()) == {0}, otel.sums("execution.active")


# -- the known defect: a JSON column's dict or list, under a status map ---------------------------


@pytest.mark.parametrize("raw", [{"phase": "doing"}, ["doing"]], ids=["dict", "list"])
def test_a_json_status_the_map_cannot_look_up_is_unknown_and_the_next_change_counts(
    instrument: Callable[..., Telemetry],
    database: Database,
    columns: Callable[..., StatusColumn],
    raw: Any,
) -> None:
    """An unhashable raw status cannot be looked up in the map: it is ``unknown``, like any
    unmapped value, and the change after it, which replaces it, is measured as usual."""
    columns(Document.status, statuses={"todo": "queued", "doing": "running", "done": "succeeded"})
    otel = instrument()
    with Session(database.engine) as session:
        session.add(Document(id=1, status="todo"))
        session.commit()
    for status in ("doing", raw, "done"):  # a session each: the replaced value is loaded
        with Session(database.engine) as session:
            session.get(Document, 1).status = status
            session.commit()

    assert otel.transition_counts() == {
        ("queued", "running"): 1,
        ("running", "unknown"): 1,
        ("unknown", "succeeded"): 1,
    }
    span = otel.span("step")
    assert span.attributes["execution.status"] == "succeeded"
    assert _events(span) == [
        (None, "queued"),
        ("queued", "running"),
        ("running", "unknown"),
        ("unknown", "succeeded"),
    ]
    _assert_nothing_in_flight(otel)


# -- hostile values, each used once in a row's life ------------------------------------------------


class Ambiguous:
    """What a numpy array's ``==`` returns: a value without a truth value."""

    def __bool__(self) -> bool:
        raise ValueError("the truth value of an array with more than one element is ambiguous")


class ArrayLike:
    """A numpy array's manners: unhashable, and ``==`` compares element-wise."""

    __hash__ = None  # type: ignore[assignment]

    def __init__(self, *items: Any) -> None:
        self.items = list(items)

    def __eq__(self, other: object) -> Any:
        return Ambiguous()


class RaisingEq:
    """Hashes like a mapped status, so a map lookup reaches its ``==``, which raises."""

    def __hash__(self) -> int:
        return hash("QUEUED")

    def __eq__(self, other: object) -> bool:
        raise RuntimeError("== refuses")


class RaisingHash:
    def __hash__(self) -> int:
        raise RuntimeError("__hash__ refuses")


class RaisingStr:
    def __str__(self) -> str:
        raise RuntimeError("__str__ refuses")

    __repr__ = __str__


class Sneaky(str):
    """A status function's garbage: a string that cannot be looked up."""

    def __hash__(self) -> int:
        raise RuntimeError("__hash__ refuses")


class Listed(Enum):
    """An enum whose value is unhashable: its value cannot be looked up either."""

    RUNNING = ["RUNNING"]  # noqa: RUF012


HOSTILE = {
    "dict": {"phase": "RUNNING"},
    "list": ["RUNNING"],
    "array": ArrayLike(1, 2),
    "raising-eq": RaisingEq(),
    "raising-hash": RaisingHash(),
    "raising-str": RaisingStr(),
    "unhashable-enum-value": Listed.RUNNING,
    "nan": math.nan,
    "huge-int": 10**5000,  # its str() raises: more than 4,300 digits
    "lone-surrogate": SURROGATE,
    "bytes": b"job-\xff",
    "year-1": datetime(1, 1, 1),
    "year-9999": datetime(9999, 12, 31, 23, 59, 59),
}
"""Hostile values for any column."""

HOSTILE_TIMES = {
    "epoch-milliseconds": 1.7e12,
    "negative-epoch": -86_400.0,
    "infinite": math.inf,
    "far-future-epoch": 10**30,
    "iso-with-surrogate": "2024-01-01T00:00:00" + SURROGATE[-1],
    "year-1-east-of-utc": datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=1))),
    "true": True,
}
"""And what only a "changed at" column would hold."""


def _lookup(raw: Any, _loaded: Any) -> Any:
    """A status function as users write it: it raises for a value the dict cannot hash."""
    return MAP.get(raw)


def _exploding(raw: Any, loaded: Any) -> Any:
    if raw == "EXPLODE":
        raise RuntimeError("a status function's bug")
    return _lookup(raw, loaded)


def _returning(garbage: Any) -> Callable[[Any, Any], Any]:
    def status(raw: Any, loaded: Any) -> Any:
        return garbage if raw == "GARBAGE" else _lookup(raw, loaded)

    return status


def _time_for(victim_value: Callable[[], Any]) -> Callable[[Any, Any], Any]:
    """A ``changed_at`` function: the column's value, but ``victim_value()`` for the victim
    leaving its first status."""

    def changed_at(loaded: Any, previous: Any) -> Any:
        if loaded.get("name") == VICTIM and previous == "QUEUED":
            return victim_value()
        return loaded.get("changed_at")

    return changed_at


def _raise() -> Any:
    raise RuntimeError("a changed_at function's bug")


class Case(NamedTuple):
    """One hostile input in the victim's life: ``value`` in ``column`` (the status once in
    mid-life; any other column from the row's creation on, until its next change replaces it),
    or a hostile status or time function (``column`` None)."""

    column: str | None
    value: Any = None
    statuses: Any = MAP
    changed_at: Any = "changed_at"


def _status_cases() -> Iterator[Any]:
    for label, value in HOSTILE.items():
        for kind, statuses in (("map", MAP), ("default", None), ("function", _lookup)):
            yield pytest.param(Case("status", value, statuses), id=f"{kind}:status={label}")
    yield pytest.param(Case("status", "EXPLODE", _exploding), id="function:raises")
    for label, garbage in {
        "object": object(),
        "list": ["running"],
        "unhashable-str": Sneaky("running"),
        "raising-str": RaisingStr(),
        "nan": math.nan,
    }.items():
        yield pytest.param(Case("status", "GARBAGE", _returning(garbage)), id=f"function:{label}")


def _field_cases() -> Iterator[Any]:
    """Hostile values in the other columns, and hostile ``changed_at`` functions."""
    for column in ("label", "name", "pipeline", "parent", "changed_at"):
        values = {**HOSTILE, **HOSTILE_TIMES} if column == "changed_at" else HOSTILE
        for label, value in values.items():
            yield pytest.param(Case(column, value), id=f"{column}={label}")
    for label, value in {"raises": _raise, "garbage": RaisingStr, "nan": lambda: math.nan}.items():
        yield pytest.param(
            Case(None, changed_at=_time_for(value)), id=f"changed_at-function:{label}"
        )


def _steps(case: Case, name: str) -> list[dict[str, Any]]:
    """A row's assignments, commit after commit: queued, running, succeeded. The victim's
    hostile status comes once between queued and running; its hostile column value is there
    from its creation and replaced by its next change."""
    normal = {"label": f"{name}-run", "name": name, "pipeline": "nightly", "parent": None}
    if name == BYSTANDER:
        steps = [{"status": status} for status in LIFE]
        if case.column == "status":
            steps.insert(2, {})  # the victim's extra change
    elif case.column == "status":
        steps = [{"status": status} for status in (LIFE[0], case.value, *LIFE[1:])]
    else:
        steps = [{"status": status} for status in LIFE]
        if case.column is not None:
            steps[0][case.column] = case.value
            steps[1][case.column] = normal.get(case.column, NOW)
    steps[0] = {**normal, **steps[0]}
    return steps


def _assign(row: Oddity, step: dict[str, Any]) -> None:
    """An orchestrator's transition helper: the status, and when it changed."""
    if "status" in step:
        row.changed_at = datetime.now(timezone.utc)
    for key, value in step.items():
        setattr(row, key, datetime.now(timezone.utc) if value is NOW else value)


def _live(database: Database, case: Case, mode: str) -> None:
    """The victim's and the bystander's lives, step by step, in the same commits.

    ``sessions``: a session per commit, so each change replaces a loaded value; ``expired``:
    one session, so each change is assigned blind to an instance its last commit expired;
    ``transaction``: as ``sessions``, with the victim's middle changes in one transaction (a
    flush between them), so a change replaces the transaction's own hostile value.
    """
    victim, bystander = _steps(case, VICTIM), _steps(case, BYSTANDER)
    commits = [[index] for index in range(len(victim))]
    if mode == "transaction":
        commits = [commits[0], [index for [index] in commits[1:-1]], commits[-1]]
    session = Session(database.engine)
    rows = [Oddity(id=1), Oddity(id=2)]
    session.add_all(rows)
    for number, indices in enumerate(commits):
        if number and mode != "expired":
            session.close()
            session = Session(database.engine)
            rows = [session.get(Oddity, 1), session.get(Oddity, 2)]
        for index in indices:
            _assign(rows[0], victim[index])
            _assign(rows[1], bystander[index])
            session.flush()
        session.commit()
    session.close()


def _assert_lived(otel: Telemetry, database: Database, case: Case) -> None:
    with Session(database.engine) as session:  # the application's commits all went through
        assert [session.get(Oddity, n).status for n in (1, 2)] == ["SUCCEEDED", "SUCCEEDED"]
    life = [(None, "queued"), ("queued", "running"), ("running", "succeeded")]
    expected = life
    if case.column == "status":
        expected = [(None, "queued"), ("queued", "unknown"), ("unknown", "running"), life[-1]]

    spans = otel.spans()
    bystanders = [span for span in spans if span.name == BYSTANDER]
    victims = [span for span in spans if span.name != BYSTANDER]
    assert len(bystanders) == 1 and len(victims) == 1, [span.name for span in spans]
    assert _events(bystanders[0]) == life
    assert _events(victims[0]) == expected
    assert victims[0].attributes["execution.status"] == "succeeded"

    bystander_counts = otel.transition_counts(cicd_pipeline_task_name=BYSTANDER)
    assert bystander_counts == {step: 1 for step in life[1:]}
    victim_counts = otel.transition_counts()
    for step, count in bystander_counts.items():
        victim_counts[step] -= count
    assert {step: count for step, count in victim_counts.items() if count} == {
        step: 1 for step in expected[1:]
    }
    _assert_nothing_in_flight(otel)


def _instrument_oddities(columns: Callable[..., StatusColumn], case: Case) -> None:
    columns(
        Oddity.status,
        id=Oddity.label,
        name=Oddity.name,
        pipeline=Oddity.pipeline,
        parent=Oddity.parent,
        changed_at=case.changed_at,
        statuses=case.statuses,
    )


@pytest.mark.parametrize("mode", ["sessions", "expired", "transaction"])
@pytest.mark.parametrize("case", list(_status_cases()))
def test_a_hostile_status_is_unknown_and_only_for_its_own_change(
    instrument: Callable[..., Telemetry],
    database: Database,
    columns: Callable[..., StatusColumn],
    case: Case,
    mode: str,
) -> None:
    _instrument_oddities(columns, case)
    otel = instrument()
    _live(database, case, mode)
    _assert_lived(otel, database, case)


@pytest.mark.parametrize("case", list(_field_cases()))
def test_a_hostile_value_in_another_column_affects_no_change(
    instrument: Callable[..., Telemetry],
    database: Database,
    columns: Callable[..., StatusColumn],
    case: Case,
) -> None:
    """The run id, names and parent are read at the row's first flush; the time of the
    last change when the next change replaces the status (the change it measures)."""
    _instrument_oddities(columns, case)
    otel = instrument()
    _live(database, case, "sessions")
    _assert_lived(otel, database, case)


def _texts(otel: Telemetry) -> Iterator[str]:
    """Every string the spans and metric points carry."""
    for span in otel.spans():
        yield span.name
        for attributes in (span.attributes, *(event.attributes for event in span.events)):
            yield from (value for value in attributes.values() if isinstance(value, str))
    for name in ("execution.status_transition.duration", "execution.active"):
        for point in otel.points(name):
            yield from (value for value in point.attributes.values() if isinstance(value, str))


def _assert_exportable(otel: Telemetry) -> None:
    """What OTLP can encode: UTF-8 text, and times as unsigned 64-bit epoch nanoseconds (a
    span that is neither fails the export of its whole batch)."""
    for text in _texts(otel):
        text.encode("utf-8")  # raises on a lone surrogate
    for span in otel.spans():
        assert 0 <= span.start_time <= span.end_time < 2**64, (span.name, span.start_time)
        assert all(span.start_time <= event.timestamp <= span.end_time for event in span.events)


@pytest.mark.parametrize("case", list(_field_cases()))
def test_a_hostile_value_in_another_column_leaves_only_exportable_telemetry(
    instrument: Callable[..., Telemetry],
    database: Database,
    columns: Callable[..., StatusColumn],
    case: Case,
) -> None:
    """The values are handed to the core as the row holds them; the core cleans them."""
    _instrument_oddities(columns, case)
    otel = instrument()
    _live(database, case, "sessions")
    _assert_exportable(otel)


@pytest.mark.parametrize(
    ("stored", "expected"),
    [
        (Decimal("1764547200.25"), 1764547200.25),  # epoch seconds from a Numeric column
        (Decimal("sNaN"), None),
        ("not a time", None),
        (True, None),
    ],
)
def test_stored_times_are_read_from_the_column_types_databases_give(stored, expected):
    assert as_timestamp(stored) == expected
