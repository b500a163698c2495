"""benchmarks/bench_loom.py runs on the real loom and writes the rows the report reads.

A ``--quick`` run: its timings are noise, so only the results' shape is checked (every row,
its subject, baseline and unit, with usable numbers), never a ratio's value.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

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
    completed = subprocess.run(
        [sys.executable, "benchmarks/bench_loom.py", "--quick", "--out", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr

    document = json.loads((tmp_path / "loom.json").read_text())
    assert document["suite"] == "loom"
    rows = {
        (row["benchmark"], row["subject"], row["baseline"], row["unit"]): row
        for row in document["rows"]
    }
    assert set(rows) == EXPECTED
    assert len(document["rows"]) == len(EXPECTED)
    for key, row in rows.items():
        if key[3].endswith(", added"):
            # Microseconds each adds over bare: ours is well above noise; the ratio is finite
            # whenever the peer's added cost came out positive in so short a run.
            assert math.isfinite(row["subject_us"]) and row["subject_us"] > 0, row
            assert math.isfinite(row["baseline_us"]), row
            assert row["baseline_us"] <= 0 or (math.isfinite(row["ratio"]) and row["ratio"] > 0)
        else:
            for field in ("ratio", "subject_us", "baseline_us"):
                assert math.isfinite(row[field]) and row[field] > 0, (field, row)

    facts = document["facts"]
    assert facts["SDK calls per step, execstatus, SDK"].startswith("1.10 spans")
    assert facts["SDK calls per step, loom native tracer"].startswith("1.10 spans")
    assert "histogram" not in facts["SDK calls per step, loom native tracer"]
    assert document["versions"]["loom-kernel"].startswith("9.")
