"""loom-kernel 9: a pipeline of one process of one step, run by ``ETLRunner`` on polars files.

loom ends the run with the step's exception: an ``Exception`` after its ERROR events, a
``KeyboardInterrupt`` with no event at all; both reach the caller as they were raised.
"""

from __future__ import annotations

import tempfile
from typing import Any, ClassVar

import polars as pl
from loom.etl import ETLParams, ETLPipeline, ETLProcess, ETLRunner, ETLStep, Format, IntoFile
from loom.etl.backends.polars import PolarsSourceReader, PolarsTargetWriter

from conformance.scenarios import Reported, Scenario, ending_with_the_step
from conformance.workload import Outcome, Step

RUN = ("pipeline", "RUN ConformancePipeline")
PROCESS = ("stage", "ConformanceProcess")
STEP = ("step", "ConformanceStep")


class ConformanceParams(ETLParams, frozen=True):
    out_dir: str


class ConformanceStep(ETLStep[ConformanceParams]):
    target = IntoFile("{out_dir}/out.csv", format=Format.CSV)
    body: ClassVar[Step | None] = None  # the step of the run in progress

    def execute(self, params: ConformanceParams) -> pl.LazyFrame:
        assert self.body is not None
        return pl.LazyFrame({"value": [self.body()]})


class ConformanceProcess(ETLProcess[ConformanceParams]):
    steps: ClassVar[list[Any]] = [ConformanceStep]


class ConformancePipeline(ETLPipeline[ConformanceParams]):
    processes: ClassVar[list[Any]] = [ConformanceProcess]


class LoomScenario(Scenario):
    step = STEP
    reported: ClassVar[Reported] = ending_with_the_step(RUN, PROCESS, STEP)

    def run(self, step: Step) -> Outcome:
        ConformanceStep.body = step
        with tempfile.TemporaryDirectory() as directory:
            runner = ETLRunner(PolarsSourceReader(directory), PolarsTargetWriter(directory))
            try:
                returned = runner.run(ConformancePipeline, ConformanceParams(out_dir=directory))
            except BaseException as error:
                return Outcome(None, error)
            finally:
                ConformanceStep.body = None
            return Outcome((returned, pl.read_csv(f"{directory}/out.csv").rows()), None)


SCENARIO = LoomScenario()
