"""The core benchmark runs and measures what it claims (its numbers are checked elsewhere: in
docs/benchmarks.md, from a full run; a --quick run's numbers mean nothing)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

from support import run_quick_benchmark

ROOT = Path(__file__).resolve().parents[2]


def test_the_core_benchmark_runs_and_reports_every_figure(tmp_path):
    results = run_quick_benchmark("core", tmp_path)

    rows = {(row["benchmark"], row["subject"]): row for row in results["rows"]}
    assert set(rows) == {
        ("floor: per transition vs the same SDK calls", "execstatus (public API)"),
        (
            "floor: what the contract's span events and attributes cost",
            "same SDK calls as execstatus (public API), by hand",
        ),
        ("disabled: added per step vs a wrapt pass-through", "OTEL_SDK_DISABLED=true"),
        ("disabled: added per step vs a wrapt pass-through", "suppress_instrumentation()"),
        ("disabled: added per step vs a wrapt pass-through", "no SDK (API only)"),
    }
    for row in results["rows"]:
        assert math.isfinite(row["ratio"]) and row["ratio"] > 0, row
        assert row["baseline_us"] > 0, row
    facts = results["facts"]
    assert facts["memory after 20,000 executions"].startswith("in flight 0, ")
    assert "start: instrument(), no orchestrator installed" in facts
    assert results["versions"]["opentelemetry-sdk"] != "not installed"


def test_the_report_prints_the_table_and_says_what_was_not_run(tmp_path):
    (tmp_path / "core.json").write_text(
        json.dumps(
            {
                "suite": "core",
                "python": "3.11.7",
                "rows": [
                    {
                        "suite": "core",
                        "benchmark": "floor",
                        "subject": "execstatus",
                        "baseline": "by hand",
                        "unit": "transition",
                        "ratio": 1.25,
                        "subject_us": 50.0,
                        "baseline_us": 40.0,
                        "goal": 1.1,
                        "note": "",
                    }
                ],
                "facts": {"memory": "in flight 0"},
                "versions": {"opentelemetry-sdk": "1.45.2"},
            }
        )
    )
    report = subprocess.run(
        [sys.executable, "benchmarks/report.py", str(tmp_path)],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    assert (
        "| core: floor | execstatus | by hand | 1.25x | ≤ 1.10x missed "
        "| 50.0 µs | 40.0 µs | +10.0 µs |" in report
    )
    assert "- core: memory: in flight 0" in report
    assert "Not run: routilux, orcapod, loom, sqlalchemy, celery." in report
