"""Workers in production, as a deploy sees them: real ``trio-pipe worker`` processes
and real signals against the dispatcher. Real time: every wait is bounded with
``trio.fail_after``; the facts of other processes are read from the dispatcher's
events, never slept on."""

from __future__ import annotations

import collections
import signal
import subprocess
import sys
from functools import partial

import pytest
import trio
from helpers import ROOT, start_python_worker

import trio_pipe
from trio_pipe import (
    Dispatcher,
    ErrorCode,
    EventStream,
    Task,
    TaskEvent,
    TaskEventKind,
    TaskStatus,
    WorkerEvent,
    WorkerEventKind,
)

pytestmark = pytest.mark.slow

WAIT = 30  # seconds


async def _until(
    events: EventStream, wanted: collections.abc.Callable[[object], bool]
) -> object:
    async for event in events:
        if wanted(event):
            return event
    raise AssertionError("the events ended first")


def _task_event(
    kind: TaskEventKind, task_id: object
) -> collections.abc.Callable[[object], bool]:
    return lambda e: isinstance(e, TaskEvent) and e.kind is kind and e.task_id == task_id


def _worker_event(
    kind: WorkerEventKind, worker_id: str
) -> collections.abc.Callable[[object], bool]:
    return lambda e: (
        isinstance(e, WorkerEvent) and e.kind is kind and e.worker_id == worker_id
    )


async def _started(
    d: Dispatcher, events: EventStream, tasks: list[Task]
) -> list[trio_pipe.TaskHandle[object]]:
    """Submit *tasks* and wait until each has said it started (a progress report)."""
    handles = [await d.submit(task) for task in tasks]
    waiting = {handle.id for handle in handles}
    async for event in events:
        if isinstance(event, TaskEvent) and event.kind is TaskEventKind.PROGRESS:
            waiting.discard(event.task_id)
            if not waiting:
                return handles
    raise AssertionError("the events ended first")


async def test_sigterm_lets_the_tasks_in_flight_finish_and_exits_0() -> None:
    async with (
        trio_pipe.open_dispatcher() as d,
        d.events() as events,
        trio.open_nursery() as n,
    ):
        worker = await start_python_worker(n, d.url, "leaving", max_concurrency=4)
        with trio.fail_after(WAIT):
            await d.wait_for_workers(1)
            naps = [Task.new("nap", {"seconds": 1.0}) for _ in range(4)]
            handles = await _started(d, events, naps)
            worker.send_signal(signal.SIGTERM)
            await _until(events, _worker_event(WorkerEventKind.DRAINING, "leaving"))
            results = [await h.result() for h in handles]
            await worker.wait()
        assert [r.status for r in results] == [TaskStatus.COMPLETED] * 4
        assert all(len(h.attempts) == 1 for h in handles)
        assert worker.returncode == 0
        stats = d.pool_stats()
        assert (stats.failed, stats.retried) == (0, 0)


async def test_a_task_outliving_the_drain_timeout_is_retried_elsewhere_at_once() -> None:
    async with (
        trio_pipe.open_dispatcher(retry_backoff=30, retry_backoff_max=30) as d,
        d.events() as events,
        trio.open_nursery() as n,
    ):
        leaving = await start_python_worker(
            n, d.url, "leaving", extra=["--drain-timeout", "0.5"]
        )
        with trio.fail_after(WAIT):
            await d.wait_for_workers(1)
            (handle,) = await _started(d, events, [Task.new("stubborn")])
            await start_python_worker(n, d.url, "staying")
            await d.wait_for_workers(2)
            leaving.send_signal(signal.SIGTERM)
            retrying = await _until(events, _task_event(TaskEventKind.RETRYING, handle.id))
            done = await _until(events, _task_event(TaskEventKind.COMPLETED, handle.id))
            await leaving.wait()
        assert leaving.returncode == 0
        first = handle.attempts[0]
        assert (first.worker_id, first.status) == ("leaving", TaskStatus.CANCELLED)
        assert (
            first.error is not None and first.error.code == ErrorCode.WORKER_SHUTTING_DOWN
        )
        result = await handle.result()
        assert (result.worker_id, result.payload) == ("staying", {"retry_count": 1})
        assert done.time - retrying.time < 5  # at once: the backoff would be 15-30 s
        n.cancel_scope.cancel()


async def test_a_second_sigterm_stops_the_worker_at_once() -> None:
    async with (
        trio_pipe.open_dispatcher() as d,
        d.events() as events,
        trio.open_nursery() as n,
    ):
        worker = await start_python_worker(n, d.url, "w", extra=["--drain-timeout", "600"])
        with trio.fail_after(WAIT):
            await d.wait_for_workers(1)
            (handle,) = await _started(d, events, [Task.new("stubborn")])
            worker.send_signal(signal.SIGTERM)
            await _until(events, _worker_event(WorkerEventKind.DRAINING, "w"))
            worker.send_signal(signal.SIGTERM)
            await worker.wait()  # long before the drain timeout
            await _until(events, _task_event(TaskEventKind.RETRYING, handle.id))
        assert worker.returncode == 0
        assert handle.attempts[0].status is TaskStatus.CANCELLED


