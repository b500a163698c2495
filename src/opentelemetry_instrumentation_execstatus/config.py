"""Options of the instrumentation, from ``instrument()`` keyword arguments or environment.

Every option has one name, used as-is for the keyword argument and upper-cased with the
``OTEL_PYTHON_EXECSTATUS_`` prefix for the environment variable. A keyword argument wins over
the environment, which wins over the default. The README's configuration table lists them.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from enum import Enum
from typing import Any, NamedTuple

from opentelemetry_instrumentation_execstatus.normalize import clean_text

_LOG = logging.getLogger(__name__)

ENV_PREFIX = "OTEL_PYTHON_EXECSTATUS_"
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


class ExceptionDetail(str, Enum):
    """How much of a step's exception its span's ``exception`` event carries.

    Messages and stack traces can hold secrets (a connection string, a token in a URL) and be
    huge; ``error.type`` (the exception's class) is always set on a failed span.
    """

    FULL = "full"
    """``exception.type``, ``exception.message`` and ``exception.stacktrace``, each capped."""
    TYPE = "type"
    """``exception.type`` only."""
    NONE = "none"
    """No ``exception`` event."""


class ExecStatusConfig(NamedTuple):
    """The instrumentation's options; see the README's configuration table.

    A named tuple, not a dataclass: it is defined at every instrumented process's start, and
    a frozen dataclass takes several times as long to define."""

    orchestrators: frozenset[str] | None = None
    """Adapters to enable by name (e.g. ``routilux``); None enables every available one."""

    names_on_metrics: bool = True
    """Put ``cicd.pipeline.name`` / ``cicd.pipeline.task.name`` on metric attributes."""

    name_cardinality_limit: int = 200
    """Distinct pipeline (and, separately, task) names on metrics before ``_OTHER``."""

    max_in_flight: int = 10_000
    """Executions tracked at once; beyond it the oldest is ended as ``unknown``."""

    item_spans: bool = False
    """Emit a span per data item (off by default: there can be millions)."""

    exception_detail: ExceptionDetail = ExceptionDetail.FULL
    """What a failed step's ``exception`` event carries: ``full``, ``type`` or ``none``."""

    exception_text_limit: int = 4096
    """Characters kept of an exception's message (its start) and stack trace (its end)."""

    @classmethod
    def load(
        cls, options: Mapping[str, Any], environ: Mapping[str, str] | None = None
    ) -> ExecStatusConfig:
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for name in cls._fields:
            if name in options and options[name] is not None:
                raw: Any = options[name]
            else:
                raw = environ.get(ENV_PREFIX + name.upper())
                if raw is None or not str(raw).strip():
                    continue
            try:
                parsed = _PARSERS[name](raw)
            except Exception:  # a value no parser can read (not iterable, __str__ raising...)
                parsed = None
            if parsed is None:
                _LOG.warning(
                    "ignoring invalid execstatus option %s=%s",
                    name,
                    clean_text(raw) or type(raw).__name__,
                )
                continue
            values[name] = parsed
        return cls(**values)


def _parse_bool(raw: Any) -> bool | None:
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    return None


def _parse_positive_int(raw: Any) -> int | None:
    if isinstance(raw, bool) or (isinstance(raw, float) and not raw.is_integer()):
        return None  # True is not a count, nor is 2.5
    try:
        value = int(raw)
    except (TypeError, ValueError, OverflowError):
        return None
    return value if value > 0 else None


def _parse_exception_detail(raw: Any) -> ExceptionDetail | None:
    try:
        return ExceptionDetail(str(raw.value if isinstance(raw, Enum) else raw).strip().lower())
    except ValueError:
        return None


def _parse_names(raw: Any) -> frozenset[str] | None:
    items = raw.split(",") if isinstance(raw, str) else list(raw)
    names = frozenset(str(item).strip().lower() for item in items if str(item).strip())
    return names or None


_PARSERS = {
    "orchestrators": _parse_names,
    "names_on_metrics": _parse_bool,
    "name_cardinality_limit": _parse_positive_int,
    "max_in_flight": _parse_positive_int,
    "item_spans": _parse_bool,
    "exception_detail": _parse_exception_detail,
    "exception_text_limit": _parse_positive_int,
}
