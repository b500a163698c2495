"""Celery 5 through a real prefork worker: the throughput of a batch of tasks, bare, with each
instrumentation and with both, every figure of what they emitted read back over OTLP.

The parts are the Celery tests' own (tests/redis_server.py, tests/otlp_receiver.py,
tests/celery/worker.py), put on the path here: a real ``redis-server`` (broker on db 0,
results on db 1); a ``celery worker`` with the prefork pool (concurrency 2, task events on,
log level INFO, as the tests run it) and a client, both subprocesses started zero-code under
``opentelemetry-instrument``, exporting OTLP/HTTP to the test receiver in this process, with
the SDK's default batch delay (5 s) and metric export interval (60 s), as a user's would. The
application (``celery_worker_app.py``) has one task, returning a constant.

The client is a process of its own rather than this one: under ``opentelemetry-instrument``
with the worker's configuration, each case instruments the publishing side as a user's would
(ours stamps the publish time the worker's ``queued`` is reported from; contrib makes its
``apply_async`` span; bare sets the SDK up, idle), nothing is left over from the case before,
and it shares no GIL with the receiver, which decodes every export in this process's threads.

Cases, differing only in ``OTEL_PYTHON_DISABLED_INSTRUMENTATIONS`` (the worker's and the
client's): bare (both instrumentations off: the SDK set up and idle), ours, contrib
(opentelemetry-instrumentation-celery), both. Each run is a fresh worker (its start, until its
log says ready, is not timed) and a fresh client, which publishes ``WARM_UP`` tasks and reads
their results (connections made, pool children warm), then times ``TASKS`` ``delay()`` calls
and the read of every result: the unit is a task. Next to the time, the CPU each process spent
meanwhile (the client's own, the worker's main process's and pool children's read from
``/proc`` by the client at the same two moments): on a machine shared with other work, the
wall time of a run moves with that work, its processes' CPU much less. Exports after the last
result (ours's flush at shutdown, the SDK's at exit) are in neither. Rounds of every case
once, the order rotated from round to round (``ROUNDS``, as many as cases: each case once in
each place); per case the median of its rounds, each ratio the median of the per-round ratios.

Validity, from what the receiver got once the worker has shut down warm and the client has
exited (every process has then exported all it ever will: ours flushes each pool child at
``worker_process_shutdown``), never from an SDK's state: with ours on, alone or with contrib,
exactly what ``EMITTED`` states per task and process, and no request refused; contrib alone,
all of its client spans (the client exits normally) and at most what ``EMITTED`` states in the
pool children, whose losses are counted and reported, not failed on: a pool child exits
without interpreter shutdown and loses what its batch processor and metric reader still hold
(opentelemetry-python-contrib#4916); bare, no span at all and no sample of either. Every worker
must exit 0. Otherwise the script exits non-zero.
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

from harness import Row, Samples, added_cost_ratio, ratio_rows, require

BENCHMARKS = Path(__file__).resolve().parent
TESTS = BENCHMARKS.parent / "tests"
sys.path[:0] = [str(TESTS), str(TESTS / "celery")]  # the tests' Redis, receiver and worker

from otlp_receiver import OtlpReceiver, Span  # noqa: E402
from redis_server import RedisServer  # noqa: E402
from worker import CeleryEnvironment  # noqa: E402

SUITE = "celery"
TASK = "bench.constant"  # celery_worker_app's task; the in-process workloads' too
BARE = "bare"
OURS = "execstatus, SDK"
CONTRIB = "opentelemetry-instrumentation-celery"
BOTH = "execstatus with opentelemetry-instrumentation-celery"
TRANSITIONS = "execution.status_transition.duration"
CONTRIB_RUNTIME = "flower.task.runtime.seconds"

APP = "celery_worker_app"
CONCURRENCY = 2
TASKS, ROUNDS, WARM_UP = 2000, 4, 20
QUICK_TASKS, QUICK_ROUNDS, QUICK_WARM_UP = 50, 1, 5
RESULT_TIMEOUT_SECONDS = 60.0
CLIENT_TIMEOUT_SECONDS = 300.0
# The harness's worker exports every 200 ms (spans) and 500 ms (metrics), for tests that wait
# for it; a benchmark runs with the SDK's defaults, as a user does.
SDK_DEFAULTS = {"OTEL_BSP_SCHEDULE_DELAY": "5000", "OTEL_METRIC_EXPORT_INTERVAL": "60000"}
# What each case turns off, in the worker and the client: "execstatus" is this project's
# instrumentor (its entry point), "celery" opentelemetry-instrumentation-celery's.
DISABLED = {BARE: "execstatus,celery", OURS: "celery", CONTRIB: "execstatus", BOTH: ""}

# The client: ``WARM_UP`` tasks, then ``TASKS`` timed, with the CPU spent meanwhile by itself
# (its threads: the SDK's exports too) and by the worker's processes (read from ``/proc``:
# user and system time, fields 14 and 15 of ``stat``), main process first.
CLIENT = """
import json, os, time
from celery_worker_app import constant

