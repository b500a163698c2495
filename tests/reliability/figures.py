"""What the reliability suite did, counted as it runs: the figures of docs/reliability.md.

Each test adds what it did (faults injected, hostile inputs tried, executions run, spans
expected and exported); the session prints the totals and writes them to
``.reliability/figures.json`` (``EXECSTATUS_RELIABILITY_FIGURES`` names another file).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

DEFAULT_PATH = Path(__file__).resolve().parents[2] / ".reliability" / "figures.json"


@dataclass
class Figures:
    faults_injected: int = 0
    hostile_inputs: int = 0
    executions: int = 0
    spans_expected: int = 0
    spans_exported: int = 0
    forks: int = 0

    @property
    def spans_lost(self) -> int:
        return self.spans_expected - self.spans_exported

    def spans(self, expected: int, exported: int) -> None:
        """Count a check of exported spans against what was expected."""
        self.spans_expected += expected
        self.spans_exported += exported

    def as_dict(self) -> dict[str, int]:
        return {**asdict(self), "spans_lost": self.spans_lost}

    def write(self) -> Path:
        path = Path(os.environ.get("EXECSTATUS_RELIABILITY_FIGURES", DEFAULT_PATH))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.as_dict(), indent=2) + "\n")
        return path


FIGURES = Figures()
