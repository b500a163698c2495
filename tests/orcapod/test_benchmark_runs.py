"""The orcapod benchmark runs on the real orcapod and reports what it claims: each instrumented
case against bare, per item, computed and from the cache. A --quick run's numbers mean nothing,
so none is checked here."""

from __future__ import annotations

from support import run_quick_benchmark

BENCHMARKS = (
    "per item, computed: instrumented vs bare",
    "per item, cache hit: instrumented vs bare",
)
SUBJECTS = ("execstatus, SDK", "execstatus, SDK, item spans", "execstatus, no SDK")


def test_the_orcapod_benchmark_runs_and_reports_each_case_per_item(tmp_path):
    results = run_quick_benchmark("orcapod", tmp_path)

    rows = {(row["benchmark"], row["subject"]): row for row in results["rows"]}
    assert set(rows) == {(benchmark, subject) for benchmark in BENCHMARKS for subject in SUBJECTS}
    for row in rows.values():
        assert row["baseline"] == "bare", row
        assert row["unit"] == "item", row
    for label in ("computed", "cache hit"):
        assert results["facts"][f"{label}: spans per run of 8 items"].startswith(
            "4 (a run and 3 nodes), 12 with item spans; "
        )
    assert results["versions"]["orcapod"].startswith("0.1.")
