"""Handlers for benchmark workers: a no-op task, and one that says when it ran."""

import time
from typing import Any

from trio_pipe.worker import Handlers

HANDLERS = Handlers()


@HANDLERS.handler("noop")
async def noop(payload: Any) -> Any:
    return payload


@HANDLERS.handler("stamp")
async def stamp(payload: Any) -> float:
    """The wall-clock time (``time.time()``) at which the worker ran the task."""
    return time.time()
