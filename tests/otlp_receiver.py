"""An OTLP/HTTP receiver for tests: what real exporters in other processes sent, as plain values.

A ``ThreadingHTTPServer`` on a free loopback port taking ``POST /v1/traces``, ``/v1/metrics``
and ``/v1/logs`` (answered, not kept), protobuf bodies, gzip or deflate compressed or not. It
keeps HTTP/1.1 connections alive, as a collector does: a forked child inherits its parent's
pooled connection, so requests of two processes can arrive one after another on one socket,
and the receiver answers each of them in turn.

The exporting process's pid cannot be read from the socket (a shared socket has two owners),
and the resource's ``process.pid`` is there only with the ``process`` resource detector (SDK
1.45 re-detects it in a forked child; older ones keep the parent's). Exporters that should say
it use ``PidStampingSession``, which adds the current pid to each request;
``opentelemetry-instrument`` processes load it through the exporters' credential-provider entry
point (``pid_stamping_environment``).
"""

from __future__ import annotations

import contextlib
import gzip
import os
import socket
import sys
import threading
import time
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, Callable, TypeVar

import requests
from google.protobuf.message import DecodeError, Message
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span as ProtoSpan
from opentelemetry.proto.trace.v1.trace_pb2 import Status as ProtoStatus

HOST = "127.0.0.1"
PID_HEADER = "X-Exporter-Pid"
# The entry point name under which PidStampingSession is offered to the OTLP/HTTP exporters.
PID_STAMPING_PROVIDER = "execstatus-test-pid-stamping"
T = TypeVar("T")


@dataclass(frozen=True)
class Event:
    name: str
    time_ns: int
    attributes: dict[str, Any]


@dataclass(frozen=True)
class Span:
    """One received span. ``kind`` and ``status_code`` are the names of the API's ``SpanKind``
    and ``StatusCode`` members ("INTERNAL", "ERROR"); ids are lowercase hex."""

    name: str
    trace_id: str
    span_id: str
    parent_span_id: str | None
    kind: str
    start_ns: int
    end_ns: int
    attributes: dict[str, Any]
    events: tuple[Event, ...]
    status_code: str
    status_description: str
    scope: str
    resource: dict[str, Any]
    pid: int | None  # of the exporting process, from PID_HEADER


@dataclass(frozen=True)
class Point:
    """One received metric data point. ``kind`` is "sum", "gauge", "histogram" or
    "exponential_histogram"; sums and gauges have ``value``, histograms ``count``, ``sum``,
    ``bucket_counts`` and ``explicit_bounds``. Cumulative points arrive again with every export:
    ``OtlpReceiver.latest_points`` keeps the last one of each series."""

    metric: str
    unit: str
    kind: str
    attributes: dict[str, Any]
    start_ns: int
    time_ns: int
    value: float | int | None = None
    count: int | None = None
    sum: float | None = None
    bucket_counts: tuple[int, ...] = ()
    explicit_bounds: tuple[float, ...] = ()
    scope: str = ""
    resource: dict[str, Any] = field(default_factory=dict)
    pid: int | None = None  # of the exporting process, from PID_HEADER

    def series(self) -> tuple[Any, ...]:
        """What tells this point's series apart from others of its metric."""
        return (
            self.metric,
            self.pid,
            _frozen(self.resource),
            _frozen(self.attributes),
        )


@dataclass(frozen=True)
class Request:
    """One request as received, in order of arrival: path, exporting pid, client address."""

    path: str
    pid: int | None
    client: tuple[str, int]
    status: int


