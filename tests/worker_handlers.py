"""Handlers for the worker processes that integration tests start."""

from __future__ import annotations

import itertools
from typing import Any

import trio

from trio_pipe.worker import Handlers, current_task

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
