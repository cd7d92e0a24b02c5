"""Durable tasks: a SQLite store keeps every task across a restart of the dispatcher.

Run it with ``python docs/examples/durable.py``.
"""

import tempfile
from pathlib import Path

import trio

import trio_pipe
from trio_pipe import Task, TaskStatus
from trio_pipe.worker import Handlers, run_worker

handlers = Handlers()


@handlers.handler("charge")
async def charge(payload: dict[str, int]) -> str:
    if payload["cents"] < 0:
        raise ValueError("a negative amount")
    return f"charged {payload['cents']} cents"


async def main(database: str) -> None:
    # First run: tasks are submitted while no worker is attached, then it stops.
    async with trio_pipe.open_dispatcher(store=database, shutdown_grace=0) as dispatcher:
        charge_42 = Task.new("charge", {"cents": 4200}, idempotency_key="order-42")
        handle = await dispatcher.submit(charge_42)  # durable once submit() returns
        again = await dispatcher.submit(
            Task.new("charge", {"cents": 4200}, idempotency_key="order-42")
        )
        print(again is handle)  # True
        bad = await dispatcher.submit(Task.new("charge", {"cents": -1}, max_retries=1))

    # Second run, over the same file: the queued tasks are still there and run.
    async with (
        trio_pipe.open_dispatcher(store=database) as dispatcher,
        trio.open_nursery() as nursery,
    ):
        await nursery.start(run_worker, dispatcher.url, handlers)
        print(await (await dispatcher.handle(handle.id)).value())  # charged 4200 cents
        print(
            (await (await dispatcher.handle(bad.id)).result()).status
        )  # TaskStatus.FAILED

        # It failed on both tries: a dead letter, with every attempt.
        (dead,) = await dispatcher.dead_letters()
        print(
            len(dead.attempts), [a.error.code for a in dead.attempts if a.error]
        )  # 2 ['HANDLER_ERROR', 'HANDLER_ERROR']
        print(await dispatcher.purge())  # 1
        print(
            [r.status for r in await dispatcher.tasks()] == [TaskStatus.COMPLETED]
        )  # True
        nursery.cancel_scope.cancel()


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as directory:
        trio.run(main, f"sqlite:///{Path(directory) / 'tasks.db'}")
