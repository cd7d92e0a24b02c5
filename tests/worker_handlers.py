"""Handlers for the worker processes that integration tests start."""

from __future__ import annotations

from typing import Any

import trio

from trio_pipe.worker import Handlers

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
