"""Fixtures for Celery across processes: one Redis and one OTLP receiver per session, a clean
broker and receiver per test, and workers and clients under ``opentelemetry-instrument``.

No ``__init__.py`` here: with one, ``tests/`` on the path would make this directory shadow the
real ``celery`` package.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any, Callable

import pytest
from otlp_receiver import OtlpReceiver
from redis_server import RedisServer
from worker import CeleryEnvironment, CeleryWorker


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


@pytest.fixture(scope="session")
def otlp_receiver_session() -> Iterator[OtlpReceiver]:
    with OtlpReceiver() as receiver:
        yield receiver


@pytest.fixture
def otlp_receiver(otlp_receiver_session: OtlpReceiver) -> OtlpReceiver:
    """The session's receiver, emptied for this test (the previous test's processes have all
    exited, so nothing of theirs arrives late)."""
    otlp_receiver_session.clear()
    return otlp_receiver_session


@pytest.fixture
def celery_environment(
    redis_server: RedisServer, otlp_receiver: OtlpReceiver, tmp_path: Path
) -> CeleryEnvironment:
    """Broker on db 0 and results on db 1 of a Redis emptied for this test, so that no
    message or result of an earlier test is left."""
    redis_server.flush_all()
    return CeleryEnvironment(
        broker_url=redis_server.url(0),
        result_backend=redis_server.url(1),
        otlp_endpoint=otlp_receiver.endpoint,
        directory=tmp_path,
    )


@pytest.fixture
def celery_worker(
    celery_environment: CeleryEnvironment, request: pytest.FixtureRequest
) -> Iterator[Callable[..., CeleryWorker]]:
    """Start a ready worker: ``celery_worker(app="tasks_app", *, concurrency=2,
    max_tasks_per_child=None, env=None, args=(), quick_start=True, service_name="celery-worker")``.
    Workers
    still running are stopped (warm shutdown) after the test."""
    workers: list[CeleryWorker] = []
    request.node.celery_workers = workers  # their logs are shown if the test fails

    def _start(app: str = "tasks_app", **options: Any) -> CeleryWorker:
        worker = celery_environment.worker(app, **options)
        workers.append(worker)
        return worker.start()

    yield _start
    for worker in workers:
        worker.stop()


@pytest.fixture
def celery_client(
    celery_environment: CeleryEnvironment,
) -> Callable[..., Any]:
    """Run client code: ``celery_client(code, *, env=None, service_name="celery-client",
    timeout=60) -> subprocess.CompletedProcess[str]`` (a non-zero exit fails)."""
    return celery_environment.run_client


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator:
    """A failing test shows the end of each of its workers' logs."""
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        for worker in getattr(item, "celery_workers", []):
            report.sections.append((f"celery worker log {worker.log.name}", worker.tail()))
