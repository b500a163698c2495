"""Tangle's launchers as workers, on a module whose classes are shaped like Tangle's launchers
(Tangle itself is not on the package registries), imported under Tangle's own module name so
that the instrumentation wraps it: launch = spawn, refresh = health check, terminate = drain."""

from __future__ import annotations

import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType, ModuleType
from typing import Callable

import pytest
from support import Telemetry

from opentelemetry_instrumentation_execstatus import ExecStatusInstrumentor, telemetry
from opentelemetry_instrumentation_execstatus.adapters.tangle import TangleAdapter

WRAPPED = (
    ("DockerContainerLauncher", "launch_container_task"),
    ("DockerContainerLauncher", "get_refreshed_launched_container_from_dict"),
    ("LaunchedDockerContainer", "terminate"),
)


def _originals(launchers: ModuleType) -> list[object]:
    return [vars(getattr(launchers, cls))[method] for cls, method in WRAPPED]


def test_launch_refresh_terminate_are_spawn_health_drain(
    instrument: Callable[..., Telemetry], launchers: ModuleType
) -> None:
    originals = _originals(launchers)
    otel = instrument()
    assert all(
        wrapped is not original for wrapped, original in zip(_originals(launchers), originals)
    )
    launcher = launchers.HostPathLauncher()

    running = launcher.launch_container_task(component_spec="train")
    assert isinstance(running, launchers.LaunchedDockerContainer)
    for spec, error in (("bad", launchers.LauncherError), ("slow", TimeoutError)):
        with pytest.raises(error):
            launcher.launch_container_task(component_spec=spec)
    assert launcher.get_refreshed_launched_container_from_dict({"name": "train"}).name == "train"
    with pytest.raises(launchers.LauncherError):
        launcher.get_refreshed_launched_container_from_dict({"gone": True})
    running.terminate()
    with pytest.raises(launchers.LauncherError):
        launchers.LaunchedDockerContainer("stuck").terminate()

    assert otel.spawns() == {
        ("success", None): 1,
        ("failure", "other"): 1,
        ("failure", "timeout"): 1,
    }
    health = otel.sums_by("execution.worker.health_checks", "execution.worker.health.result")
    assert health == {"pass": 1, "fail": 1}
    drains = otel.sums_by("execution.worker.drains", "execution.worker.outcome")
    assert drains == {"success": 1, "failure": 1}
    assert otel.sums_by("execution.worker.spawns", "execution.orchestrator") == {"tangle": 3}
    # terminate() only asks for the end: no drain duration that would not be the drain's.
    assert otel.points("execution.worker.drain.duration") == []

    ExecStatusInstrumentor().uninstrument()
    assert _originals(launchers) == originals


@contextmanager
def _interrupted_after(seconds: float, interrupt: BaseException) -> Iterator[None]:
    """Raise ``interrupt`` in the main thread after ``seconds``, from a signal handler, as
    Ctrl-C (``KeyboardInterrupt``) or a SIGTERM handler calling ``sys.exit`` would."""

    def handler(_signal: int, _frame: FrameType | None) -> None:
        raise interrupt

    previous = signal.signal(signal.SIGALRM, handler)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@pytest.mark.skipif(not hasattr(signal, "setitimer"), reason="needs POSIX interval timers")
@pytest.mark.parametrize("interrupt", [KeyboardInterrupt, SystemExit], ids=lambda cls: cls.__name__)
def test_an_interrupted_launch_is_a_failed_spawn_and_a_refresh_no_verdict(
    instrument: Callable[..., Telemetry], launchers: ModuleType, interrupt: type[BaseException]
) -> None:
    """The rule for workers: an interrupted launch started no worker (``context_canceled``);
    an interrupted refresh said nothing of the container (not counted); an interrupted
    termination did not stop it (a failed drain). The interrupt reaches the caller as it was."""
    otel = instrument()
    launcher = launchers.DockerContainerLauncher()
    calls = (
        lambda: launcher.launch_container_task(component_spec="huge"),
        lambda: launcher.get_refreshed_launched_container_from_dict({"unresponsive": True}),
        lambda: launchers.LaunchedDockerContainer("stubborn").terminate(),
    )
    for call in calls:
        error = interrupt()
        with pytest.raises(interrupt) as caught, _interrupted_after(0.05, error):
            call()
        assert caught.value is error

    assert otel.spawns() == {("failure", "context_canceled"): 1}
    assert otel.points("execution.worker.health_checks") == []
    drains = otel.sums_by("execution.worker.drains", "execution.worker.outcome")
    assert drains == {"failure": 1}
    assert otel.points("execution.worker.drain.duration") == []


def test_a_module_that_cannot_be_wrapped_whole_is_left_as_it_was(
    instrument: Callable[..., Telemetry],
    launchers: ModuleType,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    (tmp_path / "tangle_sealed_launchers.py").write_text(
        Path(launchers.__file__).read_text()
        + """

class Sealed(type):
    def __setattr__(cls, name, value):
        raise TypeError("sealed")


class SealedLauncher(metaclass=Sealed):
    def terminate(self):
        pass
"""
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    module = __import__("tangle_sealed_launchers")
    original = module.DockerContainerLauncher.__dict__["launch_container_task"]
    instrument()
    adapter = TangleAdapter(telemetry.current())
    try:
        with pytest.raises(TypeError):
            adapter.instrument_launchers(module)
        assert module.DockerContainerLauncher.__dict__["launch_container_task"] is original
    finally:
        sys.modules.pop("tangle_sealed_launchers", None)
