"""The real OTLP exporters (HTTP and gRPC) against endpoints that fail, and against the real
backends with one hostile execution in the batch.

A small control plane that reports through the public API only runs in a subprocess under
``opentelemetry-instrument``, as a user runs it:

- with its endpoint down (a closed loopback port) or never answering (a server that accepts
  connections and never replies), its output and exit code are those of the same run with
  the exporters set to ``none``, the package logs no error of its own, and the process exits
  within its export timeouts (``OTEL_EXPORTER_OTLP_TIMEOUT=2``, seconds as the Python SDK
  reads it). tests/e2e/test_backend_down.py compares the control-plane example's timing with
  its backends up; these need no backend and compare with no exporter at all;
- exporting to Phoenix and VictoriaMetrics, 49 ordinary steps and one hostile one (a name
  with a lone surrogate, as ``os.fsdecode`` makes of an undecodable file name, an error type
  with one, a timestamp in milliseconds, an attempt beyond int64) go out in one batch: one
  value the OTLP encoder cannot encode would cost the whole batch, so all 51 spans must be
  stored, the hostile one with U+FFFD for its lone surrogate.
"""

from __future__ import annotations

import os
import selectors
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pytest
from figures import FIGURES
from otlp_backends import EXPORT_TIMEOUT_SECONDS, Backends, fetch_stored, run_exporting
from support import instrumented_command

RUNS, STEPS = 8, 6  # of the endpoint runs' control plane
ORDINARY = 49  # ordinary steps in the hostile batch, next to the one hostile step
HOSTILE_NAME = os.fsdecode(b"job-\xff")  # "job-\udcff": a lone surrogate
HOSTILE_ERROR = "Timeout\udcff"
REPLACED_NAME = "job-\ufffd"
REPLACED_ERROR = "Timeout\ufffd"
HARD_LIMIT_SECONDS = 120  # a subprocess still running by then is hung: the test fails
# Export while the pipeline runs, not only at exit, so failing exports overlap its work.
EXPORT_OFTEN = {"OTEL_METRIC_EXPORT_INTERVAL": "50", "OTEL_BSP_SCHEDULE_DELAY": "20"}
PROTOCOLS = {"http": "http/protobuf", "grpc": "grpc"}

SCRIPT = f'''
"""A control plane reporting through the public API only: no OpenTelemetry code."""

import os
import sys
import time

from opentelemetry_instrumentation_execstatus import api

RUNS, STEPS, ORDINARY = {RUNS}, {STEPS}, {ORDINARY}


class ProbeTimeout(Exception):
    pass


def endpoints() -> int:
    """Runs of steps (some fail), a worker health-checked and drained; exit code 3 when a run
    failed, so that a changed exit code shows."""
    failed_runs = 0
    api.report_worker_spawn(success=True)
    api.report_worker_state("worker-1", "idle")
    for run_index in range(RUNS):
        run = f"run-{{run_index}}"
        api.report_status(run, "queued", level="pipeline", pipeline="nightly")
        api.report_status(run, "running")
        api.report_worker_state("worker-1", "busy")
        outcome = "succeeded"
        for step_index in range(STEPS):
            step = f"{{run}}/step-{{step_index}}"
            api.report_status(step, "queued", name=f"step-{{step_index}}", parent_id=run)
            api.report_status(step, "running")
            time.sleep(0.002)
            if (run_index + step_index) % 7 == 3:
                api.report_status(step, "failed", error=ValueError(f"bad row in {{step}}"))
                outcome = "failed"
                print(step, "failed")
            else:
                api.report_status(step, "succeeded")
                print(step, "succeeded")
        api.report_status(run, outcome)
        api.report_worker_state("worker-1", "idle")
        failed_runs += outcome == "failed"
        print(run, outcome)
        try:
            with api.health_check():
                if run_index % 3 == 2:
                    raise ProbeTimeout(f"worker-1 after {{run}}")
        except ProbeTimeout as error:
            print("health check failed:", repr(error))
    with api.worker_drain():
        print("draining worker-1")
    api.report_worker_state("worker-1", None)
    print(f"{{failed_runs}} of {{RUNS}} runs failed")
    return 3 if failed_runs else 0


def _step(step: str, name: str, **first: object) -> None:
    api.report_status(step, "queued", name=name, parent_id="batch", **first)
    api.report_status(step, "running")
    api.report_status(step, "succeeded")


def hostile() -> int:
    """One run: ORDINARY ordinary steps, and in their middle one hostile step."""
    api.report_status("batch", "queued", level="pipeline", pipeline="hostile-batch")
    api.report_status("batch", "running")
    for index in range(ORDINARY):
        if index == ORDINARY // 2:
            milliseconds = time.time() * 1000
            api.report_status(
                "batch/hostile",
                "queued",
                name=os.fsdecode(b"job-\\xff"),
                parent_id="batch",
                attempt=2**70,
                timestamp=milliseconds,
            )
            api.report_status("batch/hostile", "running", timestamp=milliseconds + 5)
            api.report_status(
                "batch/hostile", "failed", error="Timeout\\udcff", timestamp=milliseconds + 9
            )
        _step(f"batch/step-{{index}}", f"step-{{index}}")
    api.report_status("batch", "failed")
    print("batch done")
    return 0


if __name__ == "__main__":
    sys.exit({{"endpoints": endpoints, "hostile": hostile}}[sys.argv[1]]())
'''


