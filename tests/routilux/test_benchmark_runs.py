"""The routilux benchmark runs on the real routilux and reports what it claims: each instrumented
case against bare, per step. A --quick run's numbers mean nothing, so none is checked here."""

from __future__ import annotations

from support import run_quick_benchmark


def test_the_routilux_benchmark_runs_and_reports_each_case_per_step(tmp_path):
    results = run_quick_benchmark("routilux", tmp_path)

    rows = {(row["benchmark"], row["subject"]): row for row in results["rows"]}
    assert set(rows) == {
        ("per step: instrumented vs bare", "execstatus, SDK"),
        ("per step: instrumented vs bare", "execstatus, no SDK"),
    }
    for row in rows.values():
        assert row["baseline"] == "bare", row
        assert row["unit"] == "step", row
    assert results["facts"]["spans per job, SDK case"].startswith("11 ")
    assert results["versions"]["routilux"].startswith("1.1.")
