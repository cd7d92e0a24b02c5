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


async def throughput_map(
    dispatcher: trio_pipe.Dispatcher, tasks: int, in_flight: int, task_type: str = "noop"
) -> float:
    """Tasks/s through :meth:`Dispatcher.map` with ``concurrency=in_flight``: the
    batch path, one consumer for every result."""
    started = time.perf_counter()
    async with dispatcher.map(task_type, range(tasks), concurrency=in_flight) as results:
        async for item in results:
            item.value  # noqa: B018 -- raises if the task did not complete
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
    shapes: bool = False,
) -> dict[str, Any]:
    """Warm up, then three throughput runs and one latency run of no-op tasks (of
    *task_type*, whose handler returns at once). With *shapes*, three runs of each
    other way to keep *in_flight* tasks going come between (:func:`rates`): with
    ``submitters_``, ``map_`` before each throughput key."""
    await throughput(dispatcher, min(tasks, 500), in_flight, task_type)
    figures = rates(
        [await throughput(dispatcher, tasks, in_flight, task_type) for _ in range(3)]
    )
    if shapes:
        for name, measure in [
            ("submitters", throughput_submitters),
            ("map", throughput_map),
        ]:
            runs = [
                await measure(dispatcher, tasks, in_flight, task_type) for _ in range(3)
            ]
            figures.update({f"{name}_{k}": v for k, v in rates(runs).items()})
    samples = sorted(await latencies(dispatcher, latency_tasks, task_type))
    return {
        **figures,
        "p50_us": statistics.median(samples),
        "p99_us": samples[int(len(samples) * 0.99) - 1],
    }


def rates(runs: list[float]) -> dict[str, float]:
    """The median of throughput *runs*, and their range."""
    return {
        "tasks_per_s": statistics.median(runs),
        "tasks_per_s_min": min(runs),
        "tasks_per_s_max": max(runs),
    }