@pytest.fixture(scope="module")
def script(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("otlp-endpoints") / "control_plane.py"
    path.write_text(SCRIPT)
    return path


# -- endpoints that fail ---------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    stdout: str
    stderr: str
    returncode: int
    seconds: float


def _environment(settings: dict[str, str]) -> dict[str, str]:
    """This process's environment without its OTEL_* settings (a developer's exporters must
    not leak in), plus ``settings``."""
    clean = {key: value for key, value in os.environ.items() if not key.startswith("OTEL_")}
    return {
        **clean,
        "OTEL_SERVICE_NAME": "reliability-otlp-endpoints",
        "OTEL_LOGS_EXPORTER": "none",
        "OTEL_EXPORTER_OTLP_TIMEOUT": str(EXPORT_TIMEOUT_SECONDS),
        **EXPORT_OFTEN,
        **settings,
    }


def _run(script: Path, settings: dict[str, str]) -> Run:
    """The control plane under ``opentelemetry-instrument``, timed from start to exit."""
    started = time.monotonic()
    completed = subprocess.run(
        instrumented_command(script, "endpoints"),
        capture_output=True,
        text=True,
        env=_environment(settings),
        timeout=HARD_LIMIT_SECONDS,
        check=False,
    )
    seconds = time.monotonic() - started
    return Run(completed.stdout, completed.stderr, completed.returncode, seconds)


@pytest.fixture(scope="module")
def bare(script: Path) -> Run:
    """The run with no exporter: what the host prints and returns on its own."""
    run = _run(script, {"OTEL_TRACES_EXPORTER": "none", "OTEL_METRICS_EXPORTER": "none"})
    lines = run.stdout.splitlines()
    # Every step and run, the failed health checks, the drain, the summary: the script ran.
    assert len(lines) == RUNS * (STEPS + 1) + RUNS // 3 + 2, run.stdout + run.stderr
    assert run.returncode == 3, f"the bare run exited {run.returncode}:\n{run.stderr}"
    return run


def _closed_port() -> int:
    """A loopback port nothing listens on (what a stopped backend leaves)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class SilentServer:
    """A loopback server that accepts every connection, reads what it is sent and never
    answers: a backend that hangs (HTTP waits for a response, gRPC for the server's
    HTTP/2 settings). ``accepted`` counts the connections the exporters made."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0), backlog=64)
        self.port = self._listener.getsockname()[1]
        self.accepted = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> SilentServer:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def _serve(self) -> None:
        selector = selectors.DefaultSelector()
        selector.register(self._listener, selectors.EVENT_READ)
        try:
            while not self._stop.is_set():
                for key, _ in selector.select(0.05):
                    if key.fileobj is self._listener:
                        connection, _ = self._listener.accept()
                        self.accepted += 1
                        selector.register(connection, selectors.EVENT_READ)
                    elif not self._read(key.fileobj):  # type: ignore[arg-type]
                        selector.unregister(key.fileobj)
                        key.fileobj.close()  # type: ignore[union-attr]
        finally:
            for key in list(selector.get_map().values()):
                key.fileobj.close()  # type: ignore[union-attr]
            selector.close()

    @staticmethod
    def _read(connection: socket.socket) -> bool:
        """Read and drop what the client sends; False once it has closed."""
        try:
            return bool(connection.recv(65536))
        except OSError:
            return False


@pytest.fixture
def silent_server() -> Iterator[SilentServer]:
    with SilentServer() as server:
        yield server


def _exporting_to(endpoint: str, protocol: str) -> dict[str, str]:
    return {
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_METRICS_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_PROTOCOL": PROTOCOLS[protocol],
        "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
    }


def _assert_host_unchanged(faulted: Run, bare: Run, what: str) -> None:
    """Same output, same exit code, no error of the package's own, and an exit bounded by the
    export timeouts (a traces and a metrics exporter, each possibly finishing an export in
    flight and then its last one at shutdown)."""
    assert faulted.stdout == bare.stdout, f"{what}: the host's output changed:\n{faulted.stderr}"
    assert faulted.returncode == bare.returncode, (
        f"{what}: exit code {faulted.returncode}, not {bare.returncode}:\n{faulted.stderr}"
    )
    assert "execstatus" not in faulted.stderr, f"{what}: the package failed:\n{faulted.stderr}"
    bound = bare.seconds + 4 * EXPORT_TIMEOUT_SECONDS + 5
    assert faulted.seconds < bound, f"{what}: exited after {faulted.seconds:.1f} s (> {bound:.1f})"


def _count_endpoint_run() -> None:
    # faults_injected: one per run against a failing endpoint (the endpoint kind is the fault;
    # the exporters' many failed attempts in that run are not counted one by one).
    FIGURES.faults_injected += 1
    FIGURES.executions += RUNS * (STEPS + 1)


@pytest.mark.parametrize("protocol", list(PROTOCOLS))
def test_endpoint_down_changes_nothing_for_the_host(script: Path, bare: Run, protocol: str):
    """OTLP over ``protocol`` to a closed loopback port: the host's output and exit code are
    unchanged, and it exits within the export timeouts."""
    endpoint = f"http://127.0.0.1:{_closed_port()}"
    faulted = _run(script, _exporting_to(endpoint, protocol))
    _assert_host_unchanged(faulted, bare, f"{protocol} to a closed port")
    _count_endpoint_run()


@pytest.mark.parametrize("protocol", list(PROTOCOLS))
def test_endpoint_never_answering_changes_nothing_for_the_host(
    script: Path, bare: Run, silent_server: SilentServer, protocol: str
):
    """OTLP over ``protocol`` to a server that accepts and never replies: the exporters wait
    on their own threads, up to their timeout; the host's output and exit code are
    unchanged, and it exits within the export timeouts instead of hanging."""
    faulted = _run(script, _exporting_to(f"http://127.0.0.1:{silent_server.port}", protocol))
    assert silent_server.accepted > 0, "the exporters never connected: the test proved nothing"
    _assert_host_unchanged(faulted, bare, f"{protocol} to a never-answering server")
    _count_endpoint_run()


# -- the real backends: one hostile execution in the batch -----------------------------------


def _start(span: dict) -> datetime:
    return datetime.fromisoformat(span["start_time"])


@pytest.mark.e2e
def test_one_hostile_execution_costs_nothing_of_its_batch(otlp_backends: Backends, script: Path):
    """49 ordinary steps and one hostile one, with their run, exported over OTLP/HTTP in one
    batch (the batch processor's schedule is longer than the run, so its one export is at
    exit): Phoenix stores all 51 spans as emitted, the hostile one with U+FFFD for its lone
    surrogates, no attempt, and a start in the run's time; VictoriaMetrics has every sample
    of the histogram, the hostile step's under its cleaned name."""
    run = run_exporting(
        script,
        "hostile",
        backends=otlp_backends,
        traces_protocol="http",
        overrides={"OTEL_BSP_SCHEDULE_DELAY": "600000"},
    )
    assert run.output == ["batch done"], run.output
    stored = fetch_stored(run, otlp_backends)  # every span and series exactly as emitted
    FIGURES.executions += ORDINARY + 2
    FIGURES.hostile_inputs += 4  # name, error type, millisecond timestamps, attempt
    FIGURES.spans(expected=ORDINARY + 2, exported=len(stored.spans))

    (pipeline,) = stored.named("RUN hostile-batch")
    steps = {span["name"]: span for span in stored.children(pipeline)}
    assert set(steps) == {f"step-{index}" for index in range(ORDINARY)} | {REPLACED_NAME}, (
        f"steps stored: {sorted(steps)}"
    )
    assert len(stored.spans) == ORDINARY + 2, f"{len(stored.spans)} spans stored"
    hostile = steps[REPLACED_NAME]
    attributes = hostile["attributes"]
    assert attributes["cicd.pipeline.task.name"] == REPLACED_NAME, attributes
    assert attributes["error.type"] == REPLACED_ERROR, attributes
    assert hostile["status_code"] == "ERROR", hostile
    assert "execution.attempt" not in attributes, f"an attempt of 2**70 was kept: {attributes}"
    skew = abs((_start(hostile) - _start(pipeline)).total_seconds())
    assert skew < 600, f"a millisecond timestamp was read as seconds: {skew:.0f} s off its run"

    assert stored.transition_counts() == {
        ("queued", "running"): ORDINARY + 2,
        ("running", "succeeded"): ORDINARY,
        ("running", "failed"): 2,
    }
    assert stored.transition_counts(f'cicd_pipeline_task_name="{REPLACED_NAME}"') == {
        ("queued", "running"): 1,
        ("running", "failed"): 1,
    }