class OtlpReceiver:
    """Start with ``with OtlpReceiver() as receiver:``; point exporters at ``endpoint``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._spans: list[Span] = []
        self._points: list[Point] = []
        self._requests: list[Request] = []
        self._errors: list[str] = []
        self._connections: set[Any] = set()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # Lifecycle -------------------------------------------------------------------------

    def start(self) -> OtlpReceiver:
        self._server = _Server((HOST, 0), _handler_for(self))
        self._server.receiver = self
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="otlp-receiver",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the connections kept alive (their threads then end)."""
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            _close_quietly(connection)
        assert self._thread is not None
        self._thread.join(timeout=5)
        self._server = None

    def __enter__(self) -> OtlpReceiver:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def endpoint(self) -> str:
        """The base URL, for ``OTEL_EXPORTER_OTLP_ENDPOINT`` (exporters append /v1/...)."""
        assert self._server is not None, "receiver not started"
        return f"http://{HOST}:{self._server.server_address[1]}"

    # Reading ---------------------------------------------------------------------------

    def spans(self, name: str | None = None) -> list[Span]:
        with self._lock:
            return [span for span in self._spans if name is None or span.name == name]

    def points(self, metric: str) -> list[Point]:
        """Every point of ``metric`` received, in order of arrival."""
        with self._lock:
            return [point for point in self._points if point.metric == metric]

    def latest_points(self, metric: str) -> list[Point]:
        """The last point received of each series of ``metric`` (per pid, resource and
        attributes): with cumulative temporality, the current values."""
        latest: dict[tuple[Any, ...], Point] = {}
        for point in self.points(metric):
            latest[point.series()] = point
        return list(latest.values())

    def metric_names(self) -> set[str]:
        with self._lock:
            return {point.metric for point in self._points}

    def requests(self) -> list[Request]:
        with self._lock:
            return list(self._requests)

    def errors(self) -> list[str]:
        """Requests that could not be read or decoded (answered 400/404/411)."""
        with self._lock:
            return list(self._errors)

    def wait_for(
        self, predicate: Callable[[OtlpReceiver], T], timeout: float = 10.0, what: str = ""
    ) -> T:
        """Poll ``predicate(self)`` until it returns something truthy, and return that; after
        ``timeout`` seconds fail, saying what arrived."""
        deadline = time.monotonic() + timeout
        while True:
            result = predicate(self)
            if result:
                return result
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"after {timeout:.1f} s, not yet {what or repr(predicate)}; {self.summary()}"
                )
            time.sleep(0.05)

    def summary(self) -> str:
        with self._lock:
            names = sorted({span.name for span in self._spans})
            metrics = sorted({point.metric for point in self._points})
            return (
                f"received {len(self._requests)} requests, {len(self._spans)} spans {names}, "
                f"metrics {metrics}, errors {self._errors}"
            )

    def clear(self) -> None:
        """Forget what arrived so far (a session-wide receiver, between tests)."""
        with self._lock:
            self._spans.clear()
            self._points.clear()
            self._requests.clear()
            self._errors.clear()

    # Receiving -------------------------------------------------------------------------

    def _received(self, path: str, body: bytes, pid: int | None, client: Any) -> Message:
        """Decode and keep one request's content; return the response message."""
        if path == "/v1/traces":
            traces = ExportTraceServiceRequest.FromString(body)
            spans = list(_spans(traces, pid))
            with self._lock:
                self._spans.extend(spans)
                self._requests.append(Request(path, pid, client, 200))
            return ExportTraceServiceResponse()
        if path == "/v1/metrics":
            metrics = ExportMetricsServiceRequest.FromString(body)
            points = list(_points(metrics, pid))
            with self._lock:
                self._points.extend(points)
                self._requests.append(Request(path, pid, client, 200))
            return ExportMetricsServiceResponse()
        ExportLogsServiceRequest.FromString(body)  # checked, not kept
        with self._lock:
            self._requests.append(Request(path, pid, client, 200))
        return ExportLogsServiceResponse()

    def _failed(self, path: str, pid: int | None, client: Any, status: int, why: str) -> None:
        with self._lock:
            self._errors.append(f"{path}: {status} {why}")
            self._requests.append(Request(path, pid, client, status))

    def _opened(self, connection: Any) -> None:
        with self._lock:
            self._connections.add(connection)

    def _closed(self, connection: Any) -> None:
        with self._lock:
            self._connections.discard(connection)


