"""Tangle (the package shaped like it in ``tests/tangle``): one execution node, moved through
its statuses by a small orchestrator loop that launches its container with a real launcher.

Tangle keeps its executions in a database: the host is the orchestrator, which commits
``QUEUED``, launches the container (``PENDING``), commits ``RUNNING``, runs the step, and
commits how it ended: ``SUCCEEDED``, ``FAILED``, or for an interrupt ``CANCELLED`` after
terminating the container; the step's exception goes through. Only container nodes have a
status, so the node is the run's one span. The shaped modules are imported at each run: each
check imports the framework afresh (``conformance.frameworks``).
"""

from __future__ import annotations

import importlib
import tempfile
from pathlib import Path
from types import ModuleType
from typing import Any, ClassVar

from sqlalchemy import create_engine
from sqlalchemy.orm import Session

from conformance.scenarios import Reported, Scenario, ending_with_the_step
from conformance.workload import Outcome, Step

NODE = ("step", "step")


def _orchestrate(engine: Any, models: ModuleType, launchers: ModuleType, step: Step) -> str:
    """The host: one node through Tangle's statuses; returns the launched container's name."""
    status = models.ContainerExecutionStatus
    with Session(engine) as session:
        node = models.ExecutionNode(
            task_id_in_parent_execution="step", container_execution_status=status.QUEUED
        )
        session.add(node)
        session.commit()
        container = launchers.DockerContainerLauncher().launch_container_task(component_spec="step")
        node.container_execution_status = status.PENDING
        session.commit()
        node.container_execution_status = status.RUNNING
        session.commit()
        try:
            step()
        except Exception:
            node.container_execution_status = status.FAILED
            session.commit()
            raise
        except BaseException:
            container.terminate()
            node.container_execution_status = status.CANCELLED
            session.commit()
            raise
        node.container_execution_status = status.SUCCEEDED
        session.commit()
        return container.name


class TangleScenario(Scenario):
    step = NODE
    reported: ClassVar[Reported] = ending_with_the_step(NODE)

    def run(self, step: Step) -> Outcome:
        models = importlib.import_module("cloud_pipelines_backend.backend_types_sql")
        launchers = importlib.import_module(
            "cloud_pipelines_backend.launchers.local_docker_launchers"
        )
        with tempfile.TemporaryDirectory() as directory:
            engine = create_engine(f"sqlite:///{Path(directory) / 'tangle.db'}")
            try:
                models.TangleBase.metadata.create_all(engine)
                try:
                    container, raised = _orchestrate(engine, models, launchers, step), None
                except BaseException as error:
                    container, raised = None, error
                with Session(engine) as session:
                    statuses = [
                        node.container_execution_status.value
                        for node in session.query(models.ExecutionNode)
                    ]
            finally:
                engine.dispose()
        return Outcome((container, statuses), raised)


SCENARIO = TangleScenario()
