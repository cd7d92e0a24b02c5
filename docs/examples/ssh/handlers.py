"""The handlers the remote workers of ssh_workers.py serve."""

from trio_pipe.worker import Handlers

HANDLERS = Handlers()


@HANDLERS.handler("word-count")
async def word_count(payload: dict[str, str]) -> dict[str, int]:
    return {"words": len(payload["text"].split())}
