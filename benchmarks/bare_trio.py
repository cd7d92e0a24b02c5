"""The least a Trio program does to hand no-op tasks to the Go peer worker: the
ceiling trio_pipe's dispatcher is measured against, beside rust-pipe
(``benchmarks/peers.py``).

It accepts the worker's connection with trio_pipe's own WebSocket stream (the
``websockets`` sans-IO protocol under Trio), answers its registration, and then only
moves frames: each ``TaskDispatch`` made from a template with a fresh id, each result
read with orjson for its status, one reader task and one writer task that sends
whatever is pending in one write. There is no scheduler, handle, store, timeout or
retry. What trio_pipe's dispatcher costs above this is its own; what this costs
against rust-pipe is the language's and the event loop's.
"""

from __future__ import annotations

import statistics
import subprocess
import time
import uuid
from functools import partial
from typing import Any

import orjson
import trio

from trio_pipe import Task
from trio_pipe.protocol import Shutdown, TaskDispatch, WorkerRegistered, encode
from trio_pipe.transports import Outbox
from trio_pipe.transports._websocket import WebSocketStream, accept_websocket

from ._measure import rates
from .sdks import worker_env


class _Frames:
    """``TaskDispatch`` frames of one task type, each with a fresh id."""

    def __init__(self, task_type: str) -> None:
        task = Task.new(task_type, 0)
        self._template = encode(TaskDispatch(task)).replace(str(task.id), "{id}")

    def next(self) -> str:
        return self._template.replace("{id}", str(uuid.uuid4()), 1)


async def _result(ws: WebSocketStream) -> None:
    """Wait for the next ``TaskResult`` (skipping heartbeats); it must be Completed."""
    while True:
        message = orjson.loads(await ws.receive())
        if message["type"] == "TaskResult":
            if message["result"]["status"] != "Completed":
                raise RuntimeError(f"a task did not complete: {message}")
            return


async def _throughput(
    ws: WebSocketStream, frames: _Frames, tasks: int, in_flight: int
) -> float:
    outbox = Outbox()
    sent = min(in_flight, tasks)
    started = time.perf_counter()
    async with trio.open_nursery() as nursery:

        async def writer() -> None:
            while batch := await outbox.take():
                await ws.send_all(batch)

        nursery.start_soon(writer)
        for _ in range(sent):
            outbox.put(frames.next())
        for _ in range(tasks):
            await _result(ws)
            if sent < tasks:
                outbox.put(frames.next())
                sent += 1
        outbox.close()
    return tasks / (time.perf_counter() - started)


async def _latencies(ws: WebSocketStream, frames: _Frames, tasks: int) -> list[float]:
    samples = []
    for _ in range(tasks):
        started = time.perf_counter()
        await ws.send_all([frames.next()])
        await _result(ws)
        samples.append((time.perf_counter() - started) * 1e6)
    return samples


async def measure(
    worker: list[str],
    *,
    tasks: int,
    latency_tasks: int,
    in_flight: int,
    task_type: str = "noop",
) -> dict[str, Any]:
    """The harness's workload (a warm-up, three throughput runs with *in_flight*
    tasks at once, latency one at a time) served by one process of *worker* (the
    URL appended)."""
    async with trio.open_nursery() as nursery:
        (listener,) = await trio.open_tcp_listeners(0, host="127.0.0.1")
        url = f"ws://127.0.0.1:{listener.socket.getsockname()[1]}"
        env = worker_env(url, "bench-peer-worker", in_flight)
        await nursery.start(
            partial(
                trio.run_process,
                [*worker, url],
                env=env,
                stdin=subprocess.DEVNULL,
                check=False,
            )
        )
        with trio.fail_after(60):
            stream = await listener.accept()
            ws = await accept_websocket(stream)
            registration = orjson.loads(await ws.receive())["registration"]
        await listener.aclose()
        await ws.send_all([encode(WorkerRegistered(worker_id=registration["workerId"]))])
        frames = _Frames(task_type)
        await _throughput(ws, frames, min(tasks, 500), in_flight)
        runs = [await _throughput(ws, frames, tasks, in_flight) for _ in range(3)]
        samples = sorted(await _latencies(ws, frames, latency_tasks))
        await ws.send_all([encode(Shutdown())])  # the worker closes, and exits 0
        with trio.move_on_after(10):
            await ws.aclose()
    return {
        "scenario": "bare Trio, no dispatcher: frames only, the ceiling",
        **rates(runs),
        "p50_us": statistics.median(samples),
        "p99_us": samples[int(len(samples) * 0.99) - 1],
    }
