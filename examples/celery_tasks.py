"""A Celery application, unmodified: nothing here knows it is instrumented.

Run a worker and a client, each under ``opentelemetry-instrument``, with a Redis broker:

    export CELERY_BROKER_URL=redis://127.0.0.1:6379/0 CELERY_RESULT_BACKEND=redis://127.0.0.1:6379/1
    opentelemetry-instrument celery -A celery_tasks worker --pool=prefork -c 2
    opentelemetry-instrument python celery_client.py

``scripts/demo --orchestrator celery`` does all of it, with a Redis of its own.
"""

from __future__ import annotations

import os
import time

from celery import Celery

app = Celery(
    "celery_tasks",
    broker=os.environ.get("CELERY_BROKER_URL", "redis://127.0.0.1:6379/0"),
    backend=os.environ.get("CELERY_RESULT_BACKEND", "redis://127.0.0.1:6379/1"),
)
app.conf.worker_hijack_root_logger = False


@app.task
def fetch(order: int) -> dict[str, int]:
    """Read an order (a short wait stands for the database)."""
    time.sleep(0.05)
    return {"order": order, "amount": 10 * order}


@app.task
def total(orders: list[dict[str, int]]) -> int:
    return sum(order["amount"] for order in orders)


@app.task(bind=True, max_retries=2)
def notify(self, amount: int) -> str:
    """Fails the first time (the mail server is busy), then succeeds on its retry."""
    if self.request.retries == 0:
        raise self.retry(countdown=0.5)
    return f"sent: {amount}"


@app.task
def reconcile() -> None:
    raise ValueError("ledger out of balance")
