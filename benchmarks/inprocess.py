"""The dispatcher alone: per-task overhead through the scheduler with an in-memory
transport, and memory held per queued task."""

from __future__ import annotations

import gc
import json
import time
import tracemalloc
from typing import Any

import trio

import trio_pipe
from trio_pipe import Task
from trio_pipe.testing import MemoryWorker, connect_memory_worker

_RESULT = (
    '{"type":"TaskResult","result":{"taskId":"%s","status":"Completed","payload":null}}'
)


async def answer_everything(worker: MemoryWorker) -> None:
    """A worker that costs as little as possible: decodes each frame, answers every
    dispatch Completed. It takes the frames received so far and sends their results
    in one batch, as a worker over a socket does with one read and one write."""
    while True:
        results = []
        for frame in await worker.receive_frames():
            message = json.loads(frame)
            if message["type"] == "TaskDispatch":
                results.append(_RESULT % message["task"]["id"])
        if results:
            await worker.send_frames(results)


async def dispatch_overhead(tasks: int = 10_000) -> dict[str, Any]:
    """Queue *tasks*, then let one in-memory worker with 256 slots drain the queue.
    Reports µs per task to submit (into the queue) and for the whole round trip
    through the scheduler (dispatch, encode, decode the result, resolve)."""
    async with trio_pipe.open_dispatcher(port=None) as d, trio.open_nursery() as n:
        started = time.perf_counter()
        handles = [await d.submit(Task.new("noop", i)) for i in range(tasks)]
        submitted = time.perf_counter()
        worker = await connect_memory_worker(d, "mem", ["noop"], max_concurrency=256)
        n.start_soon(answer_everything, worker)
        for handle in handles:
            await handle.result()
        finished = time.perf_counter()
        n.cancel_scope.cancel()
    return {
        "scenario": f"in-process, {tasks:,} queued tasks through the scheduler",
        "submit_us_per_task": (submitted - started) / tasks * 1e6,
        "round_trip_us_per_task": (finished - submitted) / tasks * 1e6,
        "total_us_per_task": (finished - started) / tasks * 1e6,
    }


async def _queue(tasks: int) -> int:
    async with trio_pipe.open_dispatcher(port=None, max_queued=tasks) as d:
        gc.collect()
        before = tracemalloc.get_traced_memory()[0]
        for i in range(tasks):
            await d.submit(Task.new("noop", i))
        gc.collect()
        held = tracemalloc.get_traced_memory()[0] - before
        assert d.pool_stats().queued == tasks
    return held


def memory_per_queued_task(tasks: int = 100_000) -> dict[str, Any]:
    """Bytes held per queued task (the Task, its handle and the queue's bookkeeping),
    measured with tracemalloc."""
    tracemalloc.start()
    try:
        held = trio.run(_queue, tasks)
    finally:
        tracemalloc.stop()
    return {
        "scenario": f"memory, {tasks:,} queued tasks",
        "bytes_per_queued_task": held / tasks,
    }
