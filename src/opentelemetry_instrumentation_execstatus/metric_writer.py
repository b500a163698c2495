"""Metric writing: the time an execution spent in the status it left, and
``execution.active``'s moves between statuses.

The histogram sample is recorded in the execution's span context, so its exemplars lead to
the trace (None: the current context, for work the orchestrator traces itself). A recording
that raises costs only its own sample. ``execution.active`` is counted by the package itself
(see ``counts``): a move changes two integers under one lock and cannot fail half-way.

Pipeline and task names go on the histogram only when ``names_on_metrics`` is on, and then
through a cardinality cap (``normalize.NameLimiter``), admitted once per execution.
"""

from __future__ import annotations

import functools
from typing import Any

from opentelemetry_instrumentation_execstatus import semconv
from opentelemetry_instrumentation_execstatus.config import ExecStatusConfig
from opentelemetry_instrumentation_execstatus.execution import Execution
from opentelemetry_instrumentation_execstatus.instruments import Instruments, cached_attributes
from opentelemetry_instrumentation_execstatus.normalize import NameLimiter
from opentelemetry_instrumentation_execstatus.safety import report_internal_error
from opentelemetry_instrumentation_execstatus.semconv import (
    ExecutionLevel,
    ExecutionStatus,
    Orchestrator,
)

_PIPELINE = ExecutionLevel.PIPELINE  # a module constant: see ``span_writer._PIPELINE``


class MetricWriter:
    """``execution.status_transition.duration`` and ``execution.active``."""

    def __init__(self, instruments: Instruments, config: ExecStatusConfig) -> None:
        self._duration = instruments.status_transition_duration
        self._active = instruments.active_executions
        # ``move_active(leaving, entering)``: one execution leaves the ``leaving`` series of
        # ``execution.active`` and enters the ``entering`` one (keys from its
        # ``active_series``; None: no series). The counts' own ``move``, called directly.
        self.move_active = self._active.move
        self._names_on_metrics = config.names_on_metrics
        self._pipeline_names = NameLimiter(config.name_cardinality_limit)
        self._task_names = NameLimiter(config.name_cardinality_limit)

    def admit(self, execution: Execution) -> None:
        """The labels ``execution``'s metrics carry: its ``execution.active`` series, and the
        pipeline and task names of its samples (``_OTHER`` beyond the cap; none when names
        are kept off metrics)."""
        execution.active_series = active_series(execution.orchestrator, execution.level)
        if self._names_on_metrics:
            execution.metric_pipeline = self._pipeline_names.admit(execution.pipeline_name)
            if execution.level is not _PIPELINE:
                execution.metric_task = self._task_names.admit(execution.name)

    def record_transition(
        self,
        execution: Execution,
        previous: ExecutionStatus,
        current: ExecutionStatus,
        elapsed_ns: int,
    ) -> None:
        """``elapsed_ns`` spent in ``previous`` (negative: 0), left for ``current``."""
        try:
            self._duration.record(
                elapsed_ns / 1e9 if elapsed_ns > 0 else 0.0,  # ``clamp_seconds``, for an int
                _transition_attributes(
                    execution.orchestrator,
                    execution.level,
                    execution.metric_pipeline,
                    execution.metric_task,
                    previous,
                    current,
                ),
                context=execution.context,
            )
        except Exception:
            report_internal_error("recording a status transition")


@functools.cache  # bounded by the enums: one per orchestrator and level
def active_series(
    orchestrator: Orchestrator, level: ExecutionLevel
) -> dict[ExecutionStatus | None, tuple[Orchestrator, ExecutionLevel, ExecutionStatus] | None]:
    """The ``execution.active`` key of each status an execution of ``orchestrator`` at
    ``level`` can be in, None for None: a move looks its two keys up, building none."""
    series: dict[Any, Any] = {status: (orchestrator, level, status) for status in ExecutionStatus}
    series[None] = None
    return series


@cached_attributes(maxsize=8192)
def _transition_attributes(
    orchestrator: Orchestrator,
    level: ExecutionLevel,
    pipeline: str | None,
    task: str | None,
    previous: ExecutionStatus,
    current: ExecutionStatus,
) -> dict[str, str]:
    attributes = {
        semconv.EXECUTION_STATUS_FROM: previous.value,
        semconv.EXECUTION_STATUS_TO: current.value,
        semconv.EXECUTION_ORCHESTRATOR: orchestrator.value,
        semconv.EXECUTION_LEVEL: level.value,
    }
    if pipeline is not None:
        attributes[semconv.CICD_PIPELINE_NAME] = pipeline
    if task is not None:
        attributes[semconv.CICD_PIPELINE_TASK_NAME] = task
    return attributes
