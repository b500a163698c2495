"""The Celery application of the prefork-worker benchmark (``bench_celery_worker.py``), imported
by its worker and client processes: one task returning a constant, written as a user would
(nothing of this project's imported). Broker and result backend come from the environment
the harness sets (``CELERY_BROKER_URL``, ``CELERY_RESULT_BACKEND``). Unlike the tests' app, no
``task_track_started``: a task's only result write is its result."""

from __future__ import annotations

import os

from celery import Celery

app = Celery(
    "celery_worker_app",
    broker=os.environ["CELERY_BROKER_URL"],
    backend=os.environ["CELERY_RESULT_BACKEND"],
)
app.conf.broker_connection_retry_on_startup = True


@app.task(name="bench.constant")
def constant() -> int:
    return 1
