"""Real Celery processes for the tests: a prefork worker and client scripts, each started
zero-code under ``opentelemetry-instrument`` and exporting over OTLP/HTTP to a test receiver,
with a Redis broker and result backend.

A worker is ``celery -A <module> worker --pool=prefork -c N -E --loglevel=INFO``, ready when
its log says so, stopped with SIGTERM (Celery's warm shutdown, which lets the pool children
finish and exit normally) and only after a timeout with SIGKILL to its process group. Its log
is kept in a file; ``tail()`` is what a failing test shows.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from itertools import count
from pathlib import Path
from types import TracebackType

from otlp_receiver import pid_stamping_environment

APPS = Path(__file__).resolve().parent / "apps"
BIN = Path(sys.executable).parent
READY_TIMEOUT_SECONDS = 30.0
STOP_TIMEOUT_SECONDS = 20.0
CLIENT_TIMEOUT_SECONDS = 60.0
# Short, so that what a pool child made arrives while the test waits for it.
BSP_SCHEDULE_DELAY_MS = 200
# Worker options that only speed its start: no waiting (about 1 s) for replies from other
# workers at start (mingle), no following their events (gossip). Signals are the same.
QUICK_START = ("--without-mingle", "--without-gossip")
METRIC_EXPORT_INTERVAL_MS = 500
_numbers = count(1)


@dataclass
class CeleryEnvironment:
    """Where the processes of one test connect to, and the environment they run with."""

    broker_url: str
    result_backend: str
    otlp_endpoint: str
    directory: Path  # logs and the exporters' pid-stamping hook
    extra: dict[str, str] = field(default_factory=dict)
    apps: Path = APPS  # where the processes import their application from

    def environment(self, service_name: str, extra: dict[str, str] | None = None) -> dict[str, str]:
        """This process's environment without its OTEL_* settings, plus the test's: OTLP/HTTP
        to the receiver, each request saying its process's pid, the apps importable."""
        inherited = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
        stamping = pid_stamping_environment(self.directory / "pid-stamping")
        python_path = [str(self.apps), stamping.pop("PYTHONPATH"), inherited.get("PYTHONPATH", "")]
        return {
            **inherited,
            **stamping,
            "PYTHONPATH": os.pathsep.join(entry for entry in python_path if entry),
            "CELERY_BROKER_URL": self.broker_url,
            "CELERY_RESULT_BACKEND": self.result_backend,
            "OTEL_SERVICE_NAME": service_name,
            "OTEL_TRACES_EXPORTER": "otlp",
            "OTEL_METRICS_EXPORTER": "otlp",
            "OTEL_LOGS_EXPORTER": "none",
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
            "OTEL_EXPORTER_OTLP_ENDPOINT": self.otlp_endpoint,
            "OTEL_EXPORTER_OTLP_TIMEOUT": "5",
            "OTEL_BSP_SCHEDULE_DELAY": str(BSP_SCHEDULE_DELAY_MS),
            "OTEL_METRIC_EXPORT_INTERVAL": str(METRIC_EXPORT_INTERVAL_MS),
            # process.pid (of the process that set the SDK up) among the resource attributes.
            "OTEL_EXPERIMENTAL_RESOURCE_DETECTORS": "otel,process",
            **self.extra,
            **(extra or {}),
        }

    def worker(
        self,
        app: str = "tasks_app",
        *,
        concurrency: int = 2,
        max_tasks_per_child: int | None = None,
        env: dict[str, str] | None = None,
        args: tuple[str, ...] = (),
        quick_start: bool = True,
        service_name: str = "celery-worker",
    ) -> CeleryWorker:
        """A worker, not yet started (``start()`` or ``with``); ``args`` are more worker
        options, ``quick_start`` adds QUICK_START."""
        number = next(_numbers)
        options = [f"--concurrency={concurrency}", *(QUICK_START if quick_start else ()), *args]
        if max_tasks_per_child is not None:
            options.append(f"--max-tasks-per-child={max_tasks_per_child}")
        return CeleryWorker(
            app=app,
            options=options,
            environment=self.environment(service_name, env),
            log=self.directory / f"worker-{number}.log",
            hostname=f"worker{number}-{os.getpid()}@%h",
        )

    def run_client(
        self,
        code: str,
        *,
        env: dict[str, str] | None = None,
        service_name: str = "celery-client",
        timeout: float = CLIENT_TIMEOUT_SECONDS,
    ) -> subprocess.CompletedProcess[str]:
        """Run Python ``code`` (``python -c``) under ``opentelemetry-instrument`` with the same
        environment as the workers; its output is returned, a non-zero exit fails the test."""
        completed = subprocess.run(
            [str(BIN / "opentelemetry-instrument"), sys.executable, "-c", code],
            env=self.environment(service_name, env),
            cwd=self.directory,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        assert completed.returncode == 0, (
            f"client exited {completed.returncode}:\n{completed.stdout}\n{completed.stderr}"
        )
        return completed


class CeleryWorker:
    """One ``celery worker`` process (prefork pool) under ``opentelemetry-instrument``."""

    def __init__(
        self, app: str, options: list[str], environment: dict[str, str], log: Path, hostname: str
    ) -> None:
        self.command = [
            str(BIN / "opentelemetry-instrument"),
            str(BIN / "celery"),
            *("-A", app, "worker", "--pool=prefork", "-E", "--loglevel=INFO"),
            f"--hostname={hostname}",
            *options,
        ]
        self.environment = environment
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None
        self.ready_seconds: float | None = None  # from start to the log's "ready."
        self.exit_code: int | None = None

    @property
    def pid(self) -> int:
        """The worker's main process (``opentelemetry-instrument`` execs into Celery)."""
        assert self.process is not None, "worker not started"
        return self.process.pid

    def child_pids(self) -> list[int]:
        """The pool's processes now (children of the main process)."""
        children: list[int] = []
        for task in Path(f"/proc/{self.pid}/task").glob("*"):
            try:
                children.extend(int(pid) for pid in (task / "children").read_text().split())
            except OSError:
                continue
        return sorted(children)

    def start(self) -> CeleryWorker:
        started = time.monotonic()
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                self.command,
                env=self.environment,
                cwd=self.log.parent,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own group: the pool is killed with it if need be
            )
        try:
            self._wait_until_ready()
        except BaseException:
            self.stop()
            raise
        self.ready_seconds = time.monotonic() - started
        return self

    def _wait_until_ready(self) -> None:
        assert self.process is not None
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        while not re.search(r"@\S+ ready\.", self.log.read_text(errors="replace")):
            if self.process.poll() is not None:
                raise RuntimeError(f"celery worker exited at start:\n{self.tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"celery worker not ready in time:\n{self.tail()}")
            time.sleep(0.05)

    def stop(self, timeout: float = STOP_TIMEOUT_SECONDS) -> int | None:
        """Warm shutdown (SIGTERM), waiting for the exit; SIGKILL to the group after
        ``timeout``. Returns the exit code (negative: the signal that ended it)."""
        if self.process is None or self.exit_code is not None:
            return self.exit_code
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.exit_code = self.process.returncode
        return self.exit_code

    def tail(self, lines: int = 40) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def __enter__(self) -> CeleryWorker:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
