"""Celery canvases as pipeline runs: which messages belong to a chain or a chord, in what
role, and which task's end is the run's end. Plain reading of Celery's messages and requests;
the adapter (``celery``) does the reporting.

What Celery puts in the messages (protocol 2, read from 5.7 and checked on a worker): the
message body's third part (its "embed") holds the work that follows the task: ``chain``, the
signatures still to run after it (last first), and ``chord``, the signature of the chord's
body, on each task of a chord's header. A chord's header tasks share a ``group`` id; the body
carries that ``group`` id too, like a group's tasks. Every signature of a canvas is frozen
when the canvas is applied: its ``options`` hold the ``task_id`` its message will have, and a
chord's or group's, the ``group`` id of its tasks. A task publishes what follows it itself,
from the process that ran it: the next link of a chain, or, for the header task that
completes a chord, the body; a task's messages have its id as ``parent_id``.

So the process that applies a canvas sees its first messages (the first link of a chain, or
each header task of a chord), and each process that runs one of its tasks publishes the
next. A message belongs to the run if it starts a canvas, or if the task publishing it runs
in the run and the message is one of that task's successors (its id, or its group id, is
among the ids frozen in the task's ``chain`` or ``chord``): a task a step calls ``delay()``
on is not, nor a link callback. Its role says what its end means for the run:

- ``link``: a chain link with more to run after it: a failure ends the run;
- ``part``: a task of a group or a chord's header: its end is not the run's (a chord whose
  header failed ends where Celery decides it, ``Backend.chord_error_from_stack``);
- ``last``: nothing follows it in the run: its end, whatever it is, is the run's.

A group applied alone is no run: no process sees it end (only a caller joining its result
does). A chain ending in a group is a run no process sees end either.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from opentelemetry_instrumentation_execstatus.semconv import ExecutionStatus

RUN: Final = "execstatus_run"
"""Header: the run a message belongs to (a dict, below) and the message's role in it."""

LINK, PART, LAST = "link", "part", "last"

# The fields of the run header: the run's id (the id of the result its caller holds: a chain's
# last task, a chord's body), name, publish time, reserved span, caller's context, and role.
RUN_ID, NAME, PUBLISHED, SPAN, PARENT, ROLE = "id", "name", "published", "span", "parent", "role"

_MAX_DEPTH = 6  # a canvas nests chains, chords and groups: this deep at most is read
_MAX_IDS = 256  # ids read from one task's successors

_CHORD_TASK, _CHAIN_TASK = "celery.chord", "celery.chain"


def embed_of(body: Any) -> Mapping[str, Any]:
    """The work that follows a message's task: its body's embed (protocol 2), else nothing."""
    if isinstance(body, (tuple, list)) and len(body) == 3 and isinstance(body[2], Mapping):
        return body[2]
    return {}


def starts_a_run(embed: Mapping[str, Any]) -> str | None:
    """The kind of canvas (``chain`` or ``chord``) a message published outside any run
    starts, if it starts one: a chain's first link, or a chord's header task."""
    if embed.get("chord"):
        return "chord"
    if embed.get("chain"):
        return "chain"
    return None


def run_name_and_id(kind: str, embed: Mapping[str, Any]) -> tuple[str, Any]:
    """A new run's name (its kind and the task whose result is the canvas's) and id (that
    task's id, what ``apply_async()`` returned to the caller)."""
    final = embed.get("chord") if kind == "chord" else _first(embed.get("chain"))
    name, task_id = _final_task(final, _MAX_DEPTH)
    return f"{kind} {name}", task_id


def role_of(headers: Mapping[str, Any], embed: Mapping[str, Any], body_ids: frozenset) -> str:
    """The role of a run's message (``body_ids``: the ids of the chord body the task
    publishing it completes, if it is a chord's last header task)."""
    if embed.get("chord"):
        return PART
    if embed.get("chain"):
        return LINK
    if headers.get("id") in body_ids:
        return LAST
    if headers.get("group") is not None:  # a group's task, at the end of a chain
        return PART
    return LAST


def successor_ids(fields: Mapping[str, Any]) -> tuple[frozenset, frozenset]:
    """The ids (task and group) a running task's successors were frozen with: those of its
    chain's next signature, and those of the chord body it may complete."""
    chain = fields.get("chain")
    following = chain[-1] if isinstance(chain, list) and chain else None
    return _ids_in(following), _ids_in(fields.get("chord"))


def is_successor(headers: Mapping[str, Any], ids: frozenset) -> bool:
    return headers.get("id") in ids or headers.get("group") in ids


def ends_run(role: Any, status: ExecutionStatus) -> bool:
    """Whether a run's task ending in ``status`` ends the run: the last task, by any end but
    being replaced (``skipped``: its replacement goes on under its id); a chain link, by a
    failure or a cancellation, after which nothing of the chain runs."""
    if role == LAST:
        return status is not ExecutionStatus.SKIPPED
    return role == LINK and status in _BREAKING


_BREAKING: Final = frozenset(
    {ExecutionStatus.FAILED, ExecutionStatus.SYSTEM_ERROR, ExecutionStatus.CANCELLED}
)


def _first(signatures: Any) -> Any:
    """The first of a message's ``chain`` (stored last first: the chain's last signature)."""
    return signatures[0] if isinstance(signatures, list) and signatures else None


def _final_task(signature: Any, depth: int) -> tuple[str, Any]:
    """The task whose result is ``signature``'s (a chord's body's, a chain's last task's)."""
    if not isinstance(signature, Mapping) or depth == 0:
        return "canvas", None
    task = signature.get("task")
    kwargs = signature.get("kwargs") if isinstance(signature.get("kwargs"), Mapping) else {}
    if task == _CHORD_TASK and kwargs.get("body") is not None:
        return _final_task(kwargs["body"], depth - 1)
    if task == _CHAIN_TASK and isinstance(kwargs.get("tasks"), list) and kwargs["tasks"]:
        return _final_task(kwargs["tasks"][-1], depth - 1)
    options = signature.get("options")
    task_id = options.get("task_id") if isinstance(options, Mapping) else None
    return str(task), task_id


def _ids_in(signature: Any) -> frozenset:
    """Every task and group id frozen in ``signature`` and the signatures it holds."""
    found: set[Any] = set()
    frontier = [signature]
    for _ in range(_MAX_DEPTH):
        held = []
        for each in frontier:
            if isinstance(each, list):
                held.extend(each)
                continue
            if not isinstance(each, Mapping):
                continue
            options = each.get("options")
            if isinstance(options, Mapping):
                found.update(v for v in (options.get("task_id"), options.get("group_id")) if v)
            kwargs = each.get("kwargs")
            if isinstance(kwargs, Mapping):
                held.extend(kwargs.get(name) for name in ("header", "body", "tasks"))
        if not held or len(found) >= _MAX_IDS:
            break
        frontier = held
    return frozenset(found)
