"""Print the benchmark table from the results the benchmark scripts wrote.

Standard library only, so it runs with any Python: ``python benchmarks/report.py .bench``.
The output is Markdown, the form docs/benchmarks.md publishes.
"""

from __future__ import annotations

import json
import os
import platform
import sys
from pathlib import Path
from typing import Any

SUITES = ("core", "routilux", "orcapod", "loom", "sqlalchemy", "celery")
ADDED = ", added"  # the unit of a row comparing what two cases add over a shared baseline
START = "process start"  # the unit of a row timing whole interpreters: its goal is ms added


def machine() -> str:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} CPUs, {platform.system()} {platform.release()}"


def goal_mark(row: dict[str, Any]) -> str:
    goal = row.get("goal")
    if goal is None:
        return ""
    if row["unit"] == START:
        added_ms = (row["subject_us"] - row["baseline_us"]) / 1e3
        return f"< +{goal:g} ms {'met' if added_ms < goal else 'missed'}"
    return f"≤ {goal:.2f}x {'met' if row['ratio'] <= goal else 'missed'}"


def table(documents: list[dict[str, Any]]) -> list[str]:
    lines = [
        "| benchmark | subject | against | ratio | goal | subject | against | added | per |",
        "|---|---|---|---:|---|---:|---:|---:|---|",
    ]
    for document in documents:
        for row in document["rows"]:
            unit = row["unit"]
            if unit.endswith(ADDED):  # two added costs compared: their difference says nothing
                added = ""
                unit = unit[: -len(ADDED)]
                times = f"{row['subject_us']:+.2f} µs | {row['baseline_us']:+.2f} µs"
            elif unit == START:
                added = f"{(row['subject_us'] - row['baseline_us']) / 1e3:+.1f} ms"
                times = f"{row['subject_us'] / 1e3:.1f} ms | {row['baseline_us'] / 1e3:.1f} ms"
            else:
                added = f"{row['subject_us'] - row['baseline_us']:+.1f} µs"
                times = f"{row['subject_us']:.1f} µs | {row['baseline_us']:.1f} µs"
            lines.append(
                f"| {row['suite']}: {row['benchmark']} | {row['subject']} | {row['baseline']} "
                f"| {row['ratio']:.2f}x | {goal_mark(row)} | {times} | {added} | {unit} |"
            )
    return lines


def main() -> None:
    directory = Path(sys.argv[1] if len(sys.argv) > 1 else ".bench")
    found = {path.stem: json.loads(path.read_text()) for path in directory.glob("*.json")}
    if not found:
        sys.exit(f"no results in {directory}/: run scripts/bench")
    documents = [found[suite] for suite in SUITES if suite in found]
    documents += [document for suite, document in sorted(found.items()) if suite not in SUITES]
    lines = [f"Machine: {machine()}; Python {documents[0]['python']}.", ""]
    lines += table(documents)
    lines += ["", "Measured values:", ""]
    for document in documents:
        lines += [
            f"- {document['suite']}: {name}: {value}" for name, value in document["facts"].items()
        ]
    lines += ["", "Versions:", ""]
    for document in documents:
        listed = ", ".join(f"{name} {version}" for name, version in document["versions"].items())
        lines.append(f"- {document['suite']}: {listed}")
    missing = [suite for suite in SUITES if suite not in found]
    if missing:
        lines += ["", f"Not run: {', '.join(missing)}."]
    print("\n".join(lines))


if __name__ == "__main__":
    main()
