"""One way to wrap a framework call and report its outcome, for every adapter.

``observe_call`` builds a wrapt wrapper from up to five hooks, each guarded: a hook that raises
is logged once and the call goes on as if it were not observed, so the host's arguments, return
value and exception are never touched by the instrumentation's failures.

- ``on_call(instance, args, kwargs)`` runs before the call and returns the call's state, or None
  to leave this call unobserved (the fast path when nothing records). Binding the framework's
  arguments (``bind``) happens here, inside the guard: a framework whose signature grew a new
  parameter is called as the caller asked, never refused by our reading of its arguments.
- ``arguments(state, args, kwargs)`` may return other ``(args, kwargs)`` to call with (to hand
  the framework an observer of ours); on failure the caller's own are used.
- ``on_success(state, result)`` and ``on_error(state, error)`` run after the call returned or
  raised; ``error`` is any ``BaseException``, and ``outcome_of`` says what it means.
- ``after_call(state)`` runs after either, to undo what ``on_call`` set up (a context variable).

A call that returns a coroutine or a generator has not done its work yet: the outcome hooks
run when that coroutine completes or the generator is exhausted, closed or raises, through a
coroutine or generator of the same kind that delegates every ``send``, ``throw`` and ``close``.
Where the framework itself drops what the call returns (nobody will await or iterate it),
``follow_result=False`` ends the call when it returns, and its result is passed on as it is.
"""

from __future__ import annotations

import functools
from collections.abc import Coroutine, Generator
from types import CoroutineType, GeneratorType
from typing import Any, Callable, Optional, TypeVar

from opentelemetry_instrumentation_execstatus.patching import Wrapper
from opentelemetry_instrumentation_execstatus.safety import report_internal_error

S = TypeVar("S")

OnCall = Callable[[Any, tuple, dict], Optional[S]]
Arguments = Callable[[S, tuple, dict], "tuple[tuple, dict]"]
OnSuccess = Callable[[S, Any], None]
OnError = Callable[[S, BaseException], None]
AfterCall = Callable[[S], None]


def bind(signature: Callable[..., Any], args: tuple, kwargs: dict) -> Any:
    """Call ``signature`` (a function shaped like the framework's) with the call's arguments:
    the way to read them by name. Raises ``TypeError`` when they do not fit; use it inside a
    hook, whose guard then leaves the call unobserved."""
    return signature(*args, **kwargs)


def observe_call(
    *,
    on_call: OnCall[S] | None = None,
    arguments: Arguments[S] | None = None,
    on_success: OnSuccess[S] | None = None,
    on_error: OnError[S] | None = None,
    after_call: AfterCall[S] | None = None,
    follow_result: bool = True,
    name: str = "an observed call",
) -> Wrapper:
    """A wrapt wrapper that runs the hooks around each call (see the module's docstring).

    Without ``on_call`` every call is observed and its state is the instance. ``name`` says
    where an internal error happened in its single log line.
    """
    call_hook = _guarded(on_call, name, "on_call") if on_call is not None else None
    arguments_hook = _guarded(arguments, name, "arguments") if arguments is not None else None
    hooks = _OutcomeHooks(
        _guarded(on_success, name, "on_success") if on_success is not None else None,
        _guarded(on_error, name, "on_error") if on_error is not None else None,
        _guarded(after_call, name, "after_call") if after_call is not None else None,
    )

    def wrapper(wrapped: Callable[..., Any], instance: Any, args: tuple, kwargs: dict) -> Any:
        if call_hook is None:
            state: Any = instance
        else:
            state = call_hook(instance, args, kwargs)
            if state is None:
                return wrapped(*args, **kwargs)
        if arguments_hook is not None:
            replaced = arguments_hook(state, args, kwargs)
            if replaced is not None:
                args, kwargs = replaced
        try:
            result = wrapped(*args, **kwargs)
        except BaseException as error:
            hooks.failed(state, error)
            raise
        if follow_result:
            result_type = type(result)
            if result_type is CoroutineType:
                return _awaiting(result, hooks, state)
            if result_type is GeneratorType:
                return _iterating(result, hooks, state)
        hooks.succeeded(state, result)
        return result

    return wrapper


class _OutcomeHooks:
    """The guarded outcome hooks of one wrapper."""

    __slots__ = ("_after_call", "_on_error", "_on_success")

    def __init__(
        self,
        on_success: Callable[..., Any] | None,
        on_error: Callable[..., Any] | None,
        after_call: Callable[..., Any] | None,
    ) -> None:
        self._on_success = on_success
        self._on_error = on_error
        self._after_call = after_call

    def succeeded(self, state: Any, result: Any) -> None:
        if self._on_success is not None:
            self._on_success(state, result)
        if self._after_call is not None:
            self._after_call(state)

    def failed(self, state: Any, error: BaseException) -> None:
        if self._on_error is not None:
            self._on_error(state, error)
        if self._after_call is not None:
            self._after_call(state)


async def _awaiting(coroutine: Coroutine[Any, Any, Any], hooks: _OutcomeHooks, state: Any) -> Any:
    try:
        result = await coroutine
    except BaseException as error:
        hooks.failed(state, error)
        raise
    hooks.succeeded(state, result)
    return result


def _iterating(generator: Generator[Any, Any, Any], hooks: _OutcomeHooks, state: Any) -> Any:
    try:
        result = yield from generator
    except BaseException as error:  # GeneratorExit too: the consumer closed it early
        hooks.failed(state, error)
        raise
    hooks.succeeded(state, result)
    return result


def _guarded(hook: Callable[..., Any], name: str, which: str) -> Callable[..., Any]:
    where = f"{name} ({which})"

    @functools.wraps(hook)
    def guarded_hook(*args: Any) -> Any:
        try:
            return hook(*args)
        except Exception:
            report_internal_error(where)
            return None

    return guarded_hook
