"""Lifecycle events, pool statistics and batches, with in-memory workers under
MockClock (autojump_clock)."""

from __future__ import annotations

import collections
import random
from typing import Any

import pytest
import trio

import trio_pipe
from trio_pipe import (
    EventsDropped,
    Priority,
    Task,
    TaskEvent,
    TaskEventKind,
    TaskStatus,
    WorkerEvent,
    WorkerEventKind,
)
from trio_pipe.dispatch import LEGAL_TASK_TRANSITIONS
from trio_pipe.protocol import (
    Backpressure,
    BackpressureSignal,
    Kill,
    TaskError,
    TaskResult,
    TaskResultMessage,
)
from trio_pipe.testing import MemoryWorker, connect_memory_worker, open_memory_worker


def _result(worker: MemoryWorker, task_id: Any, status: TaskStatus, **fields: Any) -> Any:
    return TaskResultMessage(
        TaskResult(task_id, status, worker_id=worker.worker_id, **fields)
    )


async def _chaos_worker(worker: MemoryWorker, rng: random.Random) -> None:
    """Answer tasks at random: complete, fail retryably or not, report Running first,
    or never answer (so the task times out)."""
    try:
        while True:
            dispatch = await worker.receive_task()
            task_id = dispatch.task.id
            roll = rng.random()
            if roll < 0.1:
                continue  # never answers
            if roll < 0.3:
                await worker.send(_result(worker, task_id, TaskStatus.RUNNING))
            await trio.sleep(rng.uniform(0, 0.05))
            if roll < 0.6:
                await worker.complete(dispatch, "ok")
            else:
                error = TaskError("HANDLER_ERROR", "boom", retryable=roll < 0.85)
                await worker.send(_result(worker, task_id, TaskStatus.FAILED, error=error))
    except (trio.EndOfChannel, trio.BrokenResourceError, trio.ClosedResourceError):
        return


async def test_task_events_follow_the_lifecycle_for_every_task(
    autojump_clock: object,
) -> None:
    rng = random.Random(7)
    sequences: dict[Any, list[TaskEventKind]] = collections.defaultdict(list)
    async with trio_pipe.open_dispatcher(port=None, retry_backoff=0.01) as d:
        async with d.events(buffer=100_000) as events, trio.open_nursery() as n:
            workers = [
                await connect_memory_worker(d, f"w{i}", ["t"], max_concurrency=4)
                for i in range(3)
            ]
            for worker in workers:
                n.start_soon(_chaos_worker, worker, rng)
            handles = [
                await d.submit(Task.new("t", i, timeout_ms=2_000, max_retries=2))
                for i in range(200)
            ]
            await trio.sleep(0.5)
            await workers[0].aclose()  # one worker vanishes with tasks in flight
            cancelled = handles[-1]
            await cancelled.cancel()
            for handle in handles:
                await handle.result()
            n.cancel_scope.cancel()
            events.close()  # iteration ends once the buffered events are consumed
            async for event in events:
                assert not isinstance(event, EventsDropped)
                if isinstance(event, TaskEvent):
                    sequences[event.task_id].append(event.kind)
    kinds = collections.Counter(k for seq in sequences.values() for k in seq)
    assert kinds[TaskEventKind.RETRYING] and kinds[TaskEventKind.RUNNING]
    assert kinds[TaskEventKind.TIMED_OUT] and kinds[TaskEventKind.CANCELLED]
    for handle in handles:
        seq = sequences[handle.id]
        previous = None
        for kind in seq:
            assert kind in LEGAL_TASK_TRANSITIONS[previous], (previous, kind, seq)
            previous = kind
        assert seq[-1] is TaskEventKind.for_status(handle.status), seq


async def test_worker_events_tell_what_happened_to_workers(autojump_clock: object) -> None:
    async with trio_pipe.open_dispatcher(port=None) as d:
        async with d.events() as events:
            async with open_memory_worker(d, "a", ["t"], max_concurrency=2) as a:
                await a.send(
                    Backpressure(BackpressureSignal("a", 1.0, should_throttle=True))
                )
                await a.send(
                    Backpressure(BackpressureSignal("a", 0.0, should_throttle=False))
                )
                await trio.sleep(1)
                d.drain_worker("a")
                d.remove_worker("a")
                await trio.sleep(1)
            async with open_memory_worker(d, "b", ["t"]):
                pass
            await trio.sleep(1)
            seen = []
            while len(seen) < 7:
                event = await events.__anext__()
                assert isinstance(event, WorkerEvent)
                seen.append((event.worker_id, event.kind))
    assert seen == [
        ("a", WorkerEventKind.REGISTERED),
        ("a", WorkerEventKind.THROTTLED),
        ("a", WorkerEventKind.UNTHROTTLED),
        ("a", WorkerEventKind.DRAINING),
        ("a", WorkerEventKind.REMOVED),
        ("b", WorkerEventKind.REGISTERED),
        ("b", WorkerEventKind.DEAD),
    ]


