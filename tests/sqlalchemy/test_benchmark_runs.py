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
EXPECTED = {
    (PER_TRANSITION, "execstatus, SDK", "bare", "transition"),
    (PER_TRANSITION, "execstatus, no SDK", "bare", "transition"),
    *(
        row
        for peers in (ALL_SEEN, TANGLE_ORDER)
        for row in (
            (peers, "Tangle native hook", "bare", "transition"),
            (peers, "execstatus, SDK", "bare", "transition"),
            (
                f"{peers}: added per transition",
                "execstatus, SDK",
                "Tangle native hook",
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
    assert document["versions"]["SQLAlchemy"].startswith("2.")
