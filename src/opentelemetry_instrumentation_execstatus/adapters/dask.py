"""Dask distributed: the scheduler's task states as statuses, each graph a pipeline run, and the
workers, from a scheduler plugin of this package that every scheduler gets when it is made.

What Dask does (distributed read and run): a client sends each graph to the scheduler
(``update_graph``), which moves every task through its states, on its event loop, telling each
``SchedulerPlugin`` at every move (``transition(key, start, finish, ...)``): ``released`` (known,
not wanted yet), ``waiting`` (for its dependencies), ``queued`` (ready, held at the scheduler
until a worker has room), ``no-worker`` (ready, no worker can run it), ``processing`` (sent to a
worker), ``memory`` (its result is held by a worker), ``erred``, ``forgotten``. A task that goes
back from ``processing`` to ``released`` lost its worker, or failed with retries left: it runs
again. Workers join and leave the scheduler (``add_worker``, ``remove_worker``).

The scheduler spends a few hundred microseconds on a task and a graph may hold millions: a
span, or an in-flight record of the tracker, per task would cost more than the scheduler
spends on it. So a task is a step execution whose state the scheduler keeps (the tracker's
``kept_series``: its labels, one series per task prefix, the bounded part of a key, never the
key), and the plugin keeps of it only its status, since when, and its graph's run; each change
is one histogram sample (the time in the status it left) and a move of ``execution.active``:

=================  =============  ====================================================
Dask state         status         what the time in it measures
=================  =============  ====================================================
``waiting``        ``waiting``    waiting for its dependencies
``queued``         ``queued``     ready, queued at the scheduler for a worker's room
``no-worker``      ``pending``    ready, and no worker can run it (its resources)
``processing``     ``running``    on a worker, until its result or error is back
``memory``         ``succeeded``
``erred``          ``failed``
``forgotten``      ``cancelled``  released by its client before it ended
``released``       ``retrying``   from ``processing``: it runs again
=================  =============  ====================================================

A ``released`` from any other state changes nothing (the task is being cancelled, and will
be forgotten, or its result was lost and it will be computed again, as a new execution).

Each graph is a pipeline run (``RUN <prefixes>``): ``running`` from its ``update_graph`` to the
end of the last of its tasks, ``failed`` if one failed, ``cancelled`` if one was forgotten
first. Its tasks are those of the graph the scheduler did not already hold.
"""

from __future__ import annotations

from typing import Any

from opentelemetry_instrumentation_execstatus.adapters.base import Adapter
from opentelemetry_instrumentation_execstatus.adapters.calls import observe_call
from opentelemetry_instrumentation_execstatus.patching import Patch
from opentelemetry_instrumentation_execstatus.semconv import Orchestrator

PLUGIN_NAME = "opentelemetry-execstatus"
"""The name the plugin has among the scheduler's plugins."""


class DaskAdapter(Adapter):
    """Every Dask scheduler made in this process gets the plugin (``dask_plugin``)."""

    name = "dask"
    orchestrator = Orchestrator.DASK
    top_module = "distributed"
    distribution = "distributed"
    supported = ">= 2024.1"

    def patches(self) -> list[Patch]:
        created = observe_call(
            on_call=_the_scheduler, on_success=self._add_plugin, name="dask scheduler"
        )
        return [Patch("distributed.scheduler", "Scheduler.__init__", created)]

    def _add_plugin(self, scheduler: Any, _result: Any) -> None:
        if self.is_off():
            return
        # Imported here: it subclasses distributed's SchedulerPlugin, loaded by now.
        from opentelemetry_instrumentation_execstatus.adapters.dask_plugin import (
            ExecStatusSchedulerPlugin,
        )

        plugin = ExecStatusSchedulerPlugin(self, scheduler)
        scheduler.add_plugin(plugin, name=PLUGIN_NAME, idempotent=True)


def _the_scheduler(scheduler: Any, _args: tuple, _kwargs: dict) -> Any:
    return scheduler
