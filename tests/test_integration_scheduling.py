"""Scheduling behaviour with real worker subprocesses over real WebSockets.

Timing rules are tested under MockClock in test_dispatcher.py and test_scheduling.py;
here the point is that a real worker process sees and honours them.
"""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
import trio
from helpers import start_python_worker

import trio_pipe
from trio_pipe import Priority, Task, TaskStatus

pytestmark = pytest.mark.slow


async def test_a_critical_task_submitted_last_runs_before_earlier_normal_ones() -> None:
    async with trio_pipe.open_dispatcher() as d, trio.open_nursery() as n:
        await start_python_worker(n, d.url, "solo", max_concurrency=1)
        with trio.fail_after(30):
            await d.wait_for_workers(1)
            normals = [await d.submit(Task.new("order", i)) for i in range(4)]
            critical = await d.submit(Task.new("order", "c", priority=Priority.CRITICAL))
            positions = [await h.value() for h in normals]
            assert await critical.value() == 1  # right after the one already running
            assert positions == [0, 2, 3, 4]
        n.cancel_scope.cancel()


async def test_a_task_on_a_killed_worker_completes_elsewhere_with_retry_count_1() -> None:
    async with trio_pipe.open_dispatcher(retry_backoff=0.01) as d, trio.open_nursery() as n:
        victim = await start_python_worker(n, d.url, "victim")
        with trio.fail_after(30):
            await d.wait_for_workers(1)
            handle = await d.submit(Task.new("metadata", {"first_try_seconds": 30}))
            await start_python_worker(n, d.url, "other")
            await d.wait_for_workers(2)
            assert handle.worker_id == "victim"
            victim.send_signal(signal.SIGKILL)
            seen = await handle.value()
        assert seen["retry_count"] == 1
        assert handle.worker_id == "other"
        assert [a.worker_id for a in handle.attempts] == ["victim", "other"]
        n.cancel_scope.cancel()


async def test_cancelling_the_scope_around_run_cancels_the_handler_on_the_worker(
    tmp_path: Path,
) -> None:
    marker = tmp_path / "cancelled"
    async with trio_pipe.open_dispatcher() as d, trio.open_nursery() as n:
        await start_python_worker(n, d.url, "w")
        with trio.fail_after(30):
            await d.wait_for_workers(1)
            with trio.CancelScope() as scope:
                running = d.events()

                async def cancel_once_running() -> None:
                    async for event in running:
                        if (
                            getattr(event, "kind", None)
                            is trio_pipe.TaskEventKind.DISPATCHED
                        ):
                            scope.cancel()
                            return

                n.start_soon(cancel_once_running)
                await d.run(Task.new("hang", {"marker": str(marker)}))
            assert scope.cancelled_caught
            running.close()
            # A fact in another process: poll it, bounded by the fail_after above.
            while not await trio.Path(marker).exists():  # noqa: ASYNC110
                await trio.sleep(0.05)
            # The worker answered Kill with Cancelled, which freed the slot.
            while d.pool_stats().used_capacity:  # noqa: ASYNC110
                await trio.sleep(0.05)
        assert d.pool_stats().failed == 1  # resolved Cancelled
        n.cancel_scope.cancel()


async def test_the_callers_deadline_reaches_the_worker_as_a_shorter_timeout() -> None:
    async with trio_pipe.open_dispatcher() as d, trio.open_nursery() as n:
        await start_python_worker(n, d.url, "w")
        with trio.fail_after(30):
            await d.wait_for_workers(1)
        with trio.move_on_after(20):
            seen = await d.run(Task.new("metadata", {}, timeout_ms=300_000))
        assert 15_000 < seen["timeout_ms"] <= 20_000
        n.cancel_scope.cancel()


async def test_a_throttled_worker_gets_nothing_until_it_clears() -> None:
    async with trio_pipe.open_dispatcher() as d, trio.open_nursery() as n:
        await start_python_worker(n, d.url, "w", max_concurrency=2)
        with trio.fail_after(30):
            await d.wait_for_workers(1)
            # Saturating the worker makes the SDK send Backpressure(shouldThrottle).
            async with d.events() as events:
                busy = [
                    await d.submit(Task.new("sleep", {"seconds": 0.5})) for _ in range(2)
                ]
                waiting = await d.submit(Task.new("echo", "after"))
                async for event in events:
                    if getattr(event, "kind", None) is trio_pipe.WorkerEventKind.THROTTLED:
                        break
                assert waiting.status is TaskStatus.PENDING
                assert await waiting.value() == "after"
                assert all(h.done for h in busy)
        n.cancel_scope.cancel()
