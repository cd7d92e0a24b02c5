"""The raw limits: the same JSON frames echoed by a bare peer process with no dispatch
logic, over trio-websocket and over a stdio pipe. Scenarios are compared with these
(ratios measured in the same run hold; absolute numbers move from run to run).

The peer (``python -m benchmarks.raw_echo peer ws|stdio [url]``) decodes each frame
and answers a result-shaped JSON frame for it, as a worker would.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from functools import partial
from typing import Any

import trio
import trio_websocket

from trio_pipe import Task
from trio_pipe.protocol import TaskDispatch, encode

_RESULT = (
    '{{"type":"TaskResult","result":{{"taskId":"{}","status":"Completed","payload":null}}}}'
)


def _answer(frame: str | bytes) -> str:
    return _RESULT.format(json.loads(frame)["task"]["id"])


# -- the peer process -------------------------------------------------------------


async def _ws_peer(url: str) -> None:
    async with trio_websocket.open_websocket_url(url, message_queue_size=256) as ws:
        while True:
            try:
                frame = await ws.get_message()
            except trio_websocket.ConnectionClosed:
                return
            await ws.send_message(_answer(frame))


async def _stdio_peer() -> None:
    stdin = trio.lowlevel.FdStream(0)
    stdout = trio.lowlevel.FdStream(1)
    buffer = b""
    async for chunk in stdin:
        buffer += chunk
        *lines, buffer = buffer.split(b"\n")
        for line in lines:
            await stdout.send_all(_answer(line).encode() + b"\n")


# -- the measuring side -------------------------------------------------------------


class _Echo:
    """One conversation with a peer: send a frame, receive its answer."""

    def __init__(self, send: Any, receive: Any) -> None:
        self.send = send
        self.receive = receive


async def _measure(
    echo: _Echo, tasks: int, latency_tasks: int, in_flight: int
) -> dict[str, Any]:
    frame = encode(TaskDispatch(Task.new("noop", 0)))

    async def throughput(n: int) -> float:
        window = trio.Semaphore(in_flight)

        async def receiver() -> None:
            for _ in range(n):
                await echo.receive()
                window.release()

        started = time.perf_counter()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(receiver)
            for _ in range(n):
                await window.acquire()
                await echo.send(frame)
        return n / (time.perf_counter() - started)

    await throughput(min(tasks, 500))
    rates = [await throughput(tasks) for _ in range(3)]
    samples = []
    for _ in range(latency_tasks):
        started = time.perf_counter()
        await echo.send(frame)
        await echo.receive()
        samples.append((time.perf_counter() - started) * 1e6)
    samples.sort()
    return {
        "tasks_per_s": statistics.median(rates),
        "tasks_per_s_min": min(rates),
        "tasks_per_s_max": max(rates),
        "p50_us": statistics.median(samples),
        "p99_us": samples[int(len(samples) * 0.99) - 1],
    }


async def measure_websocket(
    *, tasks: int = 10_000, latency_tasks: int = 2_000, in_flight: int = 256
) -> dict[str, Any]:
    connected: trio.MemorySendChannel[trio_websocket.WebSocketConnection]
    connected, accepted = trio.open_memory_channel(1)
    done = trio.Event()

    async def handler(request: trio_websocket.WebSocketRequest) -> None:
        await connected.send(await request.accept())
        await done.wait()

    async with trio.open_nursery() as nursery:
        server = await nursery.start(
            partial(
                trio_websocket.serve_websocket,
                handler,
                "127.0.0.1",
                0,
                None,
                message_queue_size=256,
            )
        )
        argv = [
            sys.executable,
            "-m",
            "benchmarks.raw_echo",
            "peer",
            "ws",
            f"ws://127.0.0.1:{server.port}",
        ]
        await nursery.start(
            partial(trio.run_process, argv, check=False, stdin=subprocess.DEVNULL)
        )
        ws = await accepted.receive()
        figures = await _measure(
            _Echo(ws.send_message, ws.get_message), tasks, latency_tasks, in_flight
        )
        done.set()
        await ws.aclose()
        nursery.cancel_scope.cancel()
    return {"scenario": "raw limit: bare trio-websocket JSON echo", **figures}


async def measure_stdio(
    *, tasks: int = 10_000, latency_tasks: int = 2_000, in_flight: int = 256
) -> dict[str, Any]:
    argv = [sys.executable, "-m", "benchmarks.raw_echo", "peer", "stdio"]
    async with trio.open_nursery() as nursery:
        process: trio.Process = await nursery.start(
            partial(
                trio.run_process,
                argv,
                check=False,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
            )
        )
        assert process.stdin is not None and process.stdout is not None
        stdin, stdout = process.stdin, process.stdout
        lines: list[bytes] = []
        buffer = b""

        async def send(frame: str) -> None:
            await stdin.send_all(frame.encode() + b"\n")

        async def receive() -> bytes:
            nonlocal buffer
            while not lines:
                buffer += await stdout.receive_some(65536)
                *more, buffer = buffer.split(b"\n")
                lines.extend(more)
            return lines.pop(0)

        figures = await _measure(_Echo(send, receive), tasks, latency_tasks, in_flight)
        await stdin.aclose()
    return {"scenario": "raw limit: bare stdio-pipe JSON echo", **figures}


if __name__ == "__main__":
    if sys.argv[1:3] == ["peer", "ws"]:
        trio.run(_ws_peer, sys.argv[3])
    elif sys.argv[1:3] == ["peer", "stdio"]:
        trio.run(_stdio_peer)
    else:
        sys.exit("usage: python -m benchmarks.raw_echo peer ws URL | peer stdio")
