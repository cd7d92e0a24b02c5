"""No-op task round trips to one spawned Python stdio worker process."""

from __future__ import annotations

import sys
from typing import Any

import trio_pipe

from ._measure import summary


async def measure(
    *,
    concurrency: int,
    tasks: int = 10_000,
    latency_tasks: int = 2_000,
    in_flight: int = 256,
) -> dict[str, Any]:
    argv = [
        sys.executable, "-m", "trio_pipe", "--log-level", "WARNING", "worker", "--stdio",
        "--handlers", "benchmarks.handlers:HANDLERS", "--max-concurrency", str(concurrency),
    ]  # fmt: skip
    async with trio_pipe.open_dispatcher(port=None) as dispatcher:
        await dispatcher.spawn_stdio(argv, ["noop"], max_concurrency=concurrency)
        figures = await summary(
            dispatcher, tasks=tasks, latency_tasks=latency_tasks, in_flight=in_flight
        )
    return {
        "scenario": f"stdio, one Python worker process, concurrency {concurrency}",
        **figures,
    }
