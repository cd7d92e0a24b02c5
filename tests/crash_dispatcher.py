"""The dispatcher process of the crash tests (tests/test_crash.py).

``python -m tests.crash_dispatcher DB PORT KEYS [--finish]``: opens a dispatcher on
127.0.0.1:PORT over the SQLite store DB and submits the tasks ``key-0`` ..
``key-(KEYS-1)`` (each with its key as idempotency key, 16 submitters at a time),
printing ``accepted KEY ID`` as each ``submit()`` returns -- the promise the test
holds the store to. Then it waits to be killed. With ``--finish`` it submits nothing,
waits until every unfinished task it resumed has ended, and exits 0.
"""

from __future__ import annotations

import sys
from typing import Any

import trio

from trio_pipe import Task, TaskStatus, open_dispatcher
from trio_pipe.store import SqliteStore


async def submit_all(dispatcher: Any, keys: int) -> None:
    limiter = trio.CapacityLimiter(16)

    async def submit(key: str) -> None:
        async with limiter:
            task = Task.new("job", {"key": key}, max_retries=1000, idempotency_key=key)
            handle = await dispatcher.submit(task)
            print("accepted", key, handle.id, flush=True)

    async with trio.open_nursery() as nursery:
        for number in range(keys):
            nursery.start_soon(submit, f"key-{number}")


async def finish_all(dispatcher: Any) -> None:
    """Wait for every task the store resumed (all of them are live now)."""
    waiting = await dispatcher.tasks(status=TaskStatus.PENDING, limit=1_000_000)
    for record in waiting:
        await (await dispatcher.handle(record.id)).result()


async def main(path: str, port: int, keys: int, finish: bool) -> None:
    async with open_dispatcher(port=port, store=SqliteStore(path)) as dispatcher:
        print("ready", dispatcher.store.epoch, flush=True)
        if finish:
            await finish_all(dispatcher)
            return
        await submit_all(dispatcher, keys)
        await trio.sleep_forever()


if __name__ == "__main__":
    db, port, keys, *rest = sys.argv[1:]
    trio.run(main, db, int(port), int(keys), rest == ["--finish"])
