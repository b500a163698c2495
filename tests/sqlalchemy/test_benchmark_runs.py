"""benchmarks/bench_sqlalchemy.py runs on real SQLAlchemy and writes the rows the report reads.

A ``--quick`` run: its timings are noise, so only the results' shape is checked (every row,
its subject, baseline and unit, with usable numbers), never a ratio's value. What each case
emitted per node is checked exactly by the script itself; here, that it was reported.
"""

from __future__ import annotations

from pathlib import Path

from support import run_quick_benchmark

PER_TRANSITION = "per transition: instrumented vs bare"
ALL_SEEN = "peers: Tangle, every transition seen"
TANGLE_ORDER = "peers: Tangle, as its orchestrator commits"
OURS, NO_SDK, NO_OP = "execstatus, SDK", "execstatus, no SDK", "no-op listeners on the same events"
TANGLE = "Tangle native hook"
EXPECTED = {
    (PER_TRANSITION, OURS, "bare", "transition"),
    (PER_TRANSITION, NO_SDK, "bare", "transition"),
    (PER_TRANSITION, NO_OP, "bare", "transition"),
    (
        "per transition: added per transition vs the same SDK calls",
        OURS,
        f"same SDK calls as {OURS}, by hand",
        "transition, added",
    ),
    (
        "per transition: no SDK, added per transition vs no-op listeners",
        NO_SDK,
        NO_OP,
        "transition, added",
    ),
    *(
        row
        for peers in (ALL_SEEN, TANGLE_ORDER)
        for row in (
            (peers, TANGLE, "bare", "transition"),
            (peers, OURS, "bare", "transition"),
            (f"{peers}: added per transition", OURS, TANGLE, "transition, added"),
            (
                f"{peers}: added per transition vs Tangle's plus our extra SDK calls",
                OURS,
                f"{TANGLE} + SDK cost of what we emit beyond it",
                "transition, added",
            ),
        )
    ),
}


def test_quick_run_writes_every_row(tmp_path: Path) -> None:
    document = run_quick_benchmark("sqlalchemy", tmp_path)
    rows = {
        (row["benchmark"], row["subject"], row["baseline"], row["unit"]): row
        for row in document["rows"]
    }
    assert set(rows) == EXPECTED
    assert len(document["rows"]) == len(EXPECTED)
    facts = document["facts"]
    # Tangle's hook misses RUNNING -> SUCCEEDED when the success is autoflushed before commit.
    assert facts[f"{TANGLE_ORDER}: Tangle native hook emitted"] == (
        "per node: spans 0, histogram samples 2"
    )
    assert facts[f"{ALL_SEEN}: Tangle native hook emitted"] == (
        "per node: spans 5, histogram samples 3"
    )
    for peers in (ALL_SEEN, TANGLE_ORDER):
        assert facts[f"{peers}: execstatus, SDK emitted"] == (
            "per node: spans 1, histogram samples 3"
        )
        # Each equal floor says what it makes: the same calls as its case, counted.
        assert facts[f"{peers}: equal floor, ours"].startswith(f"SDK calls per unit, {OURS}: ")
        assert facts[f"{peers}: equal floor, Tangle's"].startswith(
            f"SDK calls per unit, {TANGLE}: "
        )
    # The no-op listeners stand for the preset's: one on each of its events.
    assert facts[f"per transition: {NO_OP}"].startswith("one on each of the preset's 6 events: ")
    assert document["versions"]["SQLAlchemy"].startswith("2.")
