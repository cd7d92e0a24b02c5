"""Scheduling semantics, demonstrated: one worker slot, so order is visible.

Run it with ``python docs/examples/scheduling.py``.
"""

from collections import defaultdict
from functools import partial
from typing import Any

import trio

import trio_pipe
from trio_pipe import Priority, Task, TaskEventKind
from trio_pipe.worker import Handlers, current_task, run_worker

handlers = Handlers()
ran: list[str] = []  # the order the worker started tasks in
cancelled: list[str] = []  # tasks whose handler saw cancellation
stopped: defaultdict[str, trio.Event] = defaultdict(trio.Event)


@handlers.handler("job")
async def job(payload: dict[str, Any]) -> str:
    name: str = payload["name"]
    ran.append(name)
    try:
        await trio.sleep(payload.get("seconds", 0))
    except trio.Cancelled:
        cancelled.append(name)
        stopped[name].set()
        raise
    return name


@handlers.handler("flaky")
async def flaky(payload: None) -> str:
    if current_task().metadata.retry_count == 0:
        raise RuntimeError("first try fails")
    return "second try worked"


@handlers.handler("timeout")
async def timeout(payload: None) -> int:
    return current_task().metadata.timeout_ms


@handlers.handler("square")
async def square(n: int) -> int:
    return n * n


async def main() -> None:
    async with (
        trio_pipe.open_dispatcher(retry_backoff=0.01) as dispatcher,
        trio.open_nursery() as nursery,
    ):
        await nursery.start(
            partial(run_worker, dispatcher.url, handlers, max_concurrency=1)
        )

        # 1. Priority: higher first, FIFO within a priority.
        busy = await dispatcher.submit(Task.new("job", {"name": "busy", "seconds": 0.2}))
        later = [
            await dispatcher.submit(Task.new("job", {"name": name}, priority=priority))
            for name, priority in [
                ("normal-1", Priority.NORMAL),
                ("low", Priority.LOW),
                ("normal-2", Priority.NORMAL),
                ("critical", Priority.CRITICAL),
            ]
        ]
        for handle in [busy, *later]:
            await handle.result()
        print(ran)  # ['busy', 'critical', 'normal-1', 'normal-2', 'low']

        # 2. A task's own timeout: TimedOut, and the worker is told to stop.
        slow = await dispatcher.submit(
            Task.new("job", {"name": "slow", "seconds": 10}, timeout_ms=200)
        )
        result = await slow.result()
        print(result.status.value, result.error and result.error.code)  # TimedOut TIMEOUT

        # 3. run() is structured: the caller's deadline reaches the worker...
        with trio.move_on_after(5):
            sent_timeout = await dispatcher.run(Task.new("timeout", None))
        print(sent_timeout <= 5_000)  # True

        # ...and cancelling the caller kills the remote task.
        with trio.move_on_after(0.2):
            await dispatcher.run(Task.new("job", {"name": "abandoned", "seconds": 10}))
        with trio.fail_after(5):
            await stopped["abandoned"].wait()  # the worker got Kill
        print(cancelled)  # ['slow', 'abandoned']

        # 4. submit() is fire-and-forget until you cancel the handle.
        dropped = Task.new("job", {"name": "dropped", "seconds": 10})
        handle = await dispatcher.submit(dropped)
        await handle.cancel("changed my mind")
        print((await handle.result()).status.value)  # Cancelled

        # 5. Retryable failures are retried; every try is on the handle.
        handle = await dispatcher.submit(Task.new("flaky", None))
        print(await handle.value(), len(handle.attempts))  # second try worked 2

        # 6. Batches: at most `concurrency` in flight, results in completion order.
        async with dispatcher.map("square", range(5), concurrency=2) as batch:
            squares = sorted([item.value async for item in batch])
        print(squares)  # [0, 1, 4, 9, 16]

        # 7. Lifecycle events.
        async with dispatcher.events() as events:
            await dispatcher.run(Task.new("square", 3))
            kinds = []
            async for event in events:
                if isinstance(event, trio_pipe.TaskEvent):
                    kinds.append(event.kind.value)
                    if event.kind is TaskEventKind.COMPLETED:
                        break
        print(kinds)  # ['Pending', 'Dispatched', 'Completed']
        nursery.cancel_scope.cancel()


if __name__ == "__main__":
    trio.run(main)
