"""Quickstart: a dispatcher and a worker over a real WebSocket, in one program.

Run it with ``python docs/examples/quickstart.py``.
"""

import trio

import trio_pipe
from trio_pipe import Priority, Task
from trio_pipe.worker import Handlers, run_worker

handlers = Handlers()


@handlers.handler("word-count")
async def word_count(payload: dict[str, str]) -> dict[str, int]:
    return {"words": len(payload["text"].split())}


async def main() -> None:
    async with (
        trio_pipe.open_dispatcher(port=0) as dispatcher,
        trio.open_nursery() as nursery,
    ):
        # Usually a separate process: trio-pipe worker --url ... --handlers ...
        await nursery.start(run_worker, dispatcher.url, handlers)

        result = await dispatcher.run(Task.new("word-count", {"text": "a b c"}))
        print(result)  # {'words': 3}

        handle = await dispatcher.submit(
            Task.new("word-count", {"text": "hello"}, priority=Priority.HIGH)
        )
        print((await handle.result()).status)  # TaskStatus.COMPLETED
        print(dispatcher.pool_stats())
        nursery.cancel_scope.cancel()


if __name__ == "__main__":
    trio.run(main)
