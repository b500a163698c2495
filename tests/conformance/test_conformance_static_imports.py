"""Adapters import nothing from OpenTelemetry: they translate framework events into calls on
the core, which alone talks to the API. Checked on the source, in every environment, so that
it holds for adapters whose framework is not installed here too."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from opentelemetry_instrumentation_execstatus import adapters

ADAPTERS = Path(adapters.__file__).parent
IMPORTERS = ("__import__", "import_module")


def _opentelemetry(name: str | None) -> bool:
    return name is not None and (name == "opentelemetry" or name.startswith("opentelemetry."))


def opentelemetry_imports(source: str) -> list[str]:
    """Every import of ``opentelemetry`` or ``opentelemetry.*`` in ``source``, by line: the
    statements, and ``__import__`` / ``import_module`` called with such a name."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [
                f"{node.lineno}: import {a.name}" for a in node.names if _opentelemetry(a.name)
            ]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and _opentelemetry(node.module):
            found.append(f"{node.lineno}: from {node.module} import ...")
        elif isinstance(node, ast.Call) and node.args:
            function = node.func
            called = (
                function.attr
                if isinstance(function, ast.Attribute)
                else getattr(function, "id", None)
            )
            first = node.args[0]
            if (
                called in IMPORTERS
                and isinstance(first, ast.Constant)
                and isinstance(first.value, str)
                and _opentelemetry(first.value)
            ):
                found.append(f"{node.lineno}: {called}({first.value!r})")
    return found


@pytest.mark.parametrize(
    "module", sorted(ADAPTERS.rglob("*.py")), ids=lambda path: str(path.relative_to(ADAPTERS))
)
def test_adapter_modules_import_nothing_from_opentelemetry(module):
    assert opentelemetry_imports(module.read_text(encoding="utf-8")) == []


def test_the_check_sees_every_form_of_import():
    source = "\n".join(
        [
            "import opentelemetry",
            "import opentelemetry.trace as trace",
            "from opentelemetry import context",
            "from opentelemetry.trace import NoOpTracer",
            "importlib.import_module('opentelemetry.metrics')",
            "__import__('opentelemetry')",
            "import opentelemetry_instrumentation_execstatus",
            "from opentelemetry_instrumentation_execstatus import tracing",
            "from . import opentelemetry",
        ]
    )
    assert [line.split(":")[0] for line in opentelemetry_imports(source)] == [
        "1",
        "2",
        "3",
        "4",
        "5",
        "6",
    ]
