"""The CI/CD names and values ``semconv`` writes out are the semantic conventions' own.

``semconv`` does not import ``opentelemetry-semantic-conventions``' incubating CI/CD module
(every instrumented process would, at start-up, for a dozen strings): this keeps them equal.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
from opentelemetry.semconv._incubating.attributes import cicd_attributes

from opentelemetry_instrumentation_execstatus import semconv

ATTRIBUTE_NAMES = [
    "CICD_PIPELINE_NAME",
    "CICD_PIPELINE_RUN_ID",
    "CICD_PIPELINE_RESULT",
    "CICD_PIPELINE_TASK_NAME",
    "CICD_PIPELINE_TASK_RUN_ID",
    "CICD_PIPELINE_TASK_RUN_RESULT",
    "CICD_WORKER_STATE",
]


@pytest.mark.parametrize("name", ATTRIBUTE_NAMES)
def test_each_cicd_attribute_name_is_the_conventions(name):
    assert getattr(semconv, name) == getattr(cicd_attributes, name)


@pytest.mark.parametrize(
    ("ours", "theirs"),
    [
        (semconv.WorkerState, cicd_attributes.CicdWorkerStateValues),
        (semconv.CicdResult, cicd_attributes.CicdPipelineResultValues),
    ],
)
def test_each_cicd_value_is_the_conventions(ours, theirs):
    assert {member.name: member.value for member in ours} == {
        member.name: member.value for member in theirs
    }


INCUBATING_IMPORTED = """
import sys
def incubating():
    return {name for name in sys.modules if ".semconv._incubating." in name}
from opentelemetry.instrumentation.instrumentor import BaseInstrumentor
before = incubating()
from opentelemetry_instrumentation_execstatus import ExecStatusInstrumentor
ExecStatusInstrumentor().instrument()
print(sorted(incubating() - before))
"""


def test_instrument_imports_no_incubating_convention_of_its_own():
    """Beyond those ``opentelemetry-instrumentation`` itself imports."""
    imported = subprocess.run(
        [sys.executable, "-c", INCUBATING_IMPORTED], capture_output=True, text=True, check=True
    ).stdout
    assert imported.strip() == "[]"
