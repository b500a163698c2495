"""Start-up: what the package adds to a process's start, interpreter start to exit.

Each case is a fresh interpreter running one snippet, timed from its start to its exit, in
interleaved rounds (every case once per round, in a rotating order); medians of 15 rounds.
Bytecode is written and warmed up first, as an installed package has it. The package's share
is ``instrument()`` (importing the package, then instrumenting) minus importing
``BaseInstrumentor``, which every instrumentor imports (``opentelemetry-instrument`` has, before
loading any): the difference of their medians, goal under 20 ms. It must not grow with the
adapters or with what is installed, so it is measured in two environments: with no
orchestrator installed (``--bare``), and with every orchestrator that can be installed with
the others, none of them imported (``instrument()`` imports none, and is checked to). Those are
routilux 1.1, orcapod, SQLAlchemy, and Tangle as the package shaped like it in
``tests/tangle/tangle_shaped``, put on the path here; loom-kernel cannot be among them: it
needs polars < 2, and orcapod polars 2.

Besides wall time, the children's CPU time (user and system) is reported: on a loaded machine
it moves less. The snippet of ``instrument()`` also times, in the process, its import of the
package and its ``instrument()`` call.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import NamedTuple

from harness import Results, Row, finish, require, versions

from opentelemetry_instrumentation_execstatus.adapters import ADAPTERS

SUITE = "start"
GOAL_MS = 20.0
UNIT = "process start"  # report.py: such a row is in ms, its goal a ceiling on the ms added
TANGLE_SHAPED = Path(__file__).resolve().parents[1] / "tests" / "tangle" / "tangle_shaped"
CO_INSTALLED = ("routilux", "orcapod", "sqlalchemy", "cloud_pipelines_backend")
"""The frameworks' top-level modules the setup with orchestrators must have: all but loom."""

BARE = "bare interpreter"
API = "import the OpenTelemetry API"
BASE = "import BaseInstrumentor"
INSTRUMENT = "instrument()"
SNIPPETS = {
    BARE: "pass",
    API: "import opentelemetry.trace, opentelemetry.metrics",
    BASE: "from opentelemetry.instrumentation.instrumentor import BaseInstrumentor",
    INSTRUMENT: """
import time
from opentelemetry.instrumentation.instrumentor import BaseInstrumentor
began = time.perf_counter()
from opentelemetry_instrumentation_execstatus import ExecStatusInstrumentor
imported = time.perf_counter()
ExecStatusInstrumentor().instrument()
print(imported - began, time.perf_counter() - imported)
""",
}

CHECK = """
import importlib.util, json, sys
from opentelemetry_instrumentation_execstatus import ExecStatusInstrumentor
from opentelemetry_instrumentation_execstatus.adapters import ADAPTERS
ExecStatusInstrumentor().instrument()
frameworks = sorted({listed.top_module for listed in ADAPTERS})
imported = [name for name in frameworks if name in sys.modules]
package = "opentelemetry_instrumentation_execstatus.adapters."
def installed(name):
    spec = importlib.util.find_spec(name)
    return spec is not None and spec.origin is not None
print(json.dumps({
    "installed": [name for name in frameworks if installed(name)],
    "imported": imported,
    "adapter modules": sorted(name for name in sys.modules if name.startswith(package)),
}))
"""
"""What ``instrument()`` imported (no framework, no adapter module), and what is installed."""


class Run(NamedTuple):
    wall_ms: float
    cpu_ms: float
    output: str


def environment(bare: bool) -> dict[str, str]:
    """The children's: bytecode written, as installed; Tangle's shaped package on the path
    unless bare."""
    found = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    if not bare:
        found["PYTHONPATH"] = os.pathsep.join(
            filter(None, [str(TANGLE_SHAPED), found.get("PYTHONPATH")])
        )
    return found


