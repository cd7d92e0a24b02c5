"""Shared measurements: throughput with many tasks in flight, latency one at a time."""

from __future__ import annotations

import statistics
import time
from typing import Any

import trio

import trio_pipe
from trio_pipe import Task


async def throughput(dispatcher: trio_pipe.Dispatcher, tasks: int, in_flight: int) -> float:
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


async def latencies(dispatcher: trio_pipe.Dispatcher, tasks: int) -> list[float]:
    samples = []
    for i in range(tasks):
        started = time.perf_counter()
        await dispatcher.run(Task.new("noop", i))
        samples.append((time.perf_counter() - started) * 1e6)
    return samples


async def summary(
    dispatcher: trio_pipe.Dispatcher, *, tasks: int, latency_tasks: int, in_flight: int
) -> dict[str, Any]:
    """Warm up, then three throughput runs and one latency run of no-op tasks."""
    await throughput(dispatcher, min(tasks, 500), in_flight)
    rates = [await throughput(dispatcher, tasks, in_flight) for _ in range(3)]
    samples = sorted(await latencies(dispatcher, latency_tasks))
    return {
        "tasks_per_s": statistics.median(rates),
        "tasks_per_s_min": min(rates),
        "tasks_per_s_max": max(rates),
        "p50_us": statistics.median(samples),
        "p99_us": samples[int(len(samples) * 0.99) - 1],
    }
