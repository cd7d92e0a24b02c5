"""CPU of a dispatcher holding many idle WebSocket workers that only heartbeat.

The dispatcher runs in this process and measures its own CPU time
(``time.process_time()``) over a window that starts once every worker is registered.
The workers are real WebSocket connections from one separate helper process: a single
``trio.run`` holding *count* :func:`trio_pipe.worker.run_worker` coroutines, each with
its own connection, its own worker id and the default heartbeat interval (one Python
process per worker would swamp a 2-core machine). The helper reports its own CPU time
over the same window, so the cost of both sides is shown.

The helper (``python -m benchmarks.idle_workers workers URL COUNT``) prints
``ready COUNT`` once all its workers are registered, answers each ``cpu`` line on its
stdin with ``cpu SECONDS`` (its ``time.process_time()``), and exits when its stdin
closes. Standalone: ``python -m benchmarks.idle_workers measure [--workers N]
[--window S]``.
"""

from __future__ import annotations

import argparse
import inspect
import resource
import subprocess
import sys
import time
from functools import partial
from typing import Any

import trio

import trio_pipe
from trio_pipe.worker import run_worker

from .handlers import HANDLERS

# File descriptors beyond one per connection: the interpreter, pipes, the listener.
_FD_MARGIN = 256
# Registrations in progress at once in the helper (a burst of 500 connects at once
# would only measure the listen backlog).
_CONNECTING_AT_ONCE = 32

DEFAULT_HEARTBEAT_INTERVAL: float = (
    inspect.signature(run_worker).parameters["heartbeat_interval"].default
)


def raise_fd_limit(needed: int) -> int:
    """Raise this process's soft RLIMIT_NOFILE to *needed* (at most the hard limit);
    return the soft limit now in force. Children started afterwards inherit it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return soft
    new = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
    if new < needed:
        raise RuntimeError(
            f"{needed} file descriptors needed, the hard limit is {hard}: "
            "raise it (ulimit -Hn) or use fewer workers"
        )
    return new


class _Lines:
    """Newline-separated lines from a byte stream."""

    def __init__(self, stream: trio.abc.ReceiveStream) -> None:
        self._stream = stream
        self._buffer = b""

    async def next(self) -> bytes | None:
        """The next line without its newline; ``None`` at the end of the stream."""
        while b"\n" not in self._buffer:
            chunk = await self._stream.receive_some(4096)
            if not chunk:
                return None
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return line


# -- the helper process -----------------------------------------------------------


async def _serve_workers(url: str, count: int) -> None:
    raise_fd_limit(count + _FD_MARGIN)
    commands = _Lines(trio.lowlevel.FdStream(0))
    stdout = trio.lowlevel.FdStream(1)
    async with trio.open_nursery() as nursery:
        limiter = trio.CapacityLimiter(_CONNECTING_AT_ONCE)

        async def start_one(n: int) -> None:
            async with limiter:
                # The default heartbeat interval: the point of the measurement.
                worker = partial(run_worker, url, HANDLERS, worker_id=f"idle-{n}")
                await nursery.start(worker)

        async with trio.open_nursery() as starting:
            for n in range(count):
                starting.start_soon(start_one, n)
        await stdout.send_all(f"ready {count}\n".encode())
        while (command := await commands.next()) is not None:
            if command == b"cpu":
                await stdout.send_all(f"cpu {time.process_time()!r}\n".encode())
        nursery.cancel_scope.cancel()


# -- the measuring side -------------------------------------------------------------


async def _ask_cpu(stdin: trio.abc.SendStream, replies: _Lines) -> tuple[float, float]:
    """The helper's CPU seconds, and this side's perf_counter when they arrived."""
    await stdin.send_all(b"cpu\n")
    reply = await replies.next()
    if reply is None or not reply.startswith(b"cpu "):
        raise RuntimeError(f"the workers' process answered {reply!r} to cpu")
    return float(reply.split()[1]), time.perf_counter()


async def measure(
    *,
    workers: int = 500,
    window: float = 20.0,
    settle: float = 1.0,
    start_timeout: float = 120.0,
) -> dict[str, Any]:
    """Connect *workers* idle workers from one helper process, wait *settle* seconds
    after the last registration, then measure CPU for *window* seconds.

    Make *window* a whole number of heartbeat intervals: the workers connect within
    a fraction of a second, so their heartbeats arrive in bursts one interval apart,
    and such a window holds the same number of bursts wherever it starts.
    ``workers_heard_in_window`` counts the workers the dispatcher heard from in it."""
    fd_limit = raise_fd_limit(workers + _FD_MARGIN)
    async with trio.open_nursery() as nursery:
        async with trio_pipe.open_dispatcher() as dispatcher:
            argv = [
                sys.executable, "-m", "benchmarks.idle_workers",
                "workers", dispatcher.url, str(workers),
            ]  # fmt: skip
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
            replies = _Lines(process.stdout)
            connecting = time.perf_counter()
            with trio.fail_after(start_timeout):
                ready = await replies.next()
                if ready != f"ready {workers}".encode():
                    raise RuntimeError(f"the workers' process said {ready!r}")
                await dispatcher.wait_for_workers(workers)
            connect_s = time.perf_counter() - connecting
            await trio.sleep(settle)

            helper_cpu_0, helper_wall_0 = await _ask_cpu(process.stdin, replies)
            window_start = trio.current_time()
            wall_0, cpu_0 = time.perf_counter(), time.process_time()
            await trio.sleep(window)
            cpu_1, wall_1 = time.process_time(), time.perf_counter()
            helper_cpu_1, helper_wall_1 = await _ask_cpu(process.stdin, replies)
            stats = dispatcher.pool_stats()
            heard = sum(w.last_seen >= window_start for w in dispatcher.workers())
        # The dispatcher has closed gracefully: every worker got Shutdown and returned.
        await process.stdin.aclose()
        with trio.move_on_after(15):
            await process.wait()
        nursery.cancel_scope.cancel()  # kills the helper if it is still there
    interval = DEFAULT_HEARTBEAT_INTERVAL
    return {
        "scenario": (
            f"idle workers: {workers} WebSocket workers heartbeating every {interval:g} s, "
            f"{window:g} s window"
        ),
        "workers": workers,
        "window_s": wall_1 - wall_0,
        "heartbeat_interval_s": interval,
        "heartbeats_per_s_expected": workers / interval,
        "dispatcher_cpu_percent": (cpu_1 - cpu_0) / (wall_1 - wall_0) * 100,
        "workers_process_cpu_percent": (
            (helper_cpu_1 - helper_cpu_0) / (helper_wall_1 - helper_wall_0) * 100
        ),
        "workers_connected": stats.active,
        "workers_lost": stats.dead,
        "workers_heard_in_window": heard,
        "connect_all_s": connect_s,
        "fd_soft_limit": fd_limit,
        "workers_kind": "one process, one trio.run of run_worker coroutines",
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.idle_workers")
    commands = parser.add_subparsers(dest="command", required=True)
    helper = commands.add_parser("workers", help="the helper process (started by measure)")
    helper.add_argument("url")
    helper.add_argument("count", type=int)
    standalone = commands.add_parser("measure", help="run the scenario and print it")
    standalone.add_argument("--workers", type=int, default=500)
    standalone.add_argument("--window", type=float, default=20.0)
    args = parser.parse_args()
    if args.command == "workers":
        trio.run(_serve_workers, args.url, args.count)
    else:
        row = trio.run(partial(measure, workers=args.workers, window=args.window))
        for key, value in row.items():
            print(f"{key}: {value}")


if __name__ == "__main__":
    main()
