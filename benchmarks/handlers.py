"""Handlers for benchmark workers: a no-op task, one that says when it ran, and a
short nap."""

import time
from typing import Any

import trio

from trio_pipe.worker import Handlers

HANDLERS = Handlers()


@HANDLERS.handler("noop")
async def noop(payload: Any) -> Any:
    return payload


@HANDLERS.handler("stamp")
async def stamp(payload: Any) -> float:
    """The wall-clock time (``time.time()``) at which the worker ran the task."""
    return time.time()


@HANDLERS.handler("nap")
async def nap(payload: Any) -> None:
    """Take ``payload["ms"]`` milliseconds (a task that is in flight for a while)."""
    await trio.sleep(payload["ms"] / 1000)
