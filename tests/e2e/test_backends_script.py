"""``scripts/backends`` stops only what it started: a saved process id is trusted only while the
kernel's start time for it is the one saved with it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from otlp_backends import BACKENDS_SCRIPT


def _start_time(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])


def _down(home: Path) -> str:
    completed = subprocess.run(
        [sys.executable, str(BACKENDS_SCRIPT), "down"],
        env={**os.environ, "EXECSTATUS_BACKENDS_HOME": str(home)},
        capture_output=True,
        text=True,
        check=True,
    )
    return completed.stdout


@pytest.fixture
def sleeper():
    """A process in its own group, as `up` starts a backend."""
    process = subprocess.Popen(["sleep", "60"], start_new_session=True)
    yield process
    process.kill()
    process.wait()


@pytest.mark.parametrize("same_start_time", [True, False])
def test_down_stops_a_saved_process_only_if_it_is_the_one_started(
    tmp_path, sleeper, same_start_time
):
    data = tmp_path / "data" / "phoenix-x"
    data.mkdir(parents=True)
    (tmp_path / "run").mkdir()
    started = _start_time(sleeper.pid) + (0 if same_start_time else 1)
    record = {"pid": sleeper.pid, "started": started, "data": str(data)}
    (tmp_path / "run" / "phoenix.json").write_text(json.dumps(record))

    output = _down(tmp_path)

    if same_start_time:
        assert sleeper.wait(timeout=10) == -15  # SIGTERM
        assert f"phoenix: stopped (pid {sleeper.pid})" in output
    else:  # the id was reused by a process we did not start: left alone
        assert sleeper.poll() is None
        assert output == ""
    assert not data.exists()  # the throw-away data directory goes either way
    assert not (tmp_path / "run" / "phoenix.json").exists()
