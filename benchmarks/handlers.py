"""Handlers for benchmark workers: a no-op task, and a short nap."""

from typing import Any

import trio

from trio_pipe.worker import Handlers

HANDLERS = Handlers()


@HANDLERS.handler("noop")
async def noop(payload: Any) -> Any:
    return payload


@HANDLERS.handler("nap")
async def nap(payload: Any) -> None:
    """Take ``payload["ms"]`` milliseconds (a task that is in flight for a while)."""
    await trio.sleep(payload["ms"] / 1000)
