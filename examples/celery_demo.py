"""Celery for the demo: the example tasks (``celery_tasks``) run by a worker on a thread of this
process (Celery's own test worker, solo pool), with a Redis of its own as broker and result
backend, and the client (``celery_client``) publishing to it. Publish, receive, run, a retry
and a chord go through Redis and the worker's consumer as they do between processes, and every
span and sample lands in this process's SDK, so the demo can print them. For a prefork worker
and a client in processes of their own, under ``opentelemetry-instrument``, see
``celery_tasks.py``.
"""

from __future__ import annotations

import gc
import os
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1] / "tests"


def run(runs: int) -> None:
    # The test suite's Redis: Debian's redis-server (fetched once into .backends/redis when
    # the machine has none) on a free loopback port, without persistence, stopped afterwards.
    sys.path.insert(0, str(TESTS))
    from redis_server import RedisServer

    with RedisServer() as redis:
        os.environ["CELERY_BROKER_URL"] = redis.url(0)
        os.environ["CELERY_RESULT_BACKEND"] = redis.url(1)
        import celery_client
        import celery_tasks
        from celery.contrib.testing.worker import start_worker

        with start_worker(celery_tasks.app, pool="solo", perform_ping_check=False):
            for _ in range(runs):
                celery_client.main()
        # Results still referenced unsubscribe from Redis when collected: while it is up.
        gc.collect()
        celery_tasks.app.close()
