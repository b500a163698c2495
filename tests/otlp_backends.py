"""End to end: a script run under ``opentelemetry-instrument`` exporting over OTLP to the real
backends of ``scripts/backends`` (Phoenix for traces, VictoriaMetrics for metrics), and what
those backends hold afterwards, read back through their own query APIs.

The same run also prints to the console exporters, so every check can compare what the backend
stores with what the process emitted, span by span and series by series, instead of with
numbers written into the test.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, TypeVar

from support import console_spans, instrumented_command, json_documents

ROOT = Path(__file__).resolve().parents[1]
BACKENDS_SCRIPT = ROOT / "scripts" / "backends"
POLL_TIMEOUT_SECONDS = 60.0
# Export timeout for the runs, in seconds (the Python SDK reads OTEL_EXPORTER_OTLP_TIMEOUT as
# seconds). Small, so that a run whose backend is down still exits promptly.
EXPORT_TIMEOUT_SECONDS = 2
# Labels that come from our attributes; everything else on a series is the resource's.
OUR_LABEL_PREFIXES = ("execution_", "cicd_")

T = TypeVar("T")


def poll(read: Callable[[], T], done: Callable[[T], bool], what: str) -> T:
    """Read until ``done`` says the data is all there, for at most POLL_TIMEOUT_SECONDS;
    backends make data queryable a moment after they accept it."""
    deadline = time.monotonic() + POLL_TIMEOUT_SECONDS
    while True:
        value = read()
        if done(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"after {POLL_TIMEOUT_SECONDS:.0f} s, {what}; last read: {value}")
        time.sleep(0.5)


def _get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.load(response)


@dataclass(frozen=True)
class Backends:
    """Where the backends answer, as ``scripts/backends status --json`` reports it."""

    urls: dict[str, dict[str, Any]]

    @classmethod
    def status(cls) -> tuple[Backends, bool]:
        """The backends and whether all of them are ready."""
        completed = subprocess.run(
            [sys.executable, str(BACKENDS_SCRIPT), "status", "--json"],
            capture_output=True,
            text=True,
            check=False,
        )
        urls = json.loads(completed.stdout)
        return cls(urls), all(backend["ready"] for backend in urls.values())

    @staticmethod
    def otlp_environment(traces_protocol: str) -> dict[str, str]:
        """The OTEL_* settings that export to the backends (``scripts/backends env``)."""
        completed = subprocess.run(
            [
                sys.executable,
                str(BACKENDS_SCRIPT),
                "env",
                "--json",
                "--traces-protocol",
                traces_protocol,
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        return json.loads(completed.stdout)

    def spans(self, project: str) -> list[dict[str, Any]]:
        """Every span Phoenix holds for ``project``, following its pagination cursor."""
        spans: list[dict[str, Any]] = []
        cursor: str | None = None
        base = f"{self.urls['phoenix']['spans_api']}/{urllib.parse.quote(project)}/spans"
        while True:
            query = {"limit": "1000", **({"cursor": cursor} if cursor else {})}
            try:
                page = _get_json(f"{base}?{urllib.parse.urlencode(query)}")
            except urllib.error.HTTPError as error:
                if error.code == 404:  # the project appears with its first span
                    return []
                raise
            spans.extend(page["data"])
            cursor = page.get("next_cursor")
            if not cursor:
                return spans

    def query(self, promql: str) -> list[dict[str, Any]]:
        """An instant PromQL query on VictoriaMetrics; a query that does not parse fails."""
        url = f"{self.urls['victoriametrics']['prometheus_api']}/api/v1/query"
        request = f"{url}?{urllib.parse.urlencode({'query': promql})}"
        try:
            answer = _get_json(request)
        except urllib.error.HTTPError as error:
            raise AssertionError(f"query failed: {promql}\n{error.read().decode()}") from error
        assert answer["status"] == "success", answer
        return answer["data"]["result"]

    def label_values(self, label: str, selector: str) -> list[str]:
        """Values of ``label`` on the series matching ``selector`` (Grafana's label_values)."""
        url = f"{self.urls['victoriametrics']['prometheus_api']}/api/v1/label/{label}/values"
        return _get_json(f"{url}?{urllib.parse.urlencode({'match[]': selector})}")["data"]

    def rules(self) -> list[dict[str, Any]]:
        """vmalert's rules with their last evaluation (state, health, samples, error)."""
        groups = _get_json(self.urls["vmalert"]["rules_api"])["data"]["groups"]
        return [rule for group in groups for rule in group["rules"]]


@dataclass
class OtlpRun:
    """One run of a script under ``opentelemetry-instrument``."""

    service: str  # service.name and Phoenix project, unique to this run
    documents: list[dict[str, Any]]  # what the console exporters printed
    output: list[str]  # the script's own output lines
    seconds: float  # from start to exit
    output_seconds: float  # from start to the last line of output


def run_exporting(
    script: Path,
    *arguments: str,
    backends: Backends,
    traces_protocol: str = "http",
    console: bool = True,
    overrides: dict[str, str] | None = None,
) -> OtlpRun:
    """Run ``script`` unmodified under ``opentelemetry-instrument``, exporting to the backends
    over OTLP (and to the console unless ``console`` is False) as one service of its own:
    ``service.name`` and Phoenix project ``<script>-<random>``."""
    service = f"{script.stem}-{uuid.uuid4().hex[:8]}"
    exporters = "console,otlp" if console else "otlp"
    environment = {
        **os.environ,
        **backends.otlp_environment(traces_protocol),
        "OTEL_TRACES_EXPORTER": exporters,
        "OTEL_METRICS_EXPORTER": exporters,
        "OTEL_SERVICE_NAME": service,
        "OTEL_RESOURCE_ATTRIBUTES": f"openinference.project.name={service}",
        "OTEL_EXPORTER_OTLP_TIMEOUT": str(EXPORT_TIMEOUT_SECONDS),
        "OTEL_METRIC_EXPORT_INTERVAL": "600000",  # one export per reader, at shutdown
        **(overrides or {}),
    }
    with tempfile.TemporaryFile("w+") as errors:
        started = time.monotonic()
        process = subprocess.Popen(
            instrumented_command(script, *arguments),
            stdout=subprocess.PIPE,
            stderr=errors,
            text=True,
            env=environment,
        )
        assert process.stdout is not None
        lines, last_line_at = [], started
        for line in process.stdout:  # as it comes, to time the last line
            lines.append(line)
            last_line_at = time.monotonic()
        returncode = process.wait(timeout=300)
        seconds = time.monotonic() - started
        errors.seek(0)
        assert returncode == 0, f"{script.name} failed:\n{errors.read()[-4000:]}"
    documents, output = json_documents("".join(lines))
    return OtlpRun(service, documents, output, seconds, output_seconds=last_line_at - started)


# What the backends hold ------------------------------------------------------------------


def prometheus_name(metric: dict[str, Any]) -> str:
    """The name a metric gets in Prometheus naming (the OTLP-to-Prometheus translation that
    VictoriaMetrics, Prometheus and Mimir apply): dots become underscores, the unit ``s``
    becomes ``_seconds`` (annotation units such as ``{spawn}`` are dropped), monotonic sums get
    ``_total``."""
    name = metric["name"].replace(".", "_")
    if metric.get("unit") == "s":
        name += "_seconds"
    if metric["data"].get("is_monotonic"):
        name += "_total"
    return name


def labels_of(attributes: dict[str, Any]) -> frozenset[tuple[str, str]]:
    return frozenset((key.replace(".", "_"), str(value)) for key, value in attributes.items())


def _our_labels(series: dict[str, Any]) -> frozenset[tuple[str, str]]:
    return frozenset(
        (key, value)
        for key, value in series["metric"].items()
        if key.startswith(OUR_LABEL_PREFIXES)
    )


@dataclass
class Stored:
    """What Phoenix and VictoriaMetrics hold for one run, checked equal to what it emitted."""

    run: OtlpRun
    backends: Backends
    spans: list[dict[str, Any]]

    def named(self, name: str) -> list[dict[str, Any]]:
        return [span for span in self.spans if span["name"] == name]

    def children(self, parent: dict[str, Any]) -> list[dict[str, Any]]:
        return [s for s in self.spans if s["parent_id"] == parent["context"]["span_id"]]

    def selector(self, *matchers: str) -> str:
        """A PromQL label selector for this run's series (its ``service_name``), narrowed by
        further ``matchers`` such as ``'execution_level="step"'``."""
        return "{" + ",".join([f'service_name="{self.run.service}"', *filter(None, matchers)]) + "}"

    def series(self, metric: str) -> dict[frozenset, float]:
        """Our labels -> value of every series of ``metric`` from this run."""
        return {
            _our_labels(series): float(series["value"][1])
            for series in self.backends.query(f"{metric}{self.selector()}")
        }

    def sums_by(self, metric: str, *labels: str, selector: str = "") -> dict[Any, float]:
        """``metric`` summed by the given labels (a tuple for several, a value for one)."""
        results = self.backends.query(
            f"sum by ({', '.join(labels)}) ({metric}{self.selector(selector)})"
        )
        totals = {}
        for series in results:
            values = tuple(series["metric"].get(label) for label in labels)
            totals[values[0] if len(labels) == 1 else values] = float(series["value"][1])
        return totals

    def transition_counts(self, selector: str = "") -> dict[tuple[str, str], float]:
        """execution.status_transition.duration sample counts by (from, to)."""
        return self.sums_by(
            "execution_status_transition_duration_seconds_count",
            "execution_status_from",
            "execution_status_to",
            selector=selector,
        )


def fetch_stored(run: OtlpRun, backends: Backends) -> Stored:
    """Wait until the backends hold everything the run emitted, check that they hold it
    unchanged, and return it for the caller's own checks."""
    spans = fetch_spans(backends, run.service, run.documents)
    stored = Stored(run=run, backends=backends, spans=spans)
    for metric in emitted_metrics(run.documents):
        assert_same_metric(stored, metric)
    return stored


def fetch_spans(
    backends: Backends, project: str, documents: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Wait until Phoenix's ``project`` holds every span the console ``documents`` hold (of
    one process or several), check that it holds them unchanged, and return them."""
    emitted = {
        console_id_hex(span["context"]["span_id"]): span for span in console_spans(documents)
    }
    assert emitted, "the run emitted no spans"
    spans = poll(
        lambda: backends.spans(project),
        lambda stored: len(stored) >= len(emitted),
        f"Phoenix does not hold the {len(emitted)} spans of {project}",
    )
    assert sorted(span["context"]["span_id"] for span in spans) == sorted(emitted)
    for span in spans:
        assert_same_span(span, emitted[span["context"]["span_id"]])
    return spans


def console_id_hex(console_id: str | None) -> str | None:
    """A span or trace id as the console exporter prints it ("0x<hex>"), as plain hex."""
    return console_id[2:] if console_id else None


def assert_same_span(stored: dict[str, Any], emitted: dict[str, Any]) -> None:
    where = f"span {emitted['name']!r} ({stored['context']['span_id']})"
    assert stored["name"] == emitted["name"], where
    assert stored["context"]["trace_id"] == console_id_hex(emitted["context"]["trace_id"]), where
    assert stored["parent_id"] == console_id_hex(emitted["parent_id"]), where
    assert stored["status_code"] == emitted["status"]["status_code"], where
    assert stored["attributes"] == emitted["attributes"], where
    assert [(e["name"], e["attributes"]) for e in stored["events"]] == [
        (e["name"], e["attributes"]) for e in emitted["events"]
    ], where


def emitted_metrics(documents: list[dict[str, Any]]) -> Iterable[dict[str, Any]]:
    """Our metrics in the run's last (cumulative) console export."""
    exports = [d for d in documents if "resource_metrics" in d]
    assert exports, "the run exported no metrics"
    for resource in exports[-1]["resource_metrics"]:
        for scope in resource["scope_metrics"]:
            if scope["scope"]["name"] == "opentelemetry_instrumentation_execstatus":
                yield from scope["metrics"]


def assert_same_metric(stored: Stored, metric: dict[str, Any]) -> None:
    """Wait until VictoriaMetrics answers with the run's final values, not only its series:
    a sample becomes queryable a moment after it is accepted, so an earlier export's value
    can still be the newest one the first reads see."""
    name = prometheus_name(metric)
    points = {labels_of(p["attributes"]): p for p in metric["data"]["data_points"]}
    if "bucket_counts" not in next(iter(points.values())):
        expected = {labels: p["value"] for labels, p in points.items()}
        poll(
            lambda: stored.series(name),
            lambda values: values == expected,
            f"VictoriaMetrics does not hold the emitted {name} {expected}",
        )
        return
    expected_histogram = {
        labels: (point["count"], point["sum"], _cumulative_buckets(point))
        for labels, point in points.items()
    }
    poll(
        lambda: _stored_histogram(stored, name),
        lambda histogram: _same_histogram(histogram, expected_histogram),
        f"VictoriaMetrics does not hold the emitted {name}: {expected_histogram}",
    )
    for labels, point in points.items():
        _assert_plausible_quantile(stored, name, labels, point)


def _stored_histogram(stored: Stored, name: str) -> dict[frozenset, tuple]:
    """Our labels -> (count, sum, cumulative buckets by ``le``) of a stored histogram."""
    counts = stored.series(f"{name}_count")
    sums = stored.series(f"{name}_sum")
    buckets: dict[frozenset, dict[float, float]] = {}
    for series in stored.backends.query(f"{name}_bucket{stored.selector()}"):
        labels = _our_labels(series)
        buckets.setdefault(labels, {})[float(series["metric"]["le"])] = float(series["value"][1])
    return {
        labels: (count, sums.get(labels), buckets.get(labels)) for labels, count in counts.items()
    }


def _same_histogram(stored: dict[frozenset, tuple], expected: dict[frozenset, tuple]) -> bool:
    """Counts and buckets exactly, sums to 1e-9 relative (they cross a float text form)."""
    if stored.keys() != expected.keys():
        return False
    for labels, (count, total, buckets) in expected.items():
        stored_count, stored_total, stored_buckets = stored[labels]
        if stored_count != count or stored_buckets != buckets or stored_total is None:
            return False
        if not math.isclose(stored_total, total, rel_tol=1e-9):
            return False
    return True


def _cumulative_buckets(point: dict[str, Any]) -> dict[float, float]:
    """The point's buckets as Prometheus stores them: cumulative, by upper bound."""
    bounds = [*point["explicit_bounds"], math.inf]
    running, cumulative = 0, {}
    for bound, count in zip(bounds, point["bucket_counts"]):
        running += count
        cumulative[float(bound)] = float(running)
    return cumulative


def _assert_plausible_quantile(
    stored: Stored, name: str, labels: frozenset, point: dict[str, Any]
) -> None:
    """histogram_quantile over the stored buckets falls inside the buckets that hold the
    emitted minimum and maximum."""
    selector = stored.selector(*(f'{key}="{value}"' for key, value in sorted(labels)))
    (result,) = stored.backends.query(
        f"histogram_quantile(0.5, sum by (le) ({name}_bucket{selector}))"
    )
    median = float(result["value"][1])
    bounds = [0.0, *point["explicit_bounds"], math.inf]
    low = max(bound for bound in bounds if bound <= point["min"])
    high = min(bound for bound in bounds if bound >= point["max"])
    assert low <= median <= high, (name, labels, median, point["min"], point["max"])
