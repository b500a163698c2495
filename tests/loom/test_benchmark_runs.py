"""benchmarks/bench_loom.py runs on the real loom and writes the rows the report reads.

A ``--quick`` run: its timings are noise, so only the results' shape is checked (every row,
its subject, baseline and unit, with usable numbers), never a ratio's value.
"""

from __future__ import annotations

from pathlib import Path

from support import run_quick_benchmark

EXPECTED = {
    ("per step: instrumented vs bare", "execstatus, SDK", "bare", "step"),
    ("per step: instrumented vs bare", "execstatus, no SDK", "bare", "step"),
    ("peers: loom", "loom native tracer", "bare", "step"),
    ("peers: loom", "execstatus, SDK", "bare", "step"),
    (
        "peers: added per step vs loom's native tracer",
        "execstatus, SDK",
        "loom native tracer",
        "step, added",
    ),
}


def test_quick_run_writes_every_row(tmp_path: Path) -> None:
    document = run_quick_benchmark("loom", tmp_path)
    rows = {
        (row["benchmark"], row["subject"], row["baseline"], row["unit"]): row
        for row in document["rows"]
    }
    assert set(rows) == EXPECTED
    assert len(document["rows"]) == len(EXPECTED)
    facts = document["facts"]
    assert facts["SDK calls per step, execstatus, SDK"].startswith("1.10 spans")
    assert facts["SDK calls per step, loom native tracer"].startswith("1.10 spans")
    assert "histogram" not in facts["SDK calls per step, loom native tracer"]
    assert document["versions"]["loom-kernel"].startswith("9.")