async def test_a_slow_listener_loses_events_and_is_told_how_many(
    autojump_clock: object,
) -> None:
    async with trio_pipe.open_dispatcher(port=None) as d:
        async with d.events(buffer=2) as events:
            for i in range(5):
                await d.submit(Task.new("t", i))  # one Pending event each
            first = await events.__anext__()
            second = await events.__anext__()
            assert isinstance(first, TaskEvent) and isinstance(second, TaskEvent)
            await d.submit(Task.new("t", 5))
            assert await events.__anext__() == EventsDropped(3)
            sixth = await events.__anext__()
            assert isinstance(sixth, TaskEvent) and sixth.kind is TaskEventKind.PENDING


async def test_event_iteration_ends_when_the_dispatcher_closes(
    autojump_clock: object,
) -> None:
    async with trio_pipe.open_dispatcher(port=None) as d:
        stream = d.events()
    assert [event async for event in stream] == []


async def test_pool_stats_count_queue_depth_and_outcomes(autojump_clock: object) -> None:
    async with trio_pipe.open_dispatcher(port=None, retry_backoff=0.01) as d:
        async with open_memory_worker(d, "w", ["t"]) as w:
            for priority in (Priority.LOW, Priority.HIGH, Priority.HIGH, Priority.NORMAL):
                await d.submit(Task.new("t", 0, priority=priority, max_retries=1))
            stats = d.pool_stats()
            assert stats.queued == 3 and stats.in_flight == 1
            assert stats.queued_by_priority == {  # the Low one went straight out
                Priority.LOW: 0,
                Priority.NORMAL: 1,
                Priority.HIGH: 2,
                Priority.CRITICAL: 0,
            }
            first = await w.receive_task()
            error = TaskError("HANDLER_ERROR", "boom", retryable=True)
            await w.send(_result(w, first.task.id, TaskStatus.FAILED, error=error))
            for _ in range(4):
                dispatch = await w.receive_task()
                if dispatch.task.id == first.task.id:  # the retry fails for good
                    await w.send(_result(w, first.task.id, TaskStatus.FAILED, error=error))
                else:
                    await w.complete(dispatch)
            await trio.sleep(1)
            stats = d.pool_stats()
            assert (stats.completed, stats.failed, stats.retried) == (3, 1, 1)
            assert (stats.queued, stats.in_flight) == (0, 0)


async def _serve_concurrently(
    worker: MemoryWorker, rng: random.Random, load: collections.Counter[str]
) -> None:
    """Answer every task after a random delay; *load* tracks tasks held ("now") and
    the most ever held at once ("most")."""
    async with trio.open_nursery() as n:
        try:
            while True:
                dispatch = await worker.receive_task()
                load["now"] += 1
                load["most"] = max(load["most"], load["now"])

                async def answer(dispatch: Any = dispatch) -> None:
                    await trio.sleep(rng.uniform(0, 0.01))
                    load["now"] -= 1  # done with it: before the answer can free a slot
                    payload = dispatch.task.payload
                    if payload % 10 == 3:
                        error = TaskError("BAD", f"no {payload}", retryable=False)
                        await worker.send(
                            _result(
                                worker, dispatch.task.id, TaskStatus.FAILED, error=error
                            )
                        )
                    else:
                        await worker.complete(dispatch, payload * 2)

                n.start_soon(answer)
        except (trio.EndOfChannel, trio.BrokenResourceError, trio.ClosedResourceError):
            n.cancel_scope.cancel()


async def test_map_never_exceeds_its_concurrency_and_reports_failures_as_values(
    autojump_clock: object,
) -> None:
    rng = random.Random(3)
    async with trio_pipe.open_dispatcher(port=None) as d, trio.open_nursery() as n:
        worker = await connect_memory_worker(d, "w", ["double"], max_concurrency=100)
        load: collections.Counter[str] = collections.Counter()
        n.start_soon(_serve_concurrently, worker, rng, load)
        async with d.map("double", range(1000), concurrency=7) as batch:
            results = [item async for item in batch]
        assert load["most"] == 7
        assert sorted(r.index for r in results) == list(range(1000))
        assert [r.index for r in results] != list(range(1000))  # completion order
        failures = [r for r in results if not r.ok]
        assert {r.payload % 10 for r in failures} == {3}
        assert len(failures) == 100
        assert all(r.value == r.payload * 2 for r in results if r.ok)
        with pytest.raises(trio_pipe.TaskFailed, match="BAD: no 3"):
            _ = next(r for r in failures if r.payload == 3).value
        n.cancel_scope.cancel()


async def test_leaving_a_map_early_cancels_its_tasks(autojump_clock: object) -> None:
    async with trio_pipe.open_dispatcher(port=None) as d:
        async with open_memory_worker(d, "w", ["t"], max_concurrency=10) as w:
            dispatches = []

            async def answer_the_first_of_three() -> None:
                dispatches.extend([await w.receive_task() for _ in range(3)])
                await w.complete(dispatches[0], "first")

            async with trio.open_nursery() as n:
                n.start_soon(answer_the_first_of_three)
                async with d.map("t", range(100), concurrency=3) as batch:
                    async for item in batch:
                        assert item.value == "first"
                        break
            kills = [await w.receive() for _ in range(2)]
            assert kills == [
                Kill(x.task.id, "the batch was abandoned") for x in dispatches[1:]
            ]
            stats = d.pool_stats()
            assert stats.in_flight == 0 and stats.queued == 0
