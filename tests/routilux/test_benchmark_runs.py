"""The routilux benchmark runs on the real routilux and reports what it claims: each case against
bare per step, the SDK case's added cost against its equal floor, and the no-SDK case's added
cost against a wrapt pass-through's. A --quick run's numbers mean nothing, so none is checked
here."""

from __future__ import annotations

from support import run_quick_benchmark

PER_STEP = "per step: instrumented vs bare"
AGAINST_FLOOR = "per step: added per step vs the same SDK calls"
AGAINST_PASS_THROUGH = "per step: no SDK, added per step vs a wrapt pass-through"


def test_the_routilux_benchmark_runs_and_reports_each_case_per_step(tmp_path):
    results = run_quick_benchmark("routilux", tmp_path)

    rows = {(row["benchmark"], row["subject"]): row for row in results["rows"]}
    assert set(rows) == {
        (PER_STEP, "execstatus, SDK"),
        (PER_STEP, "execstatus, no SDK"),
        (PER_STEP, "wrapt pass-through"),
        (AGAINST_FLOOR, "execstatus, SDK"),
        (AGAINST_PASS_THROUGH, "execstatus, no SDK"),
    }
    for (benchmark, _), row in rows.items():
        assert row["unit"].startswith("step"), row
        if benchmark == PER_STEP:
            assert row["baseline"] == "bare", row
    assert rows[(AGAINST_FLOOR, "execstatus, SDK")]["equal_floor"]
    assert rows[(AGAINST_FLOOR, "execstatus, SDK")]["goal"] == 1.10
    assert rows[(AGAINST_PASS_THROUGH, "execstatus, no SDK")]["baseline"] == "wrapt pass-through"
    assert rows[(AGAINST_PASS_THROUGH, "execstatus, no SDK")]["goal"] == 2.0
    facts = results["facts"]
    assert facts["spans per job, SDK case"].startswith("11 ")
    assert facts["equal floor"].startswith("SDK calls per unit, execstatus, SDK: 1.1 spans")
    assert float(facts["pass-through: patched calls per step"]) > 0
    assert results["versions"]["routilux"].startswith("1.1.")
