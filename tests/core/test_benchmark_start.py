"""The start-up benchmark runs here (no orchestrator installed: ``--bare``), checks what it
claims (instrument() imported no framework and no adapter module) and reports its row and
figures; the report prints the row in ms with its goal. A --quick run's numbers mean nothing,
so none is checked."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_start_benchmark_runs_bare_and_reports_the_packages_share(tmp_path):
    completed = subprocess.run(
        [sys.executable, "benchmarks/bench_start.py", "--bare", "--quick", "--out", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    results = json.loads((tmp_path / "start-bare.json").read_text())

    (row,) = results["rows"]
    assert row["benchmark"] == "start-up, no orchestrator installed"
    assert (row["subject"], row["baseline"], row["unit"]) == (
        "instrument()",
        "import BaseInstrumentor",
        "process start",
    )
    assert row["goal"] == 20.0
    for figure in ("ratio", "subject_us", "baseline_us"):
        assert math.isfinite(row[figure]) and row[figure] > 0, (figure, row)
    facts = results["facts"]
    assert facts["setup"] == "no orchestrator installed"
    assert set(facts) >= {
        "bare interpreter",
        "import the OpenTelemetry API",
        "import BaseInstrumentor",
        "instrument()",
        "the package's share (instrument() minus BaseInstrumentor)",
    }

    report = subprocess.run(
        [sys.executable, "benchmarks/report.py", str(tmp_path)],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    line = next(line for line in report.splitlines() if "start-up, no orchestrator" in line)
    assert "< +20 ms " in line and " ms | " in line and line.endswith("| process start |")
