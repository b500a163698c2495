"""The database-backed example, unmodified, under ``opentelemetry-instrument``."""

from __future__ import annotations

from support import console_points, console_spans, run_example_instrumented


def test_example_under_opentelemetry_instrument() -> None:
    documents = run_example_instrumented("sqlalchemy_jobs.py")
    spans = {span["name"]: span for span in console_spans(documents)}
    assert set(spans) == {"RUN nightly_reports", "extract", "transform", "publish"}
    run = spans["RUN nightly_reports"]
    for name in ("extract", "transform", "publish"):
        assert spans[name]["parent_id"] == run["context"]["span_id"]
        assert spans[name]["context"]["trace_id"] == run["context"]["trace_id"]
    assert spans["publish"]["attributes"]["execution.status"] == "failed"
    assert run["attributes"]["cicd.pipeline.result"] == "failure"

    counts: dict[tuple[str, str, str], int] = {}
    for point in console_points(documents, "execution.status_transition.duration"):
        attributes = point["attributes"]
        key = (
            attributes["execution.level"],
            attributes["execution.status.from"],
            attributes["execution.status.to"],
        )
        counts[key] = counts.get(key, 0) + point["count"]
    assert counts == {
        ("pipeline", "queued", "running"): 1,
        ("pipeline", "running", "failed"): 1,
        ("step", "queued", "pending"): 3,
        ("step", "pending", "running"): 3,
        ("step", "running", "succeeded"): 2,
        ("step", "running", "failed"): 1,
    }
