"""A worker written against the protocol by hand, with switchable faults.

With no fault it serves the conformance kit's contract (docs/conformance.md) in
stdio mode, or in WebSocket mode when a ``ws://`` URL is its last argument (without
reconnecting). Each ``--FAULT`` flag breaks one rule, so that the kit's tests can show
the kit catching it precisely.

    python tests/conformance_worker.py [--lowercase-status] [--snake-case]
        [--ignore-kill] [--no-heartbeat] [--unbounded] [--crash-on-garbage]
        [--no-drain] [--no-token] [--retry-refused] [--quiet-refusal]
        [--refusal-exits-0] [--exit-status N] [ws://...]

In WebSocket mode it sends ``TRIO_PIPE_TOKEN`` as ``Authorization: Bearer``, and a
refused handshake ends it with status 1 and the HTTP status on stderr.

It drains on SIGTERM and SIGINT as the protocol says (docs/protocol.md, "Draining"),
minimally: it stops reading (a dispatch that crosses the signal goes unanswered).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import trio
import trio_websocket

FAULTS = (
    "lowercase-status",
    "snake-case",
    "ignore-kill",
    "no-heartbeat",
    "unbounded",
    "crash-on-garbage",
    "no-drain",  # SIGTERM and SIGINT keep their default effect: the process dies
    "no-token",  # TRIO_PIPE_TOKEN is not sent
    "retry-refused",  # a refused handshake is tried again, and again
    "quiet-refusal",  # a refused handshake ends the worker without a word
    "refusal-exits-0",  # a refused handshake ends the worker with status 0
)

Send = Callable[[dict[str, Any]], Awaitable[None]]


class Worker:
    def __init__(self, faults: set[str], send: Send) -> None:
        self.faults = faults
        self.send = send
        self.worker_id = os.environ["TRIO_PIPE_WORKER_ID"]
        self.capacity = int(os.environ["TRIO_PIPE_MAX_CONCURRENCY"])
        self.heartbeat_s = int(os.environ["TRIO_PIPE_HEARTBEAT_MS"]) / 1000
        self.running: dict[str, trio.CancelScope] = {}
        self.stopped: set[str] = set()  # tasks stopped by the end of a drain
        self.started = time.monotonic()
        self.drain_s = int(os.environ.get("TRIO_PIPE_DRAIN_TIMEOUT_MS", "30000")) / 1000
        self.reading = trio.CancelScope()
        self.signal: int | None = None

    async def serve(self, receive: Callable[[], Awaitable[str | None]]) -> None:
        async with trio.open_nursery() as outer:
            if "no-heartbeat" not in self.faults:
                outer.start_soon(self.heartbeats)
            if "no-drain" not in self.faults:
                await outer.start(self.watch_signals, outer)
            async with trio.open_nursery() as tasks:  # exits once the tasks finish
                with self.reading:
                    await self.read(receive, tasks)
            outer.cancel_scope.cancel()

    async def watch_signals(
        self, outer: trio.Nursery, task_status: trio.TaskStatus[None]
    ) -> None:
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            task_status.started()
            async for signum in signals:
                if self.signal is None:  # drain: say so, read no more, let tasks run
                    self.signal = signum
                    await self.backpressure(True, draining=True)
                    self.reading.cancel()
                    outer.start_soon(self.stop_after, self.drain_s)
                else:  # again: stop now
                    self.stop_all()

    async def stop_after(self, seconds: float) -> None:
        await trio.sleep(seconds)
        self.stop_all()

    def stop_all(self) -> None:
        for task_id, scope in self.running.items():
            self.stopped.add(task_id)
            scope.cancel()

    async def read(
        self, receive: Callable[[], Awaitable[str | None]], tasks: trio.Nursery
    ) -> None:
        """Act on each frame until Shutdown or the end of input."""
        while (frame := await receive()) is not None:
            try:
                message = json.loads(frame)
                kind = message["type"]
            except (ValueError, TypeError, KeyError):
                if "crash-on-garbage" in self.faults:
                    raise
                continue
            if kind == "TaskDispatch":
                task = message["task"]
                if isinstance(task, dict) and "id" in task:
                    await self.accept(tasks, task)
            elif kind == "Kill" and "ignore-kill" not in self.faults:
                scope = self.running.get(message.get("taskId"))
                if scope is not None:
                    scope.cancel()
            elif kind == "Shutdown":
                return

    async def heartbeats(self) -> None:
        while True:
            await trio.sleep(self.heartbeat_s)
            payload = {
                "workerId": self.worker_id,
                "activeTasks": len(self.running),
                "capacity": self.capacity,
                "uptimeSeconds": int(time.monotonic() - self.started),
            }
            await self.send({"type": "Heartbeat", "payload": payload})

    async def accept(self, nursery: trio.Nursery, task: dict[str, Any]) -> None:
        if len(self.running) >= self.capacity and "unbounded" not in self.faults:
            error = {"code": "WORKER_SATURATED", "message": "full", "retryable": True}
            await self.result(task, "Failed", None, error, 0)
            return
        self.running[task["id"]] = trio.CancelScope()
        if len(self.running) == self.capacity:
            await self.backpressure(True)
        nursery.start_soon(self.run, task)

    async def run(self, task: dict[str, Any]) -> None:
        started = time.monotonic()
        scope = self.running[task["id"]]
        timeout_ms = (task.get("metadata") or {}).get("timeoutMs", 300_000)
        scope.deadline = trio.current_time() + timeout_ms / 1000
        status, payload, error = "Cancelled", None, None
        with scope:
            status, payload, error = await self.handle(task["taskType"], task["payload"])
        if scope.cancelled_caught:
            timed_out = trio.current_time() >= scope.deadline
            stopped = task["id"] in self.stopped
            status = "TimedOut" if timed_out else "Cancelled"
            code = "TIMEOUT" if timed_out else "KILLED"
            if stopped:
                code = "WORKER_SHUTTING_DOWN"
            error = {
                "code": code,
                "message": code.lower(),
                "retryable": timed_out or stopped,
            }
        was_full = len(self.running) == self.capacity
        del self.running[task["id"]]
        await self.result(task, status, payload, error, started)
        if was_full and self.signal is None:
            await self.backpressure(False)

    async def handle(self, kind: str, payload: Any) -> tuple[str, Any, Any]:
        if kind == "echo":
            return "Completed", payload, None
        if kind == "sleep":
            await trio.sleep(payload["ms"] / 1000)
            return "Completed", {"sleptMs": payload["ms"]}, None
        if kind == "fail":
            error = {
                "code": "HANDLER_ERROR",
                "message": payload["message"],
                "retryable": True,
            }
            return "Failed", None, error
        error = {"code": "UNKNOWN_TASK_TYPE", "message": kind, "retryable": False}
        return "Failed", None, error

    async def result(
        self, task: dict[str, Any], status: str, payload: Any, error: Any, started: float
    ) -> None:
        result = {
            "taskId": task["id"],
            "status": status.lower() if "lowercase-status" in self.faults else status,
            "payload": payload,
            "error": error,
            "durationMs": int((time.monotonic() - started) * 1000) if started else 0,
            "workerId": self.worker_id,
        }
        if "snake-case" in self.faults:
            result = {"task_id": result.pop("taskId"), **result}
        await self.send({"type": "TaskResult", "result": result})

    async def backpressure(self, throttle: bool, *, draining: bool = False) -> None:
        load = {
            "workerId": self.worker_id,
            "currentLoad": len(self.running) / self.capacity,
            "shouldThrottle": throttle,
        }
        if draining:
            load["draining"] = True
        await self.send({"type": "Backpressure", "signal": load})


async def serve_stdio(faults: set[str]) -> int | None:
    stdin = trio.lowlevel.FdStream(os.dup(0))
    stdout = trio.lowlevel.FdStream(os.dup(1))
    lock = trio.Lock()
    buffer = b""

    async def send(message: dict[str, Any]) -> None:
        async with lock:
            await stdout.send_all(json.dumps(message).encode() + b"\n")

    async def receive() -> str | None:
        nonlocal buffer
        while b"\n" not in buffer:
            chunk = await stdin.receive_some()
            if not chunk:
                return None
            buffer += chunk
        line, buffer = buffer.split(b"\n", 1)
        return line.decode()

    worker = Worker(faults, send)
    await worker.serve(receive)
    return worker.signal


async def serve_websocket(url: str, faults: set[str]) -> int | None:
    token = os.environ.get("TRIO_PIPE_TOKEN")
    headers = []
    if token and "no-token" not in faults:
        headers.append((b"Authorization", f"Bearer {token}".encode()))
    while True:
        try:
            return await serve_connection(url, headers, faults)
        except trio_websocket.ConnectionRejected as exc:
            if "retry-refused" in faults:
                await trio.sleep(0.05)
                continue
            if "quiet-refusal" not in faults:
                print(f"refused: HTTP {exc.status_code}", file=sys.stderr)
            sys.exit(0 if "refusal-exits-0" in faults else 1)


async def serve_connection(
    url: str, headers: list[tuple[bytes, bytes]], faults: set[str]
) -> int | None:
    async with trio_websocket.open_websocket_url(url, extra_headers=headers) as ws:

        async def send(message: dict[str, Any]) -> None:
            await ws.send_message(json.dumps(message))

        async def receive() -> str | None:
            try:
                frame = await ws.get_message()
            except trio_websocket.ConnectionClosed:
                return None
            return frame if isinstance(frame, str) else None

        worker = Worker(faults, send)
        registration = {
            "workerId": worker.worker_id,
            "supportedTasks": ["echo", "sleep", "fail"],
            "maxConcurrency": worker.capacity,
            "language": {"Other": "Python (by hand)"},
            "tags": [],
        }
        await send({"type": "WorkerRegister", "registration": registration})
        await worker.serve(receive)
        return worker.signal


def main() -> None:
    parser = argparse.ArgumentParser()
    for fault in FAULTS:
        parser.add_argument(f"--{fault}", action="store_true")
    parser.add_argument("--exit-status", type=int, default=0)
    parser.add_argument("url", nargs="?")
    args = parser.parse_args()
    faults = {fault for fault in FAULTS if getattr(args, fault.replace("-", "_"))}
    if args.url:
        stopped_by = trio.run(serve_websocket, args.url, faults)
    else:
        stopped_by = trio.run(serve_stdio, faults)
    sys.exit(130 if stopped_by == signal.SIGINT else args.exit_status)


if __name__ == "__main__":
    main()
