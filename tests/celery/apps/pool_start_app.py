"""A Celery application whose pool processes start, or fail to, as the test plans, written as
a user would: nothing of this project's is imported.

``POOL_START_PLAN`` names a file of one action a line; each pool process takes the first at
``worker_process_init`` (none left: ``up``) and writes its pid and action to the file
``<plan>.taken``. ``up`` starts normally; ``exit`` calls ``sys.exit(3)``; ``term`` stops the
process with SIGTERM; ``hang`` waits to be killed (Celery kills a replacement process not up
within ``worker_proc_alive_timeout``, here ``POOL_ALIVE_TIMEOUT`` seconds). ``READY_DELAY``
seconds (default 0) are slept at ``worker_ready``, which comes just before Celery checks that
the processes of the first start are still there.
"""

from __future__ import annotations

import fcntl
import os
import signal
import sys
import time

from celery import Celery
from celery.signals import worker_process_init, worker_ready

app = Celery(
    "pool_start_app",
    broker=os.environ["CELERY_BROKER_URL"],
    backend=os.environ["CELERY_RESULT_BACKEND"],
)
app.conf.broker_connection_retry_on_startup = True
app.conf.worker_proc_alive_timeout = float(os.environ.get("POOL_ALIVE_TIMEOUT", "4"))


def _take_action(plan: str) -> str:
    """The plan's first action, taken out of it, and written down with this process's pid."""
    with open(plan, "r+") as file:
        fcntl.flock(file, fcntl.LOCK_EX)
        actions = file.read().split()
        file.seek(0)
        file.truncate()
        file.write("\n".join(actions[1:]))
        action = actions[0] if actions else "up"
        with open(f"{plan}.taken", "a") as taken:
            taken.write(f"{os.getpid()} {action}\n")
    return action


@worker_process_init.connect
def _start_as_planned(**_: object) -> None:
    plan = os.environ.get("POOL_START_PLAN")
    action = _take_action(plan) if plan else "up"
    if action == "exit":
        sys.exit(3)
    if action == "term":
        os.kill(os.getpid(), signal.SIGTERM)
    if action == "hang":
        time.sleep(60)


@worker_ready.connect
def _delay_ready(**_: object) -> None:
    time.sleep(float(os.environ.get("READY_DELAY", "0")))


@app.task
def add(x: int, y: int) -> int:
    return x + y