PATHS = ("/v1/traces", "/v1/metrics", "/v1/logs")


class _Server(ThreadingHTTPServer):
    receiver: OtlpReceiver

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client gone mid-connection (a pool child ending with ``os._exit``, a killed
        process) is the client's doing, not an error of what arrived; anything else is kept
        in ``errors()`` instead of printed."""
        error = sys.exc_info()[1]
        if not isinstance(error, OSError):
            self.receiver._failed("(connection)", None, client_address, 500, repr(error))


def _handler_for(receiver: OtlpReceiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive: every response says its length

        def setup(self) -> None:
            super().setup()
            receiver._opened(self.connection)

        def finish(self) -> None:
            receiver._closed(self.connection)
            super().finish()

        def do_POST(self) -> None:
            path = self.path.split("?", 1)[0]
            pid = _pid(self.headers.get(PID_HEADER))
            length = self.headers.get("Content-Length")
            if length is None:
                receiver._failed(path, pid, self.client_address, 411, "no Content-Length")
                self._answer(411, b"", close=True)
                return
            body = self.rfile.read(int(length))
            if path not in PATHS:
                receiver._failed(path, pid, self.client_address, 404, "unknown path")
                self._answer(404, b"")
                return
            try:
                message = receiver._received(
                    path, _decompressed(body, self.headers), pid, self.client_address
                )
            except (DecodeError, OSError, EOFError, zlib.error, ValueError) as error:
                # Most likely two processes' writes interleaved on one shared socket: what
                # follows on it cannot be framed any more, so it is closed.
                receiver._failed(path, pid, self.client_address, 400, repr(error))
                self._answer(400, b"", close=True)
                return
            self._answer(200, message.SerializeToString())

        def _answer(self, status: int, body: bytes, close: bool = False) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", str(len(body)))
            if close:
                self.send_header("Connection", "close")
                self.close_connection = True
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: what arrived is in ``receiver.requests()``."""

    return Handler


def _close_quietly(connection: Any) -> None:
    with contextlib.suppress(OSError):  # already closed by the client
        connection.shutdown(socket.SHUT_RDWR)  # wakes the thread blocked reading it


def _pid(header: str | None) -> int | None:
    return int(header) if header and header.isdigit() else None


def _decompressed(body: bytes, headers: Any) -> bytes:
    encoding = (headers.get("Content-Encoding") or "").lower()
    if encoding == "gzip":
        return gzip.decompress(body)
    if encoding == "deflate":
        return zlib.decompress(body)
    return body


# Decoding --------------------------------------------------------------------------------

_SPAN_KINDS = {
    ProtoSpan.SPAN_KIND_UNSPECIFIED: "INTERNAL",
    ProtoSpan.SPAN_KIND_INTERNAL: "INTERNAL",
    ProtoSpan.SPAN_KIND_SERVER: "SERVER",
    ProtoSpan.SPAN_KIND_CLIENT: "CLIENT",
    ProtoSpan.SPAN_KIND_PRODUCER: "PRODUCER",
    ProtoSpan.SPAN_KIND_CONSUMER: "CONSUMER",
}
_STATUS_CODES = {
    ProtoStatus.STATUS_CODE_UNSET: "UNSET",
    ProtoStatus.STATUS_CODE_OK: "OK",
    ProtoStatus.STATUS_CODE_ERROR: "ERROR",
}


def _spans(request: ExportTraceServiceRequest, pid: int | None) -> Iterable[Span]:
    for resource_spans in request.resource_spans:
        resource = _attributes(resource_spans.resource.attributes)
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                yield Span(
                    name=span.name,
                    trace_id=span.trace_id.hex(),
                    span_id=span.span_id.hex(),
                    parent_span_id=span.parent_span_id.hex() or None,
                    kind=_SPAN_KINDS.get(span.kind, "INTERNAL"),
                    start_ns=span.start_time_unix_nano,
                    end_ns=span.end_time_unix_nano,
                    attributes=_attributes(span.attributes),
                    events=tuple(
                        Event(event.name, event.time_unix_nano, _attributes(event.attributes))
                        for event in span.events
                    ),
                    status_code=_STATUS_CODES.get(span.status.code, "UNSET"),
                    status_description=span.status.message,
                    scope=scope_spans.scope.name,
                    resource=resource,
                    pid=pid,
                )


