"""benchmarks/bench_celery.py runs on the real Celery (eagerly, through its test worker, and
through a real prefork worker on Redis) and writes the rows the report reads.

A ``--quick`` run: its timings are noise, so only the results' shape is checked (every row,
its subject, baseline and unit, with usable numbers), never a ratio's value.
"""

from __future__ import annotations

from pathlib import Path

from support import run_quick_benchmark

OURS, NO_SDK = "execstatus, SDK", "execstatus, no SDK"
NO_OP = "no-op receivers on the same signals"
CONTRIB = "opentelemetry-instrumentation-celery"
BOTH = "execstatus with opentelemetry-instrumentation-celery"
OUR_FLOOR = "same SDK calls as execstatus, SDK, by hand"
EAGER_VS_BARE = "eager, per task: instrumented vs bare"
EAGER_FLOOR = "eager, per task: added per task vs the same SDK calls"
EAGER_NO_SDK = "eager, per task: no SDK, added per task vs no-op receivers"
AGAINST_PEER = "eager, peers: added per task vs contrib's and the SDK calls we make beyond it"
ADDED_TO_PEER = "eager, with contrib: added per task to contrib vs the SDK calls we add to it"
WORKER_VS_BARE = "worker, per task: instrumented vs bare"
WORKER_FLOOR = "worker, per task: added per task vs the same SDK calls"
PREFORK_FIGURES = ("per task", "CPU per task")  # the wall time, and the processes' CPU
EXPECTED = {
    *((EAGER_VS_BARE, subject, "bare", "task") for subject in (OURS, NO_SDK, NO_OP, CONTRIB, BOTH)),
    (EAGER_FLOOR, OURS, OUR_FLOOR, "task, added"),
    (EAGER_NO_SDK, NO_SDK, NO_OP, "task, added"),
    (
        "eager, peers: contrib, added per task vs the same SDK calls",
        CONTRIB,
        f"same SDK calls as {CONTRIB}, by hand",
        "task, added",
    ),
    ("eager, peers: added per task vs contrib's", OURS, CONTRIB, "task, added"),
    (AGAINST_PEER, OURS, f"{CONTRIB} + SDK cost of what we emit beyond it", "task, added"),
    ("eager, with contrib: both on vs contrib alone", BOTH, CONTRIB, "task"),
    (ADDED_TO_PEER, BOTH, f"{CONTRIB} + SDK cost of what we add to it", "task, added"),
    (WORKER_VS_BARE, OURS, "bare", "task"),
    (WORKER_VS_BARE, CONTRIB, "bare", "task"),
    (WORKER_FLOOR, OURS, OUR_FLOOR, "task, added"),
    ("worker, peers: added per task vs contrib's", OURS, CONTRIB, "task, added"),
    *(
        row
        for figure in PREFORK_FIGURES
        for row in (
            *(
                (f"prefork worker, {figure}: instrumented vs bare", subject, "bare", "task")
                for subject in (OURS, CONTRIB, BOTH)
            ),
            (f"prefork worker, {figure}, peers: added vs contrib's", OURS, CONTRIB, "task, added"),
            (
                f"prefork worker, {figure}, with contrib: both on vs contrib alone",
                BOTH,
                CONTRIB,
                "task",
            ),
        )
    ),
}
# What one task emits through the prefork worker, as it arrived over OTLP, process by process.
PREFORK_RUN = "(queued, pending, running, succeeded)"
PREFORK_EMITTED = {
    OURS: (
        "per task: client: nothing; worker's main process: nothing; pool child: "
        f"1 span bench.constant {PREFORK_RUN}, 3 samples execution.status_transition.duration"
    ),
    BOTH: (
        "per task: client: 1 span apply_async/bench.constant; worker's main process: nothing; "
        f"pool child: 1 span run/bench.constant {PREFORK_RUN}, "
        "3 samples execution.status_transition.duration, 1 sample flower.task.runtime.seconds"
    ),
    "bare": "nothing: no span, no sample of either",
}


def test_quick_run_writes_every_row(tmp_path: Path) -> None:
    document = run_quick_benchmark("celery", tmp_path)
    rows = {
        (row["benchmark"], row["subject"], row["baseline"], row["unit"]): row
        for row in document["rows"]
    }
    assert set(rows) == EXPECTED
    assert len(document["rows"]) == len(EXPECTED)
    goals = {key[0]: row["goal"] for key, row in rows.items() if row["goal"] is not None}
    assert goals == {EAGER_FLOOR: 1.10, EAGER_NO_SDK: 2.0, AGAINST_PEER: 1.10, WORKER_FLOOR: 1.10}
    # What each emits per task, as the floors recorded it: one span each (next to contrib,
    # contrib's, with our status events in it); status events and samples from us only.
    (against_peer,) = [row for key, row in rows.items() if key[0] == AGAINST_PEER]
    ours, theirs = against_peer["subject_calls"], against_peer["baseline_calls"]
    assert ours["span"] == theirs["span"] == 1
    assert (ours["span event"], theirs["span event"]) == (2, 0)
    (added_to_peer,) = [row for key, row in rows.items() if key[0] == ADDED_TO_PEER]
    assert added_to_peer["subject_calls"]["span"] == 1
    assert added_to_peer["subject_calls"]["span event"] == 2
    (worker_floor,) = [row for key, row in rows.items() if key[0] == WORKER_FLOOR]
    assert worker_floor["subject_calls"]["span event"] == 4
    assert worker_floor["subject_calls"]["histogram record"] == 3
    facts = document["facts"]
    assert facts[f"eager: {OURS} emitted"] == (
        "per task: spans: 1 bench.constant (running, succeeded); "
        "histogram samples: 1 execution.status_transition.duration"
    )
    assert facts[f"eager: {BOTH} emitted"].startswith(
        "per task: spans: 1 run/bench.constant (running, succeeded);"
    )
    assert facts[f"worker: {OURS} emitted"] == (
        "per task: spans: 1 bench.constant (queued, pending, running, succeeded); "
        "histogram samples: 3 execution.status_transition.duration"
    )
    assert facts[f"worker: {CONTRIB} emitted"].startswith(
        "per task: spans: 1 apply_async/bench.constant, 1 run/bench.constant;"
    )
    assert facts[f"eager: {NO_OP}"] == (
        "one on each of the adapter's 16 signals: 3 receiver calls per task"
    )
    for case, emitted in PREFORK_EMITTED.items():
        assert facts[f"prefork worker: {case} emitted"] == emitted
    # Contrib's pool children lose what they hold at exit (opentelemetry-python-contrib#4916):
    # what arrived is counted, not required; its client's spans all arrive.
    assert facts[f"prefork worker: {CONTRIB} emitted"].startswith(
        "per task, at most: client: 1 span apply_async/bench.constant; worker's main process: "
        "nothing; pool child: 1 span run/bench.constant, 1 sample flower.task.runtime.seconds; "
        "arrived, run by run, of 55 tasks each: spans apply_async/bench.constant from the "
        "client: 55;"
    )
    assert "execstatus, SDK: " in facts["prefork worker: measured"]
    assert document["versions"]["celery"].startswith("5.")
