"""Handlers for benchmark workers: a no-op task."""

from typing import Any

from trio_pipe.worker import Handlers

HANDLERS = Handlers()


@HANDLERS.handler("noop")
async def noop(payload: Any) -> Any:
    return payload