WORKER = [int(pid) for pid in os.environ["BENCH_WORKER_PIDS"].split(",")]
TIMEOUT = float(os.environ["BENCH_RESULT_TIMEOUT"])


def run(tasks):
    results = [constant.delay() for _ in range(tasks)]
    for result in results:
        result.get(timeout=TIMEOUT)


def cpu():
    seconds = [time.process_time()]
    for pid in WORKER:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        seconds.append((int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK"))
    return seconds


run(int(os.environ["BENCH_WARM_UP"]))
cpu_before, started = cpu(), time.perf_counter()
run(int(os.environ["BENCH_TASKS"]))
seconds, cpu_after = time.perf_counter() - started, cpu()
spent = [after - before for after, before in zip(cpu_after, cpu_before)]
print(json.dumps({"seconds": seconds, "cpu": spent, "pid": os.getpid()}))
"""

# -- what each emits per task, by process --------------------------------------------------------

CLIENT_PROCESS, MAIN_PROCESS, POOL_CHILD = "client", "worker's main process", "pool child"
PROCESSES = (CLIENT_PROCESS, MAIN_PROCESS, POOL_CHILD)
SPAN, SAMPLE = "span", "sample"


class Emission(NamedTuple):
    """One kind of thing a task makes arrive: a span (its name, with the statuses of its
    status-change events) or the histogram samples of a metric, and the process it came from."""

    process: str
    kind: str
    name: str


RUN = "(queued, pending, running, succeeded)"
# Per task. Ours exports nothing from the client (it stamps the publish time in the message's
# headers) or from the worker's main process (it notes the receive time on the request it
# hands to the pool): the pool child that runs the task reports the statuses carried, then
# its own, in one span, each transition a sample (queued -> pending: the broker's queue;
# pending -> running: reserved in the worker; running -> succeeded: the run).
EMITTED: dict[str, dict[Emission, int]] = {
    BARE: {},
    OURS: {
        Emission(POOL_CHILD, SPAN, f"{TASK} {RUN}"): 1,
        Emission(POOL_CHILD, SAMPLE, TRANSITIONS): 3,
    },
    CONTRIB: {
        Emission(CLIENT_PROCESS, SPAN, f"apply_async/{TASK}"): 1,
        Emission(POOL_CHILD, SPAN, f"run/{TASK}"): 1,
        Emission(POOL_CHILD, SAMPLE, CONTRIB_RUNTIME): 1,
    },
    BOTH: {
        Emission(CLIENT_PROCESS, SPAN, f"apply_async/{TASK}"): 1,
        Emission(POOL_CHILD, SPAN, f"run/{TASK} {RUN}"): 1,
        Emission(POOL_CHILD, SAMPLE, TRANSITIONS): 3,
        Emission(POOL_CHILD, SAMPLE, CONTRIB_RUNTIME): 1,
    },
}


def _described(span: Span) -> str:
    statuses = [
        str(event.attributes["execution.status.to"])
        for event in span.events
        if "execution.status.to" in event.attributes
    ]
    return f"{span.name} ({', '.join(statuses)})" if statuses else span.name


def _arrived(receiver: OtlpReceiver, processes: Mapping[int, str]) -> Counter[Emission]:
    """Every span that arrived, and the samples of the per-task metrics (the latest cumulative
    point of each series), by the process that exported them."""

    def process(pid: int | None) -> str:
        return processes.get(pid, f"another process ({pid})") if pid else "an unknown process"

    found: Counter[Emission] = Counter()
    for span in receiver.spans():
        found[Emission(process(span.pid), SPAN, _described(span))] += 1
    for metric in (TRANSITIONS, CONTRIB_RUNTIME):
        for point in receiver.latest_points(metric):
            found[Emission(process(point.pid), SAMPLE, metric)] += point.count or 0
    return +found


def _listed(per_task: Mapping[Emission, float]) -> str:
    """What arrived per task, process by process ("nothing" where nothing did)."""
    described = []
    for process in PROCESSES:
        listed = ", ".join(
            f"{count:g} {emission.kind}{'' if count == 1 else 's'} {emission.name}"
            for emission, count in per_task.items()
            if emission.process == process
        )
        described.append(f"{process}: {listed or 'nothing'}")
    return "; ".join(described)


# -- one run: a fresh worker and client -----------------------------------------------------------


class Parts(NamedTuple):
    """What every run shares: the broker and backend, the receiver, the processes' setting."""

    redis: RedisServer
    receiver: OtlpReceiver
    environment: CeleryEnvironment


@contextmanager
def _parts() -> Iterator[Parts]:
    """Redis, the receiver and a directory for the processes' logs, for the whole workload."""
    with (
        RedisServer() as redis,
        OtlpReceiver() as receiver,
        tempfile.TemporaryDirectory(prefix="bench-celery-worker-") as directory,
    ):
        environment = CeleryEnvironment(
            broker_url=redis.url(0),
            result_backend=redis.url(1),
            otlp_endpoint=receiver.endpoint,
            directory=Path(directory),
            extra=SDK_DEFAULTS,
            apps=BENCHMARKS,
        )
        yield Parts(redis, receiver, environment)


class Workload(NamedTuple):
    """Timed tasks per run, rounds, and the tasks before the timed ones in each run."""

    tasks: int
    rounds: int
    warm_up: int

    @property
    def tasks_per_run(self) -> int:
        return self.warm_up + self.tasks


class Run(NamedTuple):
    """One case's run: the timed tasks' seconds and the CPU seconds spent meanwhile by process
    (the pool children's summed), what arrived, the requests refused."""

    seconds: float
    cpu: dict[str, float]
    arrived: Counter[Emission]
    refused: list[str]


def _run(case: str, parts: Parts, workload: Workload) -> Run:
    """A fresh worker for ``case``, ready; the client's tasks, timed by the client; the warm
    shutdown; then what arrived, checked."""
    parts.redis.flush_all()
    parts.receiver.clear()
    env = {"OTEL_PYTHON_DISABLED_INSTRUMENTATIONS": DISABLED[case]}
    worker = parts.environment.worker(
        APP, concurrency=CONCURRENCY, env=env, service_name="bench-celery-worker"
    )
    worker.start()
    try:
        children = worker.child_pids()
        require(len(children) == CONCURRENCY, f"{case}: pool processes {children}")
        client_env = {
            **env,
            "BENCH_WORKER_PIDS": ",".join(str(pid) for pid in (worker.pid, *children)),
            "BENCH_RESULT_TIMEOUT": str(RESULT_TIMEOUT_SECONDS),
            "BENCH_WARM_UP": str(workload.warm_up),
            "BENCH_TASKS": str(workload.tasks),
        }
        completed = parts.environment.run_client(
            CLIENT,
            env=client_env,
            service_name="bench-celery-client",
            timeout=CLIENT_TIMEOUT_SECONDS,
        )
        client = json.loads(completed.stdout.splitlines()[-1])
    finally:
        exit_code = worker.stop()
    require(exit_code == 0, f"{case}: the worker exited {exit_code}:\n{worker.tail()}")
    processes = {
        client["pid"]: CLIENT_PROCESS,
        worker.pid: MAIN_PROCESS,
        **dict.fromkeys(children, POOL_CHILD),
    }
    client_cpu, main_cpu, *children_cpu = client["cpu"]
    cpu = {CLIENT_PROCESS: client_cpu, MAIN_PROCESS: main_cpu, POOL_CHILD: sum(children_cpu)}
    arrived = _arrived(parts.receiver, processes)
    run = Run(client["seconds"], cpu, arrived, parts.receiver.errors())
    _check(case, run, workload.tasks_per_run)
    return run


def _check(case: str, run: Run, tasks: int) -> None:
    """What arrived is what the case emits for ``tasks`` tasks (contrib's: at most, all of its
    client's)."""
    expected = Counter({emission: count * tasks for emission, count in EMITTED[case].items()})
    if case != CONTRIB:
        require(run.arrived == expected, f"{case}: arrived {dict(run.arrived)}, not {expected}")
        require(case == BARE or run.refused == [], f"{case}: requests refused: {run.refused}")
        return
    beyond = {emission for emission, count in run.arrived.items() if count > expected[emission]}
    require(not beyond, f"{case}: arrived {dict(run.arrived)}, beyond {expected}")
    for emission, count in expected.items():
        if emission.process == CLIENT_PROCESS:
            require(run.arrived[emission] == count, f"{case}: {emission}: {run.arrived[emission]}")


# -- the measurement ----------------------------------------------------------------------------

CASES = (BARE, OURS, CONTRIB, BOTH)
WALL, CPU = "per task", "CPU per task"


def _rows(samples: Samples, figure: str, note: str) -> list[Row]:
    """Each instrumented case against bare, ours's added cost against contrib's, and both on
    against contrib alone: for the wall time per task or the CPU per task (``figure``)."""
    per_task = ratio_rows(
        samples,
        SUITE,
        f"prefork worker, {figure}: instrumented vs bare",
        BARE,
        [OURS, CONTRIB, BOTH],
        unit="task",
        note=note,
    )
    return [
        *per_task,
        added_cost_ratio(
            per_task, OURS, CONTRIB, f"prefork worker, {figure}, peers: added vs contrib's"
        ),
        *ratio_rows(
            samples,
            SUITE,
            f"prefork worker, {figure}, with contrib: both on vs contrib alone",
            CONTRIB,
            [BOTH],
            unit="task",
            note=note,
        ),
    ]


def _emitted(runs: Mapping[str, list[Run]], tasks: int) -> dict[str, str]:
    """What each case emitted per task, as it arrived (contrib's, run by run)."""
    facts = {}
    for case in (OURS, BOTH):
        per_task = {emission: count / tasks for emission, count in runs[case][0].arrived.items()}
        facts[f"prefork worker: {case} emitted"] = f"per task: {_listed(per_task)}"
    facts[f"prefork worker: {BARE} emitted"] = "nothing: no span, no sample of either"
    arrived = "; ".join(
        f"{emission.kind}s {emission.name} from the {emission.process}: "
        + ", ".join(f"{run.arrived[emission]:,}" for run in runs[CONTRIB])
        for emission in EMITTED[CONTRIB]
    )
    refused = ", ".join(str(len(run.refused)) for run in runs[CONTRIB])
    facts[f"prefork worker: {CONTRIB} emitted"] = (
        f"per task, at most: {_listed(EMITTED[CONTRIB])}; arrived, run by run, of {tasks:,} "
        f"tasks each: {arrived}; requests refused: {refused}"
    )
    return facts


def _measured(samples: Samples, runs: Mapping[str, list[Run]], workload: Workload) -> str:
    """Throughput and CPU per task by process, each case's median."""
    described, per_task = [], 1e6 / workload.tasks
    for case in CASES:
        wall = statistics.median(samples[case])
        cpu = ", ".join(
            f"{process} {statistics.median(run.cpu[process] for run in runs[case]) * per_task:,.0f}"
            for process in PROCESSES
        )
        described.append(
            f"{case}: {1e6 / wall:,.0f} tasks/s ({wall:,.0f} µs per task), CPU µs per task: {cpu}"
        )
    return f"median of {workload.rounds} rounds of {workload.tasks:,} tasks: " + "; ".join(
        described
    )


def _workload(quick: bool) -> Workload:
    if quick:
        return Workload(QUICK_TASKS, QUICK_ROUNDS, QUICK_WARM_UP)
    return Workload(TASKS, ROUNDS, WARM_UP)


def through_a_prefork_worker(quick: bool) -> tuple[list[Row], dict[str, str]]:
    """Every case in interleaved rounds of fresh workers, each run checked; the rows and
    facts."""
    workload = _workload(quick)
    runs: dict[str, list[Run]] = {case: [] for case in CASES}
    started = time.monotonic()
    with _parts() as parts:
        for round_number in range(workload.rounds):
            shift = round_number % len(CASES)
            for case in (*CASES[shift:], *CASES[:shift]):
                runs[case].append(_run(case, parts, workload))
    took = time.monotonic() - started
    wall = {case: [run.seconds / workload.tasks * 1e6 for run in runs[case]] for case in CASES}
    cpu = {
        case: [sum(run.cpu.values()) / workload.tasks * 1e6 for run in runs[case]] for case in CASES
    }
    setting = (
        f"{workload.tasks} delay() then every result, to a prefork worker (concurrency "
        f"{CONCURRENCY}) on Redis, worker and client under opentelemetry-instrument"
    )
    rows = [
        *_rows(wall, WALL, setting),
        *_rows(cpu, CPU, f"{setting}; CPU of the client, the worker and its pool"),
    ]
    facts = {
        "prefork worker: measured": _measured(wall, runs, workload),
        **_emitted(runs, workload.tasks_per_run),
        "prefork worker: workload": (
            f"{workload.rounds} rounds of {len(CASES)} runs, each a fresh worker and client "
            f"({workload.warm_up} tasks to warm up, then {workload.tasks:,} timed): "
            f"{took:.0f} s with their starts and stops"
        ),
    }
    return rows, facts
