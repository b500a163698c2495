"""A second process working on Tangle-like nodes another process queued, as Tangle's
orchestrator does with the runs its API server creates. Run under ``opentelemetry-instrument``
with the Tangle-shaped package on ``PYTHONPATH``: like Tangle's own orchestrator, it imports
Tangle's modules after the instrumentation started, which patches them on import.

Usage: tangle_orchestrator.py DATABASE_URL
"""

from __future__ import annotations

import sys

from cloud_pipelines_backend.backend_types_sql import ContainerExecutionStatus as Status
from cloud_pipelines_backend.backend_types_sql import ExecutionNode
from cloud_pipelines_backend.launchers.local_docker_launchers import DockerContainerLauncher
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session


def main(url: str) -> None:
    engine = create_engine(url)
    launcher = DockerContainerLauncher()
    with Session(engine) as session:
        nodes = {
            node.task_id_in_parent_execution: node
            for node in session.scalars(
                select(ExecutionNode).where(
                    ExecutionNode.container_execution_status == Status.QUEUED
                )
            )
        }
        for task_id, node in nodes.items():
            launcher.launch_container_task(component_spec=task_id)
            node.container_execution_status = Status.PENDING
        session.commit()
        for node in nodes.values():
            node.container_execution_status = Status.RUNNING
        session.commit()
        nodes["train"].container_execution_status = Status.PENDING  # suspended
        session.commit()
        nodes["train"].container_execution_status = Status.RUNNING
        nodes["evaluate"].container_execution_status = Status.FAILED
        session.commit()
        nodes["train"].container_execution_status = Status.SUCCEEDED
        session.commit()


if __name__ == "__main__":
    main(sys.argv[1])
