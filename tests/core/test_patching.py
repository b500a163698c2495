"""Patches wait for their module's import, and uninstrument undoes exactly what they did."""

from __future__ import annotations

import sys
from pathlib import Path
from types import ModuleType
from typing import Callable

import pytest

from opentelemetry_instrumentation_execstatus.patching import OnImport, Patch, Patcher


@pytest.fixture
def late_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A module nobody has imported yet."""
    name = f"execstatus_late_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{name}.py").write_text("def work():\n    return 'done'\n\nhooked = []\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name
    sys.modules.pop(name, None)


def test_patches_apply_on_import_and_undo_on_stop(late_module: str) -> None:
    calls: list[str] = []

    def hook(module: ModuleType) -> Callable[[], None]:
        module.hooked.append("on")
        return lambda: module.hooked.append("off")

    def wrapper(wrapped, _instance, args, kwargs):
        calls.append("wrapped")
        return wrapped(*args, **kwargs)

    patcher = Patcher([Patch(late_module, "work", wrapper), OnImport(late_module, hook)])
    patcher.start()
    assert late_module not in sys.modules  # nothing imported by instrumenting

    module = __import__(late_module)
    original = module.work.__wrapped__
    assert module.hooked == ["on"]
    assert module.work() == "done"
    assert calls == ["wrapped"]

    patcher.stop()
    assert module.hooked == ["on", "off"]
    assert module.work is original
    assert module.work() == "done"
    assert calls == ["wrapped"]


def test_a_failing_hook_is_contained(late_module: str) -> None:
    def broken(_module: ModuleType) -> None:
        raise RuntimeError("hook failed")

    patcher = Patcher([OnImport(late_module, broken)])
    patcher.start()
    try:
        module = __import__(late_module)
        assert module.work() == "done"
    finally:
        patcher.stop()
