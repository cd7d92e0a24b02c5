"""Handlers for the worker processes of the crash tests: each run of a task is logged
(start and end, with the system-wide monotonic clock) to the file named by
``TRIO_PIPE_CRASH_LOG``, so that a test can check that no task ever ran on two
workers at once."""

from __future__ import annotations

import os
import random
import time
from typing import Any

import trio

from trio_pipe.worker import Handlers, current_task

HANDLERS = Handlers()

_LOG = os.open(os.environ["TRIO_PIPE_CRASH_LOG"], os.O_WRONLY | os.O_CREAT | os.O_APPEND)


def _log(*fields: object) -> None:
    # One write per line, O_APPEND: lines never interleave, whoever else appends.
    os.write(_LOG, (" ".join(map(str, fields)) + "\n").encode())


@HANDLERS.handler("job")
async def job(payload: dict[str, Any]) -> str:
    task = current_task()
    attempt = task.metadata.attempt
    _log("start", task.id, attempt, time.monotonic_ns())
    how = "cancelled"
    try:
        await trio.sleep(random.uniform(0.005, 0.05))
        how = "completed"
        return str(payload["key"])
    finally:
        _log("end", task.id, attempt, time.monotonic_ns(), how)


@HANDLERS.handler("stall-first-attempt")
async def stall_first_attempt(payload: dict[str, Any]) -> str:
    """The first attempt takes ``payload["seconds"]``; any later one, no time."""
    task = current_task()
    attempt = task.metadata.attempt
    _log("start", task.id, attempt, time.monotonic_ns())
    how = "cancelled"
    try:
        if attempt == 1:
            await trio.sleep(payload["seconds"])
        how = "completed"
        return f"attempt {attempt}"
    finally:
        _log("end", task.id, attempt, time.monotonic_ns(), how)


@HANDLERS.handler("workflow-step")
async def workflow_step(payload: dict[str, Any]) -> Any:
    """A step of tests/workflow_crash_dispatcher.py's workflow, logged by its
    idempotency key (``workflow/squares/crash-run/<step path>``): ``start KEY NS`` and
    ``end KEY NS HOW``."""
    key = current_task().metadata.idempotency_key
    _log("start", key, time.monotonic_ns())
    how = "cancelled"
    try:
        await trio.sleep(random.uniform(0.005, 0.05))
        op, value = payload["op"], payload["value"]
        result: Any
        if op == "range":
            result = list(range(value))
        elif op == "square":
            result = value * value
        else:
            result = sum(value)
        how = "completed"
        return result
    finally:
        _log("end", key, time.monotonic_ns(), how)


if __name__ == "__main__":
    # python -m tests.crash_handlers URL WORKER_ID: a worker that reconnects quickly
    # (the dispatcher is down for well under a second at each kill).
    import sys

    from trio_pipe.worker import run_worker

    url, worker_id = sys.argv[1:]
    trio.run(
        lambda: run_worker(
            url, HANDLERS, worker_id=worker_id, max_concurrency=8, backoff_max=0.3
        )
    )
