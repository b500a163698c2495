"""A plain Celery application for the tests, written as a user would: nothing of this
project's is imported. Broker and result backend come from the environment the harness sets
(``CELERY_BROKER_URL``, ``CELERY_RESULT_BACKEND``)."""

from __future__ import annotations

import os
import time

from celery import Celery
from opentelemetry import trace

app = Celery(
    "tasks_app",
    broker=os.environ["CELERY_BROKER_URL"],
    backend=os.environ["CELERY_RESULT_BACKEND"],
)
app.conf.broker_connection_retry_on_startup = True
app.conf.task_track_started = True  # a client can wait for a task to be running


@app.task
def add(x: int, y: int) -> int:
    return x + y


@app.task
def fail() -> None:
    raise ValueError("failed on purpose")


@app.task(bind=True, max_retries=3)
def flaky(self) -> str:
    """Fails its first attempt and asks for a retry; succeeds the second time."""
    if self.request.retries == 0:
        raise self.retry(exc=RuntimeError("first attempt fails"), countdown=0.2)
    return f"succeeded after {self.request.retries} retry"


@app.task
def slow(seconds: float) -> float:
    """Sleeps: something to revoke (with terminate) while it runs."""
    time.sleep(seconds)
    return seconds


@app.task
def total(values: list[int]) -> int:
    """A chord's body: the sum of its header's results."""
    return sum(values)


@app.task
def traced(name: str = "inside") -> int:
    """Makes a span with the global tracer, whatever installed one (``opentelemetry-instrument``
    here); returns the pid of the process it ran in."""
    with trace.get_tracer("tests.celery.tasks_app").start_as_current_span(name):
        return os.getpid()
