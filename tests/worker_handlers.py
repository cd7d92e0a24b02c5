"""Handlers for the worker processes that integration tests start."""

from __future__ import annotations

import collections
import contextlib
import itertools
import os
import time
from collections.abc import Iterator
from typing import Any

import trio

from trio_pipe.worker import Handlers, TaskFailure, current_task, extend_deadline, progress

HANDLERS = Handlers()


@HANDLERS.handler("echo")
async def echo(payload: Any) -> Any:
    return payload


@HANDLERS.handler("sleep")
async def sleep(payload: dict[str, Any]) -> str:
    await trio.sleep(payload["seconds"])
    return "slept"


@HANDLERS.handler("fail")
async def fail(payload: dict[str, Any]) -> None:
    raise ValueError(payload["message"])


@HANDLERS.handler("hang")
async def hang(payload: dict[str, Any]) -> None:
    """Sleep forever; write a marker file when cancelled (proof the worker stopped it)."""
    try:
        await trio.sleep_forever()
    finally:
        with trio.CancelScope(shield=True):
            await trio.Path(payload["marker"]).write_text("cancelled")


@HANDLERS.handler("hang-reporting")
async def hang_reporting(payload: dict[str, Any]) -> None:
    """:func:`hang`, saying first that it started (a progress report)."""
    progress(0.0, "started")
    await hang(payload)


@HANDLERS.handler("metadata")
async def metadata(payload: Any) -> dict[str, int]:
    """What the worker was told about the task it is running (after sleeping
    ``first_try_seconds`` if this is the task's first try)."""
    meta = current_task().metadata
    if meta.retry_count == 0:
        await trio.sleep(payload.get("first_try_seconds", 0))
    return {"retry_count": meta.retry_count, "timeout_ms": meta.timeout_ms}


_started = itertools.count()


@HANDLERS.handler("order")
async def order(payload: Any) -> int:
    """The order in which this worker process started its "order" tasks."""
    position = next(_started)
    await trio.sleep(0.05)
    return position


@HANDLERS.handler("print")
async def print_(payload: Any) -> Any:
    """Print *payload* with ``print()`` (which must not reach a stdio worker's stdout),
    and return it."""
    print(payload, flush=True)
    return payload


# -- concurrency counters: how many tasks of each type ran at once, at most ----------

_running: collections.Counter[str] = collections.Counter()
_peak: collections.Counter[str] = collections.Counter()


@contextlib.contextmanager
def _counted(task_type: str) -> Iterator[None]:
    for key in (task_type, "*"):
        _running[key] += 1
        _peak[key] = max(_peak[key], _running[key])
    try:
        yield
    finally:
        for key in (task_type, "*"):
            _running[key] -= 1


@HANDLERS.handler("render")
async def render(payload: dict[str, Any]) -> str:
    with _counted("render"):
        await trio.sleep(payload["seconds"])
    return "rendered"


@HANDLERS.handler("fetch")
async def fetch(payload: dict[str, Any]) -> str:
    with _counted("fetch"):
        await trio.sleep(payload["seconds"])
    return "fetched"


@HANDLERS.handler("peaks")
async def peaks(payload: Any) -> dict[str, int]:
    """The most tasks of each counted type (and ``*``: of all) that ran at once."""
    return dict(_peak)


# -- plain functions: in a worker thread, or in a process --------------------------


def _spin(seconds: float) -> int:
    """Hold the CPU (and the GIL, as pure Python does) for *seconds*."""
    end = time.monotonic() + seconds
    turns = 0
    while time.monotonic() < end:
        turns += 1
    return turns


@HANDLERS.handler("spin")
def spin(payload: dict[str, Any]) -> str:
    _spin(payload["seconds"])
    return "spun in a thread"


@HANDLERS.handler("spin-process", process=True)
def spin_process(payload: dict[str, Any]) -> dict[str, Any]:
    _spin(payload["seconds"])
    return {"pid": os.getpid(), "task_id": str(current_task().id)}


def _report(steps: int, pause: float, sleep: Any) -> None:
    for step in range(1, steps + 1):
        progress(step / steps, f"step {step} of {steps}")
        sleep(pause)


@HANDLERS.handler("report")
async def report(payload: dict[str, Any]) -> str:
    for step in range(1, payload["steps"] + 1):
        progress(step / payload["steps"], f"step {step} of {payload['steps']}")
        await trio.sleep(payload.get("pause", 0.01))
    return "reported"


@HANDLERS.handler("report-thread")
def report_thread(payload: dict[str, Any]) -> str:
    _report(payload["steps"], payload.get("pause", 0.01), time.sleep)
    return "reported from a thread"


@HANDLERS.handler("report-process", process=True)
def report_process(payload: dict[str, Any]) -> str:
    _report(payload["steps"], payload.get("pause", 0.01), time.sleep)
    return "reported from a process"


@HANDLERS.handler("outlive", process=True)
def outlive(payload: dict[str, Any]) -> str:
    """Ask for *extend_ms* more, then run past the task's own timeout."""
    extend_deadline(payload["extend_ms"])
    time.sleep(payload["seconds"])
    return "outlived"


# Plain functions for process handlers registered by the tests themselves.


def refuse_in_process(payload: Any) -> None:
    raise TaskFailure("BAD_INPUT", "no good", retryable=False)


def raise_in_process(payload: Any) -> None:
    raise ValueError("raised in a process")


def unpicklable_result(payload: Any) -> Any:
    return lambda: "a function is no result"


@HANDLERS.handler("nap")
async def nap(payload: dict[str, Any]) -> str:
    """Say it started (a progress report), then sleep *seconds*."""
    progress(0.0, "napping")
    await trio.sleep(payload["seconds"])
    return "rested"


@HANDLERS.handler("stubborn")
async def stubborn(payload: Any) -> dict[str, int]:
    """Say it started; on a first try, then run (almost) forever."""
    progress(0.0, "started")
    if current_task().metadata.retry_count == 0:
        await trio.sleep(600)
    return {"retry_count": current_task().metadata.retry_count}


@HANDLERS.handler("gate")
async def gate(payload: dict[str, str]) -> str:
    """Write ``started`` to the file *started*, then return once the file *release*
    exists (a test's way to hold a task in flight for as long as it needs)."""
    await trio.Path(payload["started"]).write_text("started")
    while not await trio.Path(payload["release"]).exists():  # noqa: ASYNC110
        await trio.sleep(0.01)
    return "released"
