"""Launcher classes shaped like Tangle's (``cloud_pipelines_backend.launchers``): launch a
container, refresh a launched one from its stored data, terminate it. No Tangle code is copied.

Some calls take a while, as on a real Docker host: a large image takes a minute to pull, an
unresponsive daemon does not answer a refresh, a stubborn container does not stop. The tests
interrupt them there, as Ctrl-C or a SIGTERM handler would.
"""

from __future__ import annotations

import time
from typing import Any

WAIT_SECONDS = 60.0


class LauncherError(RuntimeError):
    pass


class LaunchedDockerContainer:
    def __init__(self, name: str) -> None:
        self.name = name

    def terminate(self) -> None:
        if self.name == "stuck":
            raise LauncherError("cannot stop")
        if self.name == "stubborn":
            time.sleep(WAIT_SECONDS)


class DockerContainerLauncher:
    def launch_container_task(self, *, component_spec: str, **_: Any) -> LaunchedDockerContainer:
        if component_spec == "bad":
            raise LauncherError("pull failed")
        if component_spec == "slow":
            raise TimeoutError("no pod")
        if component_spec == "huge":
            time.sleep(WAIT_SECONDS)  # pulling the image
        return LaunchedDockerContainer(component_spec)

    def get_refreshed_launched_container_from_dict(
        self, launcher_data: dict[str, Any]
    ) -> LaunchedDockerContainer:
        if launcher_data.get("gone"):
            raise LauncherError("container not found")
        if launcher_data.get("unresponsive"):
            time.sleep(WAIT_SECONDS)
        return LaunchedDockerContainer(launcher_data["name"])


class HostPathLauncher(DockerContainerLauncher):
    """Inherits every method: covered by its base's wrappers."""
