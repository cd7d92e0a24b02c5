"""No-op task round trips through the dispatcher to Python worker processes over
WebSocket: throughput with many tasks in flight, latency with one at a time."""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from functools import partial
from typing import Any

import trio

import trio_pipe
from trio_pipe import Task


async def _start_workers(
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


async def _throughput(
    dispatcher: trio_pipe.Dispatcher, tasks: int, in_flight: int
) -> float:
    limit = trio.Semaphore(in_flight)

    async def one(handle: trio_pipe.TaskHandle[Any]) -> None:
        await handle.value()
        limit.release()

    started = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for i in range(tasks):
            await limit.acquire()
            nursery.start_soon(one, await dispatcher.submit(Task.new("noop", i)))
    return tasks / (time.perf_counter() - started)


async def _latencies(dispatcher: trio_pipe.Dispatcher, tasks: int) -> list[float]:
    samples = []
    for i in range(tasks):
        started = time.perf_counter()
        await dispatcher.run(Task.new("noop", i))
        samples.append((time.perf_counter() - started) * 1e6)
    return samples


async def measure(
    *,
    workers: int = 1,
    tasks: int = 10_000,
    latency_tasks: int = 2_000,
    in_flight: int = 256,
) -> dict[str, Any]:
    async with trio_pipe.open_dispatcher() as dispatcher, trio.open_nursery() as nursery:
        await _start_workers(nursery, dispatcher, workers, in_flight)
        await _throughput(dispatcher, min(tasks, 500), in_flight)  # warm up
        rates = [await _throughput(dispatcher, tasks, in_flight) for _ in range(3)]
        samples = sorted(await _latencies(dispatcher, latency_tasks))
        nursery.cancel_scope.cancel()
    return {
        "scenario": f"websocket, Python worker processes: {workers}",
        "tasks_per_s": statistics.median(rates),
        "tasks_per_s_min": min(rates),
        "tasks_per_s_max": max(rates),
        "p50_us": statistics.median(samples),
        "p99_us": samples[int(len(samples) * 0.99) - 1],
    }
