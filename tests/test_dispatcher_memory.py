"""What the dispatcher holds on to: nothing of a task once it is resolved and its
caller has let go of the handle, even long before the task's timeout."""

from __future__ import annotations

import gc
import weakref

import trio

import trio_pipe
from trio_pipe import Task
from trio_pipe.testing import open_memory_worker


class Payload(dict[str, int]):
    """A JSON object that can be referenced weakly."""


async def test_a_resolved_task_is_not_kept_until_its_timeout(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with trio_pipe.open_dispatcher(port=None) as d:
        async with open_memory_worker(d, "w", ["t"], max_concurrency=4) as worker:

            async def serve() -> None:
                while True:
                    await worker.complete(await worker.receive_task(), "done")

            async with trio.open_nursery() as nursery:
                nursery.start_soon(serve)
                payload = Payload(n=0)
                first = await d.submit(Task.new("t", payload, timeout_ms=3_600_000))
                assert await first.value() == "done"
                resolved = weakref.ref(payload)
                del first, payload
                for i in range(500):  # a steady load, all within the timeout
                    assert await d.run(Task.new("t", i, timeout_ms=3_600_000)) == "done"
                gc.collect()
                assert resolved() is None
                nursery.cancel_scope.cancel()
