"""Tangle's launchers as workers, on a module whose classes are shaped like Tangle's launchers
(Tangle itself is not on the package registries): launch = spawn, refresh = health check,
terminate = drain."""

from __future__ import annotations

import sys
from pathlib import Path
from types import ModuleType

import pytest

from opentelemetry_instrumentation_execstatus.adapters.tangle import instrument_launchers

LAUNCHERS = '''
class LauncherError(RuntimeError):
    pass


class LaunchedDockerContainer:
    def __init__(self, name):
        self.name = name

    def terminate(self):
        if self.name == "stuck":
            raise LauncherError("cannot stop")


class DockerContainerLauncher:
    def launch_container_task(self, *, component_spec, **_):
        if component_spec == "bad":
            raise LauncherError("pull failed")
        if component_spec == "slow":
            raise TimeoutError("no pod")
        return LaunchedDockerContainer(component_spec)

    def get_refreshed_launched_container_from_dict(self, launcher_data):
        if launcher_data.get("gone"):
            raise LauncherError("container not found")
        return LaunchedDockerContainer(launcher_data["name"])


class HostPathLauncher(DockerContainerLauncher):
    """Inherits every method: covered by its base's wrappers."""
'''


@pytest.fixture
def launchers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    (tmp_path / "tangle_shaped_launchers.py").write_text(LAUNCHERS)
    monkeypatch.syspath_prepend(str(tmp_path))
    module = __import__("tangle_shaped_launchers")
    yield module
    sys.modules.pop("tangle_shaped_launchers", None)


def test_launch_refresh_terminate_are_spawn_health_drain(instrument, launchers):
    otel = instrument()
    original_launch = launchers.DockerContainerLauncher.__dict__["launch_container_task"]
    undo = instrument_launchers(launchers)
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

    undo()
    assert launchers.DockerContainerLauncher.__dict__["launch_container_task"] is original_launch


def test_a_module_that_cannot_be_wrapped_whole_is_left_as_it_was(tmp_path, monkeypatch):
    (tmp_path / "tangle_sealed_launchers.py").write_text(
        LAUNCHERS
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
    try:
        with pytest.raises(TypeError):
            instrument_launchers(module)
        assert module.DockerContainerLauncher.__dict__["launch_container_task"] is original
    finally:
        sys.modules.pop("tangle_sealed_launchers", None)
