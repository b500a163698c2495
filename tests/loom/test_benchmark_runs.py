"""benchmarks/bench_loom.py runs on the real loom and writes the rows the report reads.

A ``--quick`` run: its timings are noise, so only the results' shape is checked (every row,
its subject, baseline and unit, with usable numbers), never a ratio's value.
"""

from __future__ import annotations

from pathlib import Path

from support import run_quick_benchmark

PER_STEP = "per step: instrumented vs bare"
AGAINST_PEER = "peers: added per step vs loom's native tracer and the SDK calls we make beyond it"
EXPECTED = {
    (PER_STEP, "execstatus, SDK", "bare", "step"),
    (PER_STEP, "execstatus, no SDK", "bare", "step"),
    (PER_STEP, "wrapt pass-through", "bare", "step"),
    (
        "per step: added per step vs the same SDK calls",
        "execstatus, SDK",
        "same SDK calls as execstatus, SDK, by hand",
        "step, added",
    ),
    (
        "per step: no SDK, added per step vs a wrapt pass-through",
        "execstatus, no SDK",
        "wrapt pass-through",
        "step, added",
    ),
    ("peers: loom", "loom native tracer", "bare", "step"),
    (
        "peers: loom native tracer, added per step vs the same SDK calls",
        "loom native tracer",
        "same SDK calls as loom native tracer, by hand",
        "step, added",
    ),
    (
        "peers: added per step vs loom's native tracer",
        "execstatus, SDK",
        "loom native tracer",
        "step, added",
    ),
    (
        AGAINST_PEER,
        "execstatus, SDK",
        "loom native tracer + SDK cost of what we emit beyond it",
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
    goals = {key[0]: row["goal"] for key, row in rows.items() if row["goal"] is not None}
    assert goals == {
        "per step: added per step vs the same SDK calls": 1.10,
        "per step: no SDK, added per step vs a wrapt pass-through": 2.0,
        AGAINST_PEER: 1.10,
    }
    # What each emits per step, as each floor recorded it: a span per step (and the run's and
    # the process's, spread over the steps) for both; histogram records for execstatus only.
    (against_peer,) = [row for key, row in rows.items() if key[0] == AGAINST_PEER]
    ours, theirs = against_peer["subject_calls"], against_peer["baseline_calls"]
    assert ours["span"] == theirs["span"] == 1.1
    assert ours["histogram record"] > 0 and theirs["histogram record"] == 0
    facts = document["facts"]
    assert facts["equal floor"].startswith("SDK calls per unit, execstatus, SDK: 1.1 spans")
    assert facts["equal floor, peer"].startswith("SDK calls per unit, loom native tracer: 1.1 span")
    assert facts["pass-through: patched calls per step"] == "3.3"
    assert document["versions"]["loom-kernel"].startswith("9.")
