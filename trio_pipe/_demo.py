"""``trio-pipe demo``: a dispatcher, three worker processes, a few hundred tasks, and
one worker killed on purpose halfway through."""

from __future__ import annotations

import collections
import os
import random
import signal
import statistics
import subprocess
import sys
from functools import partial

import trio

from . import Priority, Task, TaskHandle, TaskResult, TaskStatus, open_dispatcher
from .worker import Handlers

HANDLERS = Handlers()


@HANDLERS.handler("word-count")
async def word_count(payload: dict[str, str]) -> dict[str, int]:
    await trio.sleep(random.uniform(0.002, 0.02))  # pretend to work
    return {"words": len(payload["text"].split())}


@HANDLERS.handler("checksum")
async def checksum(payload: dict[str, str]) -> dict[str, int]:
    await trio.sleep(random.uniform(0.002, 0.02))
    return {"sum": sum(payload["text"].encode()) % 65_521}


@HANDLERS.handler("flaky")
async def flaky(payload: dict[str, int]) -> str:
    await trio.sleep(0.005)
    if random.random() < 0.3:
        raise RuntimeError("a transient failure (retried by the dispatcher)")
    return "ok"


WORDS = ["trio", "nursery", "cancel", "scope", "worker", "task", "deadline", "retry"]


def _make_task(i: int) -> Task:
    priority = random.choice(
        [Priority.LOW, Priority.NORMAL, Priority.NORMAL, Priority.HIGH]
    )
    if i % 50 == 0:
        priority = Priority.CRITICAL
    kind = ["word-count", "checksum", "flaky"][i % 3]
    text = " ".join(random.choices(WORDS, k=random.randint(3, 30)))
    payload: object = {"n": i} if kind == "flaky" else {"text": text}
    return Task.new(kind, payload, priority=priority, timeout_ms=10_000)


async def main(tasks: int = 300, workers: int = 3) -> None:
    print(f"trio_pipe demo: {workers} worker processes, {tasks} tasks\n")
    processes = []
    # The worker processes outlive the dispatcher block: they exit when its graceful
    # shutdown tells them to, and the nursery waits for that.
    async with (
        trio.open_nursery() as nursery,
        open_dispatcher(heartbeat_timeout=3.0, retry_backoff=0.02) as dispatcher,
    ):
        for n in range(workers):
            argv = [
                sys.executable, "-m", "trio_pipe", "--log-level", "ERROR", "worker",
                "--url", dispatcher.url,
                "--handlers", "trio_pipe._demo:HANDLERS",
                "--worker-id", f"demo-{n}",
                "--max-concurrency", "8",
                "--heartbeat-interval", "1",
            ]  # fmt: skip
            process = await nursery.start(
                partial(trio.run_process, argv, check=False, stdin=subprocess.DEVNULL)
            )
            processes.append(process)
        with trio.fail_after(30):
            await dispatcher.wait_for_workers(workers)
        print(f"{workers} workers registered at {dispatcher.url}")

        started = trio.current_time()
        handles: list[TaskHandle[object]] = []
        for i in range(tasks):
            handles.append(await dispatcher.submit(_make_task(i)))
        print(f"submitted {tasks} tasks (mixed priorities)")

        victim = processes[0]
        results = []
        for handle in handles:
            results.append(await handle.result())
            if len(results) == tasks // 10 and victim.returncode is None:
                print(f"killing worker demo-0 (pid {victim.pid}) with SIGKILL...")
                victim.send_signal(signal.SIGKILL)
        elapsed = trio.current_time() - started
        _report(handles, results, elapsed)
        stats = dispatcher.pool_stats()
        print(
            f"\npool: {stats.active} active workers, {stats.dead} dead; "
            f"{stats.completed} tasks completed, {stats.failed} failed, "
            f"{stats.retried} retries"
        )
        print("\nleaving the dispatcher block: graceful shutdown of the other workers")
    for process in processes:
        assert process.returncode is not None
    print("all worker processes have exited. Done.")


def _report(
    handles: list[TaskHandle[object]], results: list[TaskResult], elapsed: float
) -> None:
    statuses = collections.Counter(h.status.value for h in handles)
    by_worker = collections.Counter(h.worker_id for h in handles)
    retried = [h for h in handles if len(h.attempts) > 1]
    reasons = collections.Counter(
        a.error.code for h in handles for a in h.attempts if a.error is not None
    )
    durations = sorted(r.duration_ms for r in results if r.status is TaskStatus.COMPLETED)
    print(f"\nall {len(handles)} tasks resolved in {elapsed:.2f} s")
    print("  by status:  " + ", ".join(f"{k} {v}" for k, v in sorted(statuses.items())))
    print("  by worker:  " + ", ".join(f"{k} {v}" for k, v in sorted(by_worker.items())))
    print(f"  retried:    {len(retried)} tasks; failed tries by reason: {dict(reasons)}")
    if durations:
        p50 = statistics.median(durations)
        p99 = durations[min(len(durations) - 1, int(len(durations) * 0.99))]
        print(f"  handler time (worker-reported): p50 {p50:.0f} ms, p99 {p99} ms")


def run(tasks: int = 300, workers: int = 3) -> None:
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    trio.run(main, tasks, workers)
