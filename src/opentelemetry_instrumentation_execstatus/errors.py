"""What a failed execution's span says about its error: ``error.type`` and the ``exception``
event, built here rather than by the SDK's ``record_exception``.

``record_exception`` exports an exception's message and stack trace whole and unchecked: a 1 MB
message goes out as 1 MB, a secret in a message goes out too, a lone surrogate in it fails the
whole export batch, and an exception whose ``__str__`` raises makes ``record_exception`` raise.
Here every part is valid UTF-8 and capped, the message and stack trace can be turned off
(``exception_detail``), and nothing raises.
"""

from __future__ import annotations

import traceback
from typing import Any

from opentelemetry_instrumentation_execstatus.config import ExceptionDetail, ExecStatusConfig
from opentelemetry_instrumentation_execstatus.normalize import as_text, bounded_text, clean_text

EXCEPTION_EVENT = "exception"
EXCEPTION_TYPE = "exception.type"
EXCEPTION_MESSAGE = "exception.message"
EXCEPTION_STACKTRACE = "exception.stacktrace"


def error_type_of(error: Any) -> str | None:
    """``error.type``: an exception's (or exception class's) qualified class name, or the
    given type string."""
    if isinstance(error, BaseException) or (
        isinstance(error, type) and issubclass(error, BaseException)
    ):
        cls = error if isinstance(error, type) else type(error)
        module, name = clean_text(cls.__module__), clean_text(cls.__qualname__)
        if name is None:
            return None
        if module in (None, "builtins", "__main__"):
            return name
        return f"{module}.{name}"
    return clean_text(error)


def exception_attributes(
    error: BaseException, error_type: str, config: ExecStatusConfig
) -> dict[str, str] | None:
    """The ``exception`` event's attributes, or None when ``exception_detail`` is ``none``."""
    detail = config.exception_detail
    if detail is ExceptionDetail.NONE:
        return None
    attributes = {EXCEPTION_TYPE: error_type}
    if detail is ExceptionDetail.FULL:
        limit = config.exception_text_limit
        attributes[EXCEPTION_MESSAGE] = bounded_text(_message(error), limit)
        attributes[EXCEPTION_STACKTRACE] = bounded_text(_stacktrace(error), limit, keep_end=True)
    return attributes


def _message(error: BaseException) -> str:
    text = as_text(error)
    return "<exception str() failed>" if text is None else text


def _stacktrace(error: BaseException) -> str:
    try:
        return "".join(traceback.format_exception(type(error), error, error.__traceback__))
    except Exception:  # a traceback module that cannot format it: the type is already there
        return ""
