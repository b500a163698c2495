"""The routilux benchmark runs on the real routilux and reports what it claims: each instrumented
case against bare, per step. A --quick run's numbers mean nothing, so none is checked here."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_routilux_benchmark_runs_and_reports_each_case_per_step(tmp_path):
    completed = subprocess.run(
        [sys.executable, "benchmarks/bench_routilux.py", "--quick", "--out", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    results = json.loads((tmp_path / "routilux.json").read_text())

    assert results["suite"] == "routilux"
    rows = {(row["benchmark"], row["subject"]): row for row in results["rows"]}
    assert set(rows) == {
        ("per step: instrumented vs bare", "execstatus, SDK"),
        ("per step: instrumented vs bare", "execstatus, no SDK"),
    }
    for row in rows.values():
        assert row["baseline"] == "bare", row
        assert row["unit"] == "step", row
        for figure in ("ratio", "subject_us", "baseline_us"):
            assert math.isfinite(row[figure]) and row[figure] > 0, row
    assert results["facts"]["spans per job, SDK case"].startswith("11 ")
    assert results["versions"]["routilux"].startswith("1.1.")
