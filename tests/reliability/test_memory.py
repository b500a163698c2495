"""Bounded memory: state per execution lives only while it is in flight, ended ids are
remembered in bounded number and never whole.

``memory_probe.py`` runs in a fresh interpreter (so this process's own allocations are not
measured): the real SDK with a span processor that counts and drops, a real meter provider,
1,000 warm-up executions, a resident-set reading, then the measured executions (each
``running -> succeeded``), another reading; then 300 executions whose ids are 1 MiB strings
(kept whole, 300 of them would hold 300 MiB).

How many: a million executions, about two minutes on a 2-core machine (some 120 us each, most
of it the SDK's own span work); ``EXECSTATUS_RELIABILITY_MEMORY_EXECUTIONS`` sets another
count for a quicker local run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from figures import FIGURES

PROBE = Path(__file__).with_name("memory_probe.py")
EXECUTIONS = int(os.environ.get("EXECSTATUS_RELIABILITY_MEMORY_EXECUTIONS", "1000000"))
LONG_IDS = 300
ID_BYTES = 1 << 20
RSS_GROWTH_BOUND = 64 << 20  # generous: the allocator's own slack, never per-execution state
SECONDS_PER_EXECUTION_BOUND = 1e-3  # the subprocess's timeout: 5x slower than measured is a hang

pytestmark = pytest.mark.skipif(
    not Path("/proc/self/status").exists(), reason="reads VmRSS from /proc/self/status (Linux)"
)


@pytest.fixture(scope="module")
def probe() -> dict[str, Any]:
    """One run of the probe, for every test of this module."""
    timeout = 60 + EXECUTIONS * SECONDS_PER_EXECUTION_BOUND
    completed = subprocess.run(
        [
            sys.executable,
            str(PROBE),
            "--executions",
            str(EXECUTIONS),
            "--long-ids",
            str(LONG_IDS),
            "--id-bytes",
            str(ID_BYTES),
        ],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    result = json.loads(completed.stdout.strip().splitlines()[-1])
    total = result["warmup"] + result["executions"] + LONG_IDS
    FIGURES.executions += total
    FIGURES.spans(total, result["spans_ended"])
    return result


def mib(size: int) -> str:
    return f"{size / (1 << 20):.1f} MiB"


def test_executions_at_scale_leave_bounded_state(probe):
    """After the measured executions: nothing in flight, ended keys within the cap, every span
    ended, one histogram sample per execution, and the resident set grew by less than
    RSS_GROWTH_BOUND (it would by about a kilobyte per execution if any were kept)."""
    total = probe["warmup"] + probe["executions"] + LONG_IDS
    assert probe["in_flight"] == 0, "executions left in flight"
    assert probe["ended_keys"] <= probe["max_in_flight"], (
        f"{probe['ended_keys']} ended keys remembered, beyond the cap of {probe['max_in_flight']}"
    )
    assert probe["spans_started"] == probe["spans_ended"] == total, "spans not started or ended"
    assert probe["histogram_samples"] == total, "one running -> succeeded sample per execution"
    growth = probe["rss_after"] - probe["rss_before"]
    assert growth < RSS_GROWTH_BOUND, (
        f"resident set grew {mib(growth)} over {probe['executions']:,} executions "
        f"({mib(probe['rss_before'])} -> {mib(probe['rss_after'])})"
    )


def test_long_ids_are_not_kept_whole(probe):
    """300 executions whose ids are 1 MiB strings: the ended ids are remembered as digests,
    so the resident set grows by far less than the 300 MiB the ids themselves take."""
    long_ids = probe["long_ids"]
    assert long_ids["count"] == LONG_IDS and long_ids["id_bytes"] == ID_BYTES
    growth = long_ids["rss_after"] - long_ids["rss_before"]
    assert growth < RSS_GROWTH_BOUND, (
        f"resident set grew {mib(growth)} over {LONG_IDS} ids of {mib(ID_BYTES)} each"
    )
