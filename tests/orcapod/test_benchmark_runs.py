"""The orcapod benchmark runs on the real orcapod and reports what it claims: each case against
bare per item (computed, from the cache, and the observer calls of a computed run alone), what
each case with the SDK adds against the same SDK calls made by hand, and the no-SDK path per
orchestrator call against a wrapt pass-through. A --quick run's numbers mean nothing, so none is
checked here (``run_quick_benchmark`` checks that each floor made the calls its case made)."""

from __future__ import annotations

from support import run_quick_benchmark

LABELS = ("observer calls", "computed", "cache hit")
WITH_SDK = ("execstatus, SDK", "execstatus, SDK, item spans")
AGAINST_BARE = (*WITH_SDK, "execstatus, no SDK", "wrapt pass-through")
NO_SDK = "no SDK, per orchestrator call"


def _expected_rows() -> set[tuple[str, str, str]]:
    rows = set()
    for label in LABELS:
        benchmark = f"per item, {label}"
        rows |= {(f"{benchmark}: instrumented vs bare", s, "bare") for s in AGAINST_BARE}
        against_floor = f"{benchmark}: added per item vs the same SDK calls"
        rows |= {(against_floor, s, f"same SDK calls as {s}, by hand") for s in WITH_SDK}
    rows |= {
        (f"{NO_SDK}: instrumented vs bare", s, "bare")
        for s in ("execstatus, no SDK", "wrapt pass-through")
    }
    against_pass_through = f"{NO_SDK}: added per call vs a wrapt pass-through"
    rows.add((against_pass_through, "execstatus, no SDK", "wrapt pass-through"))
    return rows


def test_the_orcapod_benchmark_runs_and_reports_each_case_per_item(tmp_path):
    results = run_quick_benchmark("orcapod", tmp_path)

    rows = {(row["benchmark"], row["subject"], row["baseline"]): row for row in results["rows"]}
    assert set(rows) == _expected_rows()
    for (benchmark, _subject, _baseline), row in rows.items():
        unit = "call" if benchmark.startswith(NO_SDK) else "item"
        assert row["unit"] == (unit if "vs bare" in benchmark else f"{unit}, added"), row
        assert row["equal_floor"] == ("same SDK calls" in benchmark), row
    facts = results["facts"]
    for label in LABELS:
        assert facts[f"{label}: spans per run of 8 items"].startswith(
            "4 (a run and 3 nodes), 12 with item spans; "
        )
        for subject in WITH_SDK:
            assert facts[f"{label}: equal floor of {subject}"].startswith(
                f"SDK calls per unit, {subject}: "
            )
    assert facts["no SDK: patched calls per item"].startswith("0.125 (one orchestrator run")
    assert results["versions"]["orcapod"].startswith("0.1.")
