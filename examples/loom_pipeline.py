"""A small loom ETL pipeline, with no instrumentation code in it.

Run it under ``opentelemetry-instrument`` to see its runs, processes and steps as spans::

    opentelemetry-instrument --traces_exporter console --metrics_exporter console \\
        python examples/loom_pipeline.py

``NightlyOrders`` stages the day's orders (extract, then two steps in parallel) and builds a
report from them. The first attempt rejects the totals, as a bad batch would; the retry, with
the same correlation id, succeeds.
"""

from __future__ import annotations

import tempfile
from typing import Any, ClassVar

import polars as pl
from loom.core.observability.runtime import ObservabilityRuntime
from loom.etl import (
    ETLParams,
    ETLPipeline,
    ETLProcess,
    ETLRunner,
    ETLStep,
    Format,
    FromFile,
    IntoFile,
)
from loom.etl.backends.polars import PolarsSourceReader, PolarsTargetWriter


class OrdersParams(ETLParams, frozen=True):
    out_dir: str
    reject_totals: bool = False


class ExtractOrders(ETLStep[OrdersParams]):
    target = IntoFile("{out_dir}/orders.csv", format=Format.CSV)

    def execute(self, params: OrdersParams) -> pl.LazyFrame:
        return pl.LazyFrame({"country": ["fr", "de", "fr", "es"], "amount": [12.5, 8.0, 4.5, 20.0]})


class TotalByCountry(ETLStep[OrdersParams]):
    orders = FromFile("{out_dir}/orders.csv", format=Format.CSV)
    target = IntoFile("{out_dir}/totals.csv", format=Format.CSV)

    def execute(self, params: OrdersParams, *, orders: pl.LazyFrame) -> pl.LazyFrame:
        if params.reject_totals:
            raise ValueError("totals rejected: the batch is incomplete")
        return orders.group_by("country").agg(pl.col("amount").sum())


class CountOrders(ETLStep[OrdersParams]):
    orders = FromFile("{out_dir}/orders.csv", format=Format.CSV)
    target = IntoFile("{out_dir}/count.csv", format=Format.CSV)

    def execute(self, params: OrdersParams, *, orders: pl.LazyFrame) -> pl.LazyFrame:
        return orders.select(pl.len().alias("orders"))


class WriteReport(ETLStep[OrdersParams]):
    totals = FromFile("{out_dir}/totals.csv", format=Format.CSV)
    target = IntoFile("{out_dir}/report.csv", format=Format.CSV)

    def execute(self, params: OrdersParams, *, totals: pl.LazyFrame) -> pl.LazyFrame:
        return totals.sort("amount", descending=True)


class StageOrders(ETLProcess[OrdersParams]):
    # The inner list is a parallel group: loom runs those two steps on a thread pool.
    steps: ClassVar[list[Any]] = [ExtractOrders, [TotalByCountry, CountOrders]]


class BuildReport(ETLProcess[OrdersParams]):
    steps: ClassVar[list[Any]] = [WriteReport]


class NightlyOrders(ETLPipeline[OrdersParams]):
    processes: ClassVar[list[Any]] = [StageOrders, BuildReport]


def run(
    out_dir: str,
    *,
    reject_totals: bool = False,
    observability: ObservabilityRuntime | None = None,
    **options: Any,
) -> None:
    """Run ``NightlyOrders`` once on CSV files under ``out_dir``.

    ``observability`` is loom's own (observers, tracer); ``options`` go to ``ETLRunner.run``
    (``run_id``, ``correlation_id``, ``attempt``...).
    """
    runner = ETLRunner(PolarsSourceReader(out_dir), PolarsTargetWriter(out_dir), observability)
    runner.run(NightlyOrders, OrdersParams(out_dir=out_dir, reject_totals=reject_totals), **options)


def nightly(out_dir: str) -> None:
    """The night's job: the first attempt fails, the retry (same correlation id) succeeds."""
    try:
        run(out_dir, reject_totals=True, correlation_id="orders-2024-06-01", attempt=1)
    except ValueError as error:
        print(f"attempt 1 failed: {error}")
    run(out_dir, correlation_id="orders-2024-06-01", attempt=2)
    print("attempt 2 succeeded:", pl.read_csv(f"{out_dir}/report.csv").rows())


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as directory:
        nightly(directory)