async def test_sigint_drains_and_exits_130_without_a_traceback() -> None:
    argv = [
        sys.executable, "-m", "trio_pipe", "worker", "--handlers",
        "tests.worker_handlers:HANDLERS", "--worker-id", "w",
    ]  # fmt: skip
    async with (
        trio_pipe.open_dispatcher() as d,
        d.events() as events,
        trio.open_nursery() as n,
    ):
        worker: trio.Process = await n.start(
            partial(
                trio.run_process, [*argv, "--url", d.url], check=False,
                stdin=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=ROOT,
            )
        )  # fmt: skip
        assert worker.stderr is not None
        log = bytearray()

        async def read_log() -> None:
            assert worker.stderr is not None
            async for chunk in worker.stderr:
                log.extend(chunk)

        n.start_soon(read_log)
        with trio.fail_after(WAIT):
            await d.wait_for_workers(1)
            (handle,) = await _started(d, events, [Task.new("nap", {"seconds": 0.5})])
            worker.send_signal(signal.SIGINT)
            assert (await handle.result()).status is TaskStatus.COMPLETED
            await worker.wait()
    assert worker.returncode == 130
    text = log.decode()
    assert "Traceback" not in text and "KeyboardInterrupt" not in text
    assert "SIGINT: draining" in text


@pytest.mark.parametrize("task_type", ["spin", "spin-process"])
async def test_a_cpu_bound_plain_handler_neither_silences_nor_blocks_the_worker(
    task_type: str,
) -> None:
    async with (
        trio_pipe.open_dispatcher(heartbeat_timeout=1.0) as d,
        d.events() as events,
        trio.open_nursery() as n,
    ):
        await start_python_worker(n, d.url, "busy", heartbeat_interval=0.2)
        with trio.fail_after(WAIT):
            await d.wait_for_workers(1)
            if task_type == "spin-process":  # the pool's process is up: no start-up
                await d.run(Task.new(task_type, {"seconds": 0}))
            spinning = await d.submit(Task.new(task_type, {"seconds": 2.0}))
            await trio.sleep(0.3)  # well into the spin (a lower bound only)
            for i in range(5):  # the event loop answers meanwhile
                assert await d.run(Task.new("echo", i)) == i
            assert not spinning.done
            assert (await spinning.result()).status is TaskStatus.COMPLETED
            events.close()
            dead = [
                e
                async for e in events
                if isinstance(e, WorkerEvent) and e.kind is WorkerEventKind.DEAD
            ]
        assert dead == []
        assert [w.worker_id for w in d.workers()] == ["busy"]
        n.cancel_scope.cancel()


@pytest.mark.parametrize("task_type", ["report", "report-thread", "report-process"])
async def test_progress_events_arrive_in_order(task_type: str) -> None:
    async with (
        trio_pipe.open_dispatcher() as d,
        d.events() as events,
        trio.open_nursery() as n,
    ):
        await start_python_worker(n, d.url, "w")
        with trio.fail_after(WAIT):
            await d.wait_for_workers(1)
            handle = await d.submit(Task.new(task_type, {"steps": 8, "pause": 0.02}))
            await handle.result()
            events.close()
            seen = [
                e.progress
                async for e in events
                if isinstance(e, TaskEvent) and e.kind is TaskEventKind.PROGRESS
            ]
        assert [(p.fraction, p.message) for p in seen if p is not None] == [
            (step / 8, f"step {step} of 8") for step in range(1, 9)
        ]
        assert handle.progress == seen[-1]
        n.cancel_scope.cancel()


async def test_a_limit_per_task_type_holds_in_the_worker() -> None:
    async with trio_pipe.open_dispatcher() as d, trio.open_nursery() as n:
        await start_python_worker(
            n, d.url, "w", max_concurrency=6,
            extra=["--max-concurrency-by-type", "render=2"],
        )  # fmt: skip
        with trio.fail_after(WAIT):
            await d.wait_for_workers(1)
            (info,) = d.workers()
            handles = [
                await d.submit(Task.new("render", {"seconds": 0.5})) for _ in range(10)
            ]
            handles += [
                await d.submit(Task.new("fetch", {"seconds": 0.5})) for _ in range(8)
            ]
            for handle in handles:
                assert (await handle.result()).status is TaskStatus.COMPLETED
            peaks = await d.run(Task.new("peaks"))
        assert info.max_concurrency == 6
        assert peaks["render"] == 2
        assert peaks["*"] == 6  # the other slots ran fetch tasks meanwhile
        n.cancel_scope.cancel()
