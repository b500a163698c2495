"""The Celery harness on real parts, without this project's adapter (disabled in the worker):
Redis, a prefork worker under ``opentelemetry-instrument`` exporting to the test receiver,
and a client process."""

from __future__ import annotations

from typing import Any, Callable

from otlp_receiver import OtlpReceiver
from redis_server import RedisServer
from worker import CeleryWorker

# Neither this project's adapter nor, should it be installed, the contrib Celery instrumentation.
WITHOUT_ADAPTER = {"OTEL_PYTHON_DISABLED_INSTRUMENTATIONS": "execstatus,celery"}


def test_redis_answers(redis_server: RedisServer) -> None:
    assert redis_server.ping()
    assert redis_server.url(1) == f"redis://127.0.0.1:{redis_server.port}/1"


def test_a_pool_childs_span_reaches_the_receiver(
    celery_worker: Callable[..., CeleryWorker],
    celery_client: Callable[..., Any],
    otlp_receiver: OtlpReceiver,
) -> None:
    worker = celery_worker(env=WITHOUT_ADAPTER)
    children = worker.child_pids()
    assert len(children) == 2, worker.tail()

    completed = celery_client(
        "from tasks_app import add, traced\n"
        "print(add.delay(2, 3).get(timeout=10))\n"
        "print(traced.delay().get(timeout=10))\n",
        env=WITHOUT_ADAPTER,
    )
    result, task_pid = completed.stdout.split()
    assert result == "5"
    assert int(task_pid) in children  # the task ran in a pool child

    (inside,) = otlp_receiver.wait_for(lambda r: r.spans("inside"), what="the span 'inside'")
    assert inside.pid == int(task_pid)  # exported by that child itself
    assert inside.resource["service.name"] == "celery-worker"
    assert inside.scope == "tests.celery.tasks_app" and inside.parent_span_id is None
    assert worker.stop() == 0  # warm shutdown
    # No check of the receiver's errors here: without the adapter, the pool children keep the
    # connection they inherited from the worker (opentelemetry-python#4994), and a request that
    # two processes interleave on it is refused now and then. The worker tests, with the
    # adapter, require none.
