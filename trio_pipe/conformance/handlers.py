"""The three task types a worker under the conformance kit serves, in Python.

``trio-pipe worker --handlers trio_pipe.conformance.handlers:HANDLERS`` is the Python
SDK's worker for the kit (see ``docs/conformance.md``).
"""

from __future__ import annotations

from typing import Any

import trio

from ..worker import Handlers

__all__ = ["HANDLERS"]

HANDLERS = Handlers()


class ConformanceFailure(Exception):
    """What ``fail`` raises: its message is the payload's ``message``."""


@HANDLERS.handler("echo")
async def echo(payload: Any) -> Any:
    return payload


@HANDLERS.handler("sleep")
async def sleep(payload: dict[str, Any]) -> dict[str, int]:
    milliseconds: int = payload["ms"]
    await trio.sleep(milliseconds / 1000)
    return {"sleptMs": milliseconds}


@HANDLERS.handler("fail")
async def fail(payload: dict[str, Any]) -> None:
    raise ConformanceFailure(payload["message"])
