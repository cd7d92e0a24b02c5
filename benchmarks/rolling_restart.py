"""A rolling restart under load: how many tasks fail, and how many are retried.

Three ``trio-pipe worker`` processes serve a dispatcher in this process, which is
given a steady load (1,000 tasks/s by default: a batch every 10 ms) of tasks that each
take a little time (``nap``: 20 ms), so that tasks are always in flight on every
worker. Once the load runs, each worker in turn is sent SIGTERM, as a deploy would,
waited for, and started again under the same id; the next one is restarted once the
pool is whole again. The load goes on a little after the last restart, then every
task is waited for.

A task *fails* if it resolves any other way than ``Completed``; it is *retried* if it
took more than one try (the dispatcher's own count is reported too). The target is 0
failed: a draining worker finishes what it holds, and a task that crosses its drain on
the wire is retried elsewhere.

    python -m benchmarks.rolling_restart [--rate 1000] [--workers 3] [--nap-ms 20]
"""

from __future__ import annotations

import argparse
import collections
import json
import signal
import subprocess
import sys
import time
from functools import partial
from pathlib import Path
from typing import Any

import trio

import trio_pipe
from trio_pipe import Task, TaskStatus

from ._measure import machine

_BATCH_INTERVAL = 0.01  # seconds between two batches of submissions
_START_TIMEOUT = 60.0  # seconds for a worker process to start and register


def _worker_argv(url: str, worker_id: str, max_concurrency: int) -> list[str]:
    return [
        sys.executable, "-m", "trio_pipe", "--log-level", "WARNING", "worker",
        "--url", url, "--handlers", "benchmarks.handlers:HANDLERS",
        "--worker-id", worker_id, "--max-concurrency", str(max_concurrency),
        "--heartbeat-interval", "1",
    ]  # fmt: skip


async def _start_worker(
    nursery: trio.Nursery, url: str, worker_id: str, max_concurrency: int
) -> trio.Process:
    process: trio.Process = await nursery.start(
        partial(
            trio.run_process,
            _worker_argv(url, worker_id, max_concurrency),
            check=False,
            stdin=subprocess.DEVNULL,
        )
    )
    return process


async def _load(
    dispatcher: trio_pipe.Dispatcher,
    rate: float,
    nap_ms: int,
    handles: list[trio_pipe.TaskHandle[Any]],
    stop: trio.Event,
) -> None:
    """Submit *rate* tasks a second, in a batch every 10 ms, until *stop* (each batch
    without a checkpoint: the queue never fills, and some worker is always there)."""
    per_batch = rate * _BATCH_INTERVAL
    owed = 0.0
    next_batch = trio.current_time()
    while not stop.is_set():
        owed += per_batch
        for _ in range(int(owed)):
            handles.append(dispatcher.submit_nowait(Task.new("nap", {"ms": nap_ms})))
        owed -= int(owed)
        next_batch += _BATCH_INTERVAL
        await trio.sleep_until(next_batch)


async def measure(
    *,
    rate: float = 1000.0,
    workers: int = 3,
    nap_ms: int = 20,
    warmup: float = 3.0,
    between: float = 2.0,
    cooldown: float = 3.0,
    max_concurrency: int = 64,
) -> dict[str, Any]:
    """Run the scenario (see the module docstring); *warmup* seconds of load before
    the first restart, *between* seconds after the pool is whole again before the
    next, *cooldown* after the last."""
    handles: list[trio_pipe.TaskHandle[Any]] = []
    restarts: list[dict[str, Any]] = []
    stop_load = trio.Event()
    async with trio_pipe.open_dispatcher() as d, trio.open_nursery() as nursery:
        ids = [f"restart-{i}" for i in range(workers)]
        processes = {
            worker_id: await _start_worker(nursery, d.url, worker_id, max_concurrency)
            for worker_id in ids
        }
        with trio.fail_after(_START_TIMEOUT):
            await d.wait_for_workers(workers)
        loaded_at = time.perf_counter()
        nursery.start_soon(_load, d, rate, nap_ms, handles, stop_load)
        await trio.sleep(warmup)
        for worker_id in ids:
            signalled = time.perf_counter()
            processes[worker_id].send_signal(signal.SIGTERM)
            with trio.fail_after(_START_TIMEOUT):
                status = await processes[worker_id].wait()
                exited = time.perf_counter()
                processes[worker_id] = await _start_worker(
                    nursery, d.url, worker_id, max_concurrency
                )
                await d.wait_for_workers(workers)
            restarts.append(
                {
                    "worker": worker_id,
                    "exit_status": status,
                    "drain_s": exited - signalled,
                    "back_in_pool_s": time.perf_counter() - signalled,
                }
            )
            await trio.sleep(between)
        await trio.sleep(cooldown - between)
        stop_load.set()
        loaded_s = time.perf_counter() - loaded_at
        with trio.fail_after(_START_TIMEOUT):
            results = [await handle.result() for handle in handles]
        stats = d.pool_stats()
        nursery.cancel_scope.cancel()
    failed = [r for r in results if r.status is not TaskStatus.COMPLETED]
    retried = [h for h in handles if len(h.attempts) > 1]
    why = collections.Counter(
        f"{a.status.value} {a.error.code if a.error else ''}".strip()
        for h in retried
        for a in h.attempts[:-1]
    )
    return {
        "scenario": (
            f"rolling restart: {workers} Python workers (processes), each sent SIGTERM "
            f"and restarted in turn, under {rate:,.0f} tasks/s of {nap_ms} ms tasks"
        ),
        "rate_asked": rate,
        "rate_achieved": len(handles) / loaded_s,
        "tasks": len(handles),
        "failed": len(failed),
        "failed_codes": sorted({r.error.code for r in failed if r.error is not None}),
        "retried_tasks": len(retried),
        "retries_by_dispatcher": stats.retried,
        "retried_because": dict(why),
        "most_tries": max((len(h.attempts) for h in handles), default=0),
        "restarts": restarts,
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.rolling_restart")
    parser.add_argument("--rate", type=float, default=1000.0, help="tasks per second")
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--nap-ms", type=int, default=20, help="each task's duration")
    args = parser.parse_args()
    row = trio.run(
        partial(measure, rate=args.rate, workers=args.workers, nap_ms=args.nap_ms)
    )
    print(f"{row['scenario']}")
    print(
        f"tasks {row['tasks']:,} ({row['rate_achieved']:,.0f}/s achieved), "
        f"failed {row['failed']}, retried {row['retried_tasks']} "
        f"(dispatcher's retries: {row['retries_by_dispatcher']}: "
        f"{row['retried_because'] or 'none'})"
    )
    for restart in row["restarts"]:
        print(
            f"  {restart['worker']}: exit {restart['exit_status']}, drained in "
            f"{restart['drain_s']:.2f} s, back in the pool after "
            f"{restart['back_in_pool_s']:.2f} s"
        )
    out = (
        Path(__file__).parent
        / "results"
        / (f"rolling-restart-{time.strftime('%Y%m%dT%H%M%S')}.json")
    )
    out.write_text(json.dumps({"machine": machine(), "runs": [row]}, indent=2))
    print(f"saved {out}")


if __name__ == "__main__":
    main()
