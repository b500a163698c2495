"""A client of ``celery_tasks``, unmodified: it publishes tasks and waits for their results.

Under ``opentelemetry-instrument`` its current span travels with each task, so every task's
span in the worker joins this script's trace (see ``celery_tasks.py``).
"""

from __future__ import annotations

import sys

from celery import chord
from celery_tasks import fetch, notify, reconcile, total
from opentelemetry import trace

TIMEOUT = 30


def main() -> None:
    tracer = trace.get_tracer("celery_client")
    with tracer.start_as_current_span("nightly close"):
        amount = chord(fetch.s(order) for order in range(1, 4))(total.s()).get(timeout=TIMEOUT)
        print("total:", amount)
        print(notify.delay(amount).get(timeout=TIMEOUT))
        try:
            reconcile.delay().get(timeout=TIMEOUT)
        except ValueError as error:
            print("reconcile failed:", error)


if __name__ == "__main__":
    sys.exit(main())
