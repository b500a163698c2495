"""A second process working on Tangle-like nodes another process queued, as Tangle's
orchestrator does with the runs its API server creates. Run under ``opentelemetry-instrument``;
it applies the Tangle preset to the model, as the instrumentation does to Tangle's own.

Usage: tangle_orchestrator.py DATABASE_URL
"""

from __future__ import annotations

import sys

from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session
from tangle_like import ContainerExecutionStatus as Status
from tangle_like import ExecutionNode

from opentelemetry_instrumentation_execstatus.adapters.tangle import instrument_execution_nodes


def main(url: str) -> None:
    instrument_execution_nodes(ExecutionNode)
    engine = create_engine(url)
    with Session(engine) as session:
        nodes = {
            node.task_id_in_parent_execution: node
            for node in session.scalars(
                select(ExecutionNode).where(
                    ExecutionNode.container_execution_status == Status.QUEUED
                )
            )
        }
        for node in nodes.values():
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
