"""No-op round trips from the Python dispatcher to one worker process of each SDK.

Each SDK's conformance worker (``sdks/<language>/conformance-worker``, built by
``sdks/<language>/build.sh``) connects over WebSocket and serves ``echo``; the
dispatcher sends 10,000 tasks with 256 in flight (three runs) and 2,000 one at a time,
as the main suite does for the Python worker, which is measured in the same run.

    python -m benchmarks.sdks [--full] [--sdk NAME ...]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from functools import partial
from pathlib import Path
from typing import Any

import trio

import trio_pipe

from ._measure import machine, summary

ROOT = Path(__file__).resolve().parent.parent
WORKERS: dict[str, list[str]] = {
    "python": [
        sys.executable, "-m", "trio_pipe", "worker",
        "--handlers", "trio_pipe.conformance.handlers:HANDLERS", "--url",
    ],
    "typescript": [str(ROOT / "sdks" / "typescript" / "conformance-worker")],
    "go": [str(ROOT / "sdks" / "go" / "conformance-worker")],
    "java": [str(ROOT / "sdks" / "java" / "conformance-worker")],
}  # fmt: skip


def worker_env(url: str, worker_id: str, capacity: int) -> dict[str, str]:
    """The environment of a worker process, as the conformance kit sets it, with
    heartbeats every 5 s."""
    return os.environ | {
        "TRIO_PIPE_URL": url,
        "TRIO_PIPE_WORKER_ID": worker_id,
        "TRIO_PIPE_MAX_CONCURRENCY": str(capacity),
        "TRIO_PIPE_HEARTBEAT_MS": "5000",
    }


async def measure_worker(
    argv: list[str],
    worker_id: str,
    *,
    tasks: int,
    latency_tasks: int,
    in_flight: int,
    task_type: str,
    shapes: bool = False,
) -> dict[str, Any]:
    """Figures for one worker process started with *argv* (the dispatcher's URL
    appended, and in ``TRIO_PIPE_URL``, as the conformance kit starts it), with
    capacity *in_flight*, serving no-op tasks of *task_type* (and *shapes*: see
    ``_measure.summary``)."""
    async with trio_pipe.open_dispatcher() as dispatcher, trio.open_nursery() as nursery:
        env = worker_env(dispatcher.url, worker_id, in_flight)
        await nursery.start(
            partial(
                trio.run_process,
                [*argv, dispatcher.url],
                check=False,
                stdin=subprocess.DEVNULL,
                env=env,
            )
        )
        with trio.fail_after(60):
            await dispatcher.wait_for_workers(1)
        figures = await summary(
            dispatcher,
            tasks=tasks,
            latency_tasks=latency_tasks,
            in_flight=in_flight,
            task_type=task_type,
            shapes=shapes,
        )
        nursery.cancel_scope.cancel()
    return figures


async def measure(
    language: str, *, tasks: int, latency_tasks: int, in_flight: int
) -> dict[str, Any]:
    """Figures for one worker process of *language* serving ``echo``."""
    figures = await measure_worker(
        WORKERS[language],
        f"bench-{language}",
        tasks=tasks,
        latency_tasks=latency_tasks,
        in_flight=in_flight,
        task_type="echo",
    )
    return {"sdk": language, **figures}


def table(rows: list[dict[str, Any]]) -> str:
    python = next((row for row in rows if row["sdk"] == "python"), None)
    lines = [
        "| worker (one process, WebSocket) | tasks/s | vs Python | p50 µs | p99 µs |",
        "|---|---|---|---|---|",
    ]
    for row in rows:
        ratio = f"{row['tasks_per_s'] / python['tasks_per_s']:.2f}" if python else "—"
        lines.append(
            f"| {row['sdk']} | {row['tasks_per_s']:,.0f} "
            f"({row['tasks_per_s_min']:,.0f}-{row['tasks_per_s_max']:,.0f}) "
            f"| {ratio} | {row['p50_us']:,.0f} | {row['p99_us']:,.0f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.sdks")
    parser.add_argument(
        "--full", action="store_true", help="10,000 tasks x 3, 2,000 one by one"
    )
    parser.add_argument(
        "--sdk", action="append", choices=list(WORKERS), help="default: all"
    )
    args = parser.parse_args()
    tasks, latency_tasks = (10_000, 2_000) if args.full else (1_000, 200)
    rows = []
    for language in args.sdk or WORKERS:
        figures = trio.run(
            partial(
                measure, language, tasks=tasks, latency_tasks=latency_tasks, in_flight=256
            )
        )
        rows.append(figures)
    print(table(rows))
    out = ROOT / "benchmarks" / "results" / f"sdks-{time.strftime('%Y%m%dT%H%M%S')}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(
        json.dumps({"machine": machine(), "full": args.full, "runs": rows}, indent=2)
    )
    print(f"\nsaved {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
