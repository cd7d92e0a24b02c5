"""Shared measurements: throughput with many tasks in flight, latency one at a time;
and the description of the machine saved with every result file."""

from __future__ import annotations

import os
import platform
import sqlite3
import statistics
import sys
import time
from typing import Any

import trio

import trio_pipe
from trio_pipe import Task


def machine() -> dict[str, Any]:
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "trio_pipe": trio_pipe.__version__,
        "trio": trio.__version__,
        "sqlite": sqlite3.sqlite_version,
    }


async def throughput(
    dispatcher: trio_pipe.Dispatcher, tasks: int, in_flight: int, task_type: str = "noop"
) -> float:
    limit = trio.Semaphore(in_flight)

    async def one(handle: trio_pipe.TaskHandle[Any]) -> None:
        await handle.value()
        limit.release()

    started = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for i in range(tasks):
            await limit.acquire()
            nursery.start_soon(one, await dispatcher.submit(Task.new(task_type, i)))
    return tasks / (time.perf_counter() - started)


async def throughput_submitters(
    dispatcher: trio_pipe.Dispatcher, tasks: int, submitters: int, task_type: str = "noop"
) -> float:
    """Tasks/s with *submitters* tasks that each submit a task, wait for its result,
    and submit the next: as many tasks in flight as :func:`throughput` with
    ``in_flight=submitters``, but also that many submissions at once -- which a
    durable store commits together, where :func:`throughput`'s one submitter waits
    for each submission's commit before the next."""
    numbers = iter(range(tasks))

    async def submitter() -> None:
        for i in numbers:  # shared: each number is taken once
            handle = await dispatcher.submit(Task.new(task_type, i))
            await handle.value()

    started = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for _ in range(submitters):
            nursery.start_soon(submitter)
    return tasks / (time.perf_counter() - started)


async def latencies(
    dispatcher: trio_pipe.Dispatcher, tasks: int, task_type: str = "noop"
) -> list[float]:
    samples = []
    for i in range(tasks):
        started = time.perf_counter()
        await dispatcher.run(Task.new(task_type, i))
        samples.append((time.perf_counter() - started) * 1e6)
    return samples


async def summary(
    dispatcher: trio_pipe.Dispatcher,
    *,
    tasks: int,
    latency_tasks: int,
    in_flight: int,
    task_type: str = "noop",
) -> dict[str, Any]:
    """Warm up, then three throughput runs and one latency run of no-op tasks (of
    *task_type*, whose handler returns at once)."""
    await throughput(dispatcher, min(tasks, 500), in_flight, task_type)
    rates = [await throughput(dispatcher, tasks, in_flight, task_type) for _ in range(3)]
    samples = sorted(await latencies(dispatcher, latency_tasks, task_type))
    return {
        "tasks_per_s": statistics.median(rates),
        "tasks_per_s_min": min(rates),
        "tasks_per_s_max": max(rates),
        "p50_us": statistics.median(samples),
        "p99_us": samples[int(len(samples) * 0.99) - 1],
    }