def _points(request: ExportMetricsServiceRequest, pid: int | None) -> Iterable[Point]:
    for resource_metrics in request.resource_metrics:
        resource = _attributes(resource_metrics.resource.attributes)
        for scope_metrics in resource_metrics.scope_metrics:
            for metric in scope_metrics.metrics:
                kind = metric.WhichOneof("data")
                if kind is None:
                    continue
                common = {
                    "metric": metric.name,
                    "unit": metric.unit,
                    "kind": kind,
                    "scope": scope_metrics.scope.name,
                    "resource": resource,
                    "pid": pid,
                }
                for point in getattr(metric, kind).data_points:
                    yield Point(
                        attributes=_attributes(point.attributes),
                        start_ns=point.start_time_unix_nano,
                        time_ns=point.time_unix_nano,
                        **common,
                        **_point_values(kind, point),
                    )


def _point_values(kind: str, point: Any) -> dict[str, Any]:
    if kind in ("sum", "gauge"):
        which = point.WhichOneof("value")
        return {"value": getattr(point, which) if which else None}
    values: dict[str, Any] = {"count": point.count, "sum": point.sum}
    if kind == "histogram":
        values["bucket_counts"] = tuple(point.bucket_counts)
        values["explicit_bounds"] = tuple(point.explicit_bounds)
    return values


def _attributes(pairs: Iterable[KeyValue]) -> dict[str, Any]:
    return {pair.key: _value(pair.value) for pair in pairs}


def _value(value: AnyValue) -> Any:
    which = value.WhichOneof("value")
    if which == "array_value":
        return tuple(_value(item) for item in value.array_value.values)
    if which == "kvlist_value":
        return _attributes(value.kvlist_value.values)
    return getattr(value, which) if which else None


def _frozen(mapping: dict[str, Any]) -> frozenset[tuple[str, Any]]:
    return frozenset(
        (key, _frozen(value) if isinstance(value, dict) else value)
        for key, value in mapping.items()
    )


# Saying the exporting pid ------------------------------------------------------------------


class PidStampingSession(requests.Session):
    """The exporters' ``requests`` session, adding the pid of the process sending each request:
    a forked child keeps its parent's session, and its pooled connection, but says its own pid.
    Nothing else changes: same pool, same keep-alive, same retries."""

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        request.headers[PID_HEADER] = str(os.getpid())
        return super().send(request, **kwargs)


def pid_stamping_environment(directory: Path) -> dict[str, str]:
    """Environment under which ``opentelemetry-instrument``'s OTLP/HTTP exporters use
    ``PidStampingSession``: a ``.dist-info`` declaring it as an
    ``opentelemetry_otlp_credential_provider`` entry point (found on ``PYTHONPATH``, nothing
    installed), and the variable naming it. Merge ``PYTHONPATH`` with other entries."""
    info = directory / "execstatus_test_pid_stamping-0.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: execstatus-test-pid-stamping\nVersion: 0\n"
    )
    (info / "entry_points.txt").write_text(
        "[opentelemetry_otlp_credential_provider]\n"
        f"{PID_STAMPING_PROVIDER} = otlp_receiver:PidStampingSession\n"
    )
    tests = Path(__file__).resolve().parent
    return {
        "PYTHONPATH": f"{directory}{os.pathsep}{tests}",
        "OTEL_PYTHON_EXPORTER_OTLP_HTTP_CREDENTIAL_PROVIDER": PID_STAMPING_PROVIDER,
    }
