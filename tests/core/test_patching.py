"""Patches wait for their module's import, and uninstrument undoes exactly what they did."""

from __future__ import annotations

import copy
import pickle
import sys
import threading
from pathlib import Path
from types import ModuleType
from typing import Callable

import pytest

from opentelemetry_instrumentation_execstatus.patching import LoadOnImport, OnImport, Patch, Patcher


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


def _recording_wrapper(calls: list[str]) -> Callable[..., object]:
    def wrapper(wrapped, _instance, args, kwargs):
        calls.append("wrapped")
        return wrapped(*args, **kwargs)

    return wrapper


def test_what_a_load_on_import_finds_is_applied_on_import_and_undone_on_stop(
    late_module: str,
) -> None:
    """The patches are known only once the module is imported (an adapter loaded then)."""
    loaded: list[str] = []
    calls: list[str] = []

    def load(module: ModuleType) -> list:
        loaded.append(module.__name__)
        return [Patch(module.__name__, "work", _recording_wrapper(calls))]

    patcher = Patcher([LoadOnImport(late_module, load)])
    patcher.start()
    assert loaded == []
    assert late_module not in sys.modules

    module = __import__(late_module)
    original = module.work.__wrapped__
    assert loaded == [late_module]
    assert module.work() == "done"
    assert calls == ["wrapped"]

    patcher.stop()
    assert module.work is original
    assert module.work() == "done"
    assert calls == ["wrapped"]


def test_a_load_on_import_of_an_imported_module_loads_and_applies_at_once(
    late_module: str, tmp_path: Path
) -> None:
    """Loaded at start, and what it finds applied at once, on this module and on another
    one imported already; and on one imported later, when it is."""
    imported, later = f"{late_module}_imported", f"{late_module}_later"
    for name in (imported, later):
        (tmp_path / f"{name}.py").write_text("def work():\n    return 'other'\n")
    module, other = __import__(late_module), __import__(imported)
    calls: list[str] = []
    wrapper = _recording_wrapper(calls)
    hooked: list[str] = []

    def hook(_module: ModuleType) -> Callable[[], None]:
        hooked.append("on")
        return lambda: hooked.append("off")

    def load(_module: ModuleType) -> list:
        return [
            Patch(late_module, "work", wrapper),
            OnImport(late_module, hook),
            Patch(imported, "work", wrapper),
            Patch(later, "work", wrapper),
        ]

    patcher = Patcher([LoadOnImport(late_module, load)])
    patcher.start()
    try:
        assert module.work() == "done"
        assert other.work() == "other"
        assert hooked == ["on"]
        assert calls == ["wrapped", "wrapped"]
        assert __import__(later).work() == "other"
        assert calls == ["wrapped", "wrapped", "wrapped"]
    finally:
        patcher.stop()
        for name in (imported, later):
            sys.modules.pop(name, None)
    assert hooked == ["on", "off"]
    assert module.work() == "done" and other.work() == "other"
    assert calls == ["wrapped", "wrapped", "wrapped"]


def test_a_failing_load_is_contained_and_the_other_patches_still_apply(late_module: str) -> None:
    def broken(_module: ModuleType) -> list:
        raise RuntimeError("load failed")

    calls: list[str] = []
    patcher = Patcher(
        [LoadOnImport(late_module, broken), Patch(late_module, "work", _recording_wrapper(calls))]
    )
    patcher.start()
    try:
        module = __import__(late_module)
        assert module.work() == "done"
        assert calls == ["wrapped"]
    finally:
        patcher.stop()


def test_what_a_load_finds_after_stop_is_not_applied(late_module: str) -> None:
    """A load still running when ``uninstrument()`` stops its patcher adds nothing."""
    calls: list[str] = []

    def load(_module: ModuleType) -> list:
        patcher.stop()
        return [Patch(late_module, "work", _recording_wrapper(calls))]

    patcher = Patcher([LoadOnImport(late_module, load)])
    patcher.start()
    module = __import__(late_module)
    assert not hasattr(module.work, "__wrapped__")
    assert module.work() == "done"
    assert calls == []


def test_a_module_imported_anew_is_patched_by_the_next_patcher(late_module: str) -> None:
    """wrapt runs a post-import hook once: a module taken out of ``sys.modules`` and
    imported again (a test's framework, a plugin reloaded) still gets the next patches."""
    for round_number in range(3):
        calls: list[str] = []
        patcher = Patcher([Patch(late_module, "work", _recording_wrapper(calls))])
        patcher.start()
        try:
            module = __import__(late_module)
            assert module.work() == "done"
            assert calls == ["wrapped"], round_number
        finally:
            patcher.stop()
            sys.modules.pop(late_module, None)


def test_an_on_import_that_imports_a_module_with_patches_does_not_deadlock(
    late_module: str, tmp_path: Path
) -> None:
    """The patcher's lock is held while an ``OnImport`` applies; one that imports a module
    with patches of the same patcher re-enters it on the same thread."""
    other = f"{late_module}_other"
    (tmp_path / f"{other}.py").write_text("def work():\n    return 'other'\n")
    calls: list[str] = []

    def importing(_module: ModuleType) -> Callable[[], None]:
        __import__(other)
        return lambda: None

    patcher = Patcher(
        [OnImport(late_module, importing), Patch(other, "work", _recording_wrapper(calls))]
    )
    patcher.start()
    importer = threading.Thread(target=__import__, args=(late_module,), daemon=True)
    importer.start()
    importer.join(timeout=10)
    assert not importer.is_alive(), "deadlocked"  # (stopping the patcher would hang too)
    try:
        assert sys.modules[other].work() == "other"
        assert calls == ["wrapped"]
    finally:
        patcher.stop()
        sys.modules.pop(other, None)
