"""No-op task round trips through the dispatcher to Python worker processes over
WebSocket: throughput with many tasks in flight, latency with one at a time."""

from __future__ import annotations

import subprocess
import sys
from functools import partial
from typing import Any

import trio

import trio_pipe

from ._measure import summary


async def start_workers(
    nursery: trio.Nursery, dispatcher: trio_pipe.Dispatcher, count: int, concurrency: int
) -> None:
    for n in range(count):
        argv = [
            sys.executable, "-m", "trio_pipe", "worker",
            "--url", dispatcher.url,
            "--handlers", "benchmarks.handlers:HANDLERS",
            "--worker-id", f"bench-{n}",
            "--max-concurrency", str(concurrency),
        ]  # fmt: skip
        await nursery.start(
            partial(trio.run_process, argv, check=False, stdin=subprocess.DEVNULL)
        )
    with trio.fail_after(30):
        await dispatcher.wait_for_workers(count)


async def measure(
    *,
    workers: int = 1,
    tasks: int = 10_000,
    latency_tasks: int = 2_000,
    in_flight: int = 256,
) -> dict[str, Any]:
    async with trio_pipe.open_dispatcher() as dispatcher, trio.open_nursery() as nursery:
        await start_workers(nursery, dispatcher, workers, in_flight)
        figures = await summary(
            dispatcher, tasks=tasks, latency_tasks=latency_tasks, in_flight=in_flight
        )
        nursery.cancel_scope.cancel()
    return {"scenario": f"websocket, Python worker processes: {workers}", **figures}