def run(code: str, env: dict[str, str]) -> Run:
    """One fresh interpreter: its wall time, its CPU time and what it printed."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    began = time.perf_counter()
    completed = subprocess.run(
        [sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, text=True, check=False
    )
    wall_ms = (time.perf_counter() - began) * 1e3
    after = resource.getrusage(resource.RUSAGE_CHILDREN)  # the child's, once it is waited for
    require(completed.returncode == 0, f"start-up snippet failed: {code!r}")
    cpu_ms = (after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime) * 1e3
    return Run(wall_ms, cpu_ms, completed.stdout)


class Setup(NamedTuple):
    name: str  # what the row says
    detail: str  # what the facts say


def setup(bare: bool, env: dict[str, str]) -> Setup:
    """What is installed, checked against what the setup claims; and that ``instrument()``
    imported no framework and no adapter module."""
    found = json.loads(run(CHECK, env).output)
    require(found["imported"] == [], f"instrument() imported {found['imported']}")
    require(found["adapter modules"] == [], f"instrument() imported {found['adapter modules']}")
    if bare:
        require(found["installed"] == [], f"not bare: {found['installed']} installed")
        return Setup("no orchestrator installed", "no orchestrator installed")
    missing = [name for name in CO_INSTALLED if name not in found["installed"]]
    require(missing == [], f"not installed: {missing}")
    absent = sorted({listed.top_module for listed in ADAPTERS} - set(found["installed"]))
    return Setup(
        "every orchestrator installed, none imported",
        f"installed, and not imported by instrument(): {', '.join(found['installed'])}; "
        f"not installed: {', '.join(absent) or 'none'} (loom-kernel cannot be with orcapod: "
        "it needs polars < 2, orcapod polars 2)",
    )


def measure(rounds: int, env: dict[str, str]) -> dict[str, list[Run]]:
    names = list(SNIPPETS)
    for code in SNIPPETS.values():  # bytecode written, files cached
        run(code, env)
    runs: dict[str, list[Run]] = {name: [] for name in names}
    for round_number in range(rounds):
        shift = round_number % len(names)
        for name in names[shift:] + names[:shift]:
            runs[name].append(run(SNIPPETS[name], env))
    return runs


def share(runs: dict[str, list[Run]], figure: str) -> float:
    """instrument()'s median minus BaseInstrumentor's, as the row's added figure is."""
    ours, base = ([getattr(one, figure) for one in runs[name]] for name in (INSTRUMENT, BASE))
    return statistics.median(ours) - statistics.median(base)


def results_of(suite: str, described: Setup, runs: dict[str, list[Run]]) -> Results:
    wall = {name: [one.wall_ms for one in found] for name, found in runs.items()}
    row = Row(
        suite=suite,
        benchmark=f"start-up, {described.name}",
        subject=INSTRUMENT,
        baseline=BASE,
        unit=UNIT,
        ratio=statistics.median(s / b for s, b in zip(wall[INSTRUMENT], wall[BASE])),
        subject_us=statistics.median(wall[INSTRUMENT]) * 1e3,
        baseline_us=statistics.median(wall[BASE]) * 1e3,
        goal=GOAL_MS,
        note=f"goal: the package's share (the ms added) under {GOAL_MS:g} ms",
    )
    bare = statistics.median(wall[BARE])
    facts = {"setup": described.detail}
    for name, times in wall.items():
        median = statistics.median(times)
        facts[name] = f"{median:.0f} ms ({median - bare:+.0f} ms over bare)"
    split = [tuple(float(value) * 1e3 for value in one.output.split()) for one in runs[INSTRUMENT]]
    wall_share = share(runs, "wall_ms")
    facts["the package's share (instrument() minus BaseInstrumentor)"] = (
        f"{wall_share:.1f} ms wall ({'met' if wall_share < GOAL_MS else 'missed'}: goal under "
        f"{GOAL_MS:g} ms), {share(runs, 'cpu_ms'):.1f} ms CPU; in the process: importing the "
        f"package {statistics.median(s[0] for s in split):.1f} ms, instrument() "
        f"{statistics.median(s[1] for s in split):.2f} ms"
    )
    tried = ("opentelemetry-api", "routilux", "orcapod", "sqlalchemy", "loom-kernel")
    return Results(suite, rows=[row], facts=facts, versions=versions(*tried))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(".bench"), help="results directory")
    parser.add_argument("--quick", action="store_true", help="2 rounds: checks the script runs")
    parser.add_argument(
        "--bare", action="store_true", help="no orchestrator is installed here (else: all)"
    )
    options = parser.parse_args()
    env = environment(options.bare)
    described = setup(options.bare, env)
    runs = measure(2 if options.quick else 15, env)
    suite = f"{SUITE}-bare" if options.bare else SUITE
    finish(results_of(suite, described, runs), options.out)


if __name__ == "__main__":
    main()
