"""Patches wait for their module's import, and uninstrument undoes exactly what they did."""

from __future__ import annotations

import copy
import pickle
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


PICKLABLE = """
def work():
    return "done"


class Job:
    def __init__(self, name):
        self.name = name

    def run(self):
        return "ran " + self.name
"""


@pytest.fixture
def picklable_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """A real module, importable by name, so that pickle can find what it references."""
    name = f"execstatus_picklable_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{name}.py").write_text(PICKLABLE)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield __import__(name)
    sys.modules.pop(name, None)


def test_patched_functions_pickle_and_copy_like_the_originals(picklable_module) -> None:
    """Bare Python pickles a function or ``Class.method`` by reference, a bound method as
    ``getattr(instance, name)``; ``copy`` returns a function itself. So do the wrappers."""
    module = picklable_module
    original_work, original_run = module.work, module.Job.__dict__["run"]
    calls: list[str] = []

    def wrapper(wrapped, _instance, args, kwargs):
        calls.append(wrapped.__name__)
        return wrapped(*args, **kwargs)

    name = module.__name__
    patcher = Patcher([Patch(name, "work", wrapper), Patch(name, "Job.run", wrapper)])
    patcher.start()
    job = module.Job("a")
    try:
        work, run, bound = module.work, module.Job.run, job.run
        assert pickle.loads(pickle.dumps(work)) is module.work
        assert pickle.loads(pickle.dumps(run))(job) == "ran a"
        restored = pickle.loads(pickle.dumps(bound))
        assert restored() == "ran a"
        assert restored.__self__ is not job and restored.__self__.name == "a"
        assert calls == ["run", "run"]  # what unpickling found at the name is the wrapper
        for patched in (work, run, bound):
            assert copy.copy(patched) is patched
        assert copy.deepcopy(work) is work and copy.deepcopy(run) is run
        deep = copy.deepcopy(bound)
        assert deep.__self__ is not job and deep() == "ran a"
        assert calls == ["run", "run", "run"]
        pickled = [pickle.dumps(patched) for patched in (work, run, bound)]
        # Unpickling needs nothing of ours: a process without the instrumentation loads them.
        assert not [data for data in pickled if b"opentelemetry_instrumentation" in data]
    finally:
        patcher.stop()

    work, run, bound = (pickle.loads(data) for data in pickled)
    assert work is original_work and run is original_run  # the name now holds the original
    assert bound() == "ran a" and bound.__func__ is original_run
    assert calls == ["run", "run", "run"]
