"""The dispatcher's side of the protocol's extensions (docs/protocol.md, "Extensions"):
a draining worker, the retry of a task it cut short, progress reports, deadline
extensions, limits per task type, and ``Shutdown{graceful:false}`` when the
dispatcher is left abruptly. In-memory workers under Trio's MockClock."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import pytest
import trio
import trio.testing

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
    WorkerState,
)
from trio_pipe.protocol import (
    Backpressure,
    BackpressureSignal,
    Heartbeat,
    HeartbeatPayload,
    Kill,
    Shutdown,
    TaskDispatch,
    TaskError,
    TaskProgress,
    TaskResult,
    TaskResultMessage,
    decode,
)
from trio_pipe.testing import MemoryWorker, connect_memory_worker


def draining(worker: MemoryWorker) -> Backpressure:
    signal = BackpressureSignal(worker.worker_id, 0.5, should_throttle=True, draining=True)
    return Backpressure(signal)


def report(
    worker: MemoryWorker,
    dispatch: TaskDispatch,
    *,
    progress: TaskProgress | None = None,
    extend_ms: int | None = None,
) -> TaskResultMessage:
    return TaskResultMessage(
        TaskResult(
            dispatch.task.id,
            TaskStatus.RUNNING,
            worker_id=worker.worker_id,
            progress=progress,
            extend_ms=extend_ms,
        )
    )


def cancelled(
    worker: MemoryWorker, dispatch: TaskDispatch, *, retryable: bool
) -> TaskResultMessage:
    error = TaskError(ErrorCode.WORKER_SHUTTING_DOWN, "drain timed out", retryable)
    return TaskResultMessage(
        TaskResult(dispatch.task.id, TaskStatus.CANCELLED, error=error)
    )


async def settle() -> None:
    """Let every task run until all wait (the dispatcher acts on what was sent)."""
    await trio.testing.wait_all_tasks_blocked()


@asynccontextmanager
async def dispatcher(**settings: object) -> AsyncIterator[Dispatcher]:
    async with trio_pipe.open_dispatcher(port=None, **settings) as d:  # type: ignore[arg-type]
        yield d


# -- draining --------------------------------------------------------------------------


async def test_a_draining_worker_gets_no_new_task_and_finishes_its_own(
    autojump_clock: object,
) -> None:
    async with dispatcher() as d, d.events() as events:
        leaving = await connect_memory_worker(d, "leaving", ["t"], max_concurrency=4)
        running = await d.submit(Task.new("t"))
        dispatch = await leaving.receive_task()
        await leaving.send(draining(leaving))
        staying = await connect_memory_worker(d, "staying", ["t"], max_concurrency=4)
        later = [await d.submit(Task.new("t")) for _ in range(3)]
        await settle()
        assert {h.worker_id for h in later} == {"staying"}
        assert d.workers()[0].state is WorkerState.DRAINING
        # Neither an idle heartbeat nor a lifted throttle ends a drain.
        await leaving.send(Heartbeat(HeartbeatPayload("leaving", 0, 4)))
        await leaving.send(Backpressure(BackpressureSignal("leaving", 0.0, False)))
        await d.submit(Task.new("t"))
        await settle()
        assert [w.active_tasks for w in d.workers()] == [1, 4]
        await leaving.complete(dispatch, "done")
        assert await running.value() == "done"
        kinds = [e.kind for e in _drain(events) if isinstance(e, WorkerEvent)]
        assert WorkerEventKind.DRAINING in kinds
        assert WorkerEventKind.THROTTLED not in kinds  # a drain, not a throttle
        del staying


async def test_a_worker_drained_by_the_application_may_still_say_it_drains(
    autojump_clock: object,
) -> None:
    async with dispatcher() as d, d.events() as events:
        worker = await connect_memory_worker(d, "w", ["t"])
        d.drain_worker("w")
        await worker.send(draining(worker))
        await settle()
        drains = [
            e for e in _drain(events)
            if isinstance(e, WorkerEvent) and e.kind is WorkerEventKind.DRAINING
        ]  # fmt: skip
        assert len(drains) == 1


def _drain(events: EventStream) -> list[object]:
    """The events buffered so far, without waiting."""
    buffered = list(events._events)
    events._events.clear()
    return buffered


# -- the retry of a task a worker cut short ---------------------------------------------


async def test_a_task_a_draining_worker_cancels_is_retried_at_once_elsewhere(
    autojump_clock: object,
) -> None:
    async with dispatcher(retry_backoff=60, retry_backoff_max=60) as d:
        leaving = await connect_memory_worker(d, "leaving", ["t"])
        handle = await d.submit(Task.new("t", "x"))
        first = await leaving.receive_task()
        staying = await connect_memory_worker(d, "staying", ["t"])
        await leaving.send(draining(leaving))
        cut_at = trio.current_time()
        await leaving.send(cancelled(leaving, first, retryable=True))
        retry = await staying.receive_task()
        assert trio.current_time() == cut_at  # no backoff
        assert retry.task.id == first.task.id
        assert retry.task.metadata.retry_count == 1  # it counted as a try
        await staying.complete(retry, "done")
        result = await handle.result()
        assert (result.status, result.worker_id) == (TaskStatus.COMPLETED, "staying")
        assert [(a.worker_id, a.status) for a in handle.attempts[:1]] == [
            ("leaving", TaskStatus.CANCELLED)
        ]
        assert d.pool_stats().retried == 1


async def test_a_cancel_that_is_not_retryable_is_the_result(autojump_clock: object) -> None:
    async with dispatcher() as d:
        worker = await connect_memory_worker(d, "w", ["t"])
        handle = await d.submit(Task.new("t"))
        await worker.send(cancelled(worker, await worker.receive_task(), retryable=False))
        result = await handle.result()
        assert result.status is TaskStatus.CANCELLED
        assert result.error is not None
        assert result.error.code == ErrorCode.WORKER_SHUTTING_DOWN


async def test_a_task_cut_short_past_its_last_try_is_not_retried(
    autojump_clock: object,
) -> None:
    async with dispatcher() as d:
        worker = await connect_memory_worker(d, "w", ["t"])
        handle = await d.submit(Task.new("t", max_retries=0))
        await worker.send(cancelled(worker, await worker.receive_task(), retryable=True))
        assert (await handle.result()).status is TaskStatus.CANCELLED


# -- progress --------------------------------------------------------------------------


async def test_progress_reports_are_events_in_order_and_the_latest_is_on_the_handle(
    autojump_clock: object,
) -> None:
    async with dispatcher() as d, d.events() as events:
        worker = await connect_memory_worker(d, "w", ["t"])
        handle = await d.submit(Task.new("t"))
        dispatch = await worker.receive_task()
        steps = [TaskProgress(i / 4, f"step {i}") for i in range(1, 4)]
        await worker.send(report(worker, dispatch))  # started, no progress yet
        assert handle.progress is None
        for step in steps:
            await worker.send(report(worker, dispatch, progress=step))
        await settle()
        assert handle.progress == steps[-1]
        await worker.complete(dispatch)
        await handle.result()
        task_events = [e for e in _drain(events) if isinstance(e, TaskEvent)]
        kinds = [e.kind for e in task_events]
        assert kinds == [
            TaskEventKind.PENDING,
            TaskEventKind.DISPATCHED,
            TaskEventKind.RUNNING,
            *[TaskEventKind.PROGRESS] * 3,
            TaskEventKind.COMPLETED,
        ]
        assert [e.progress for e in task_events[3:6]] == steps
        assert all(e.worker_id == "w" for e in task_events[3:6])


# -- deadline extension ----------------------------------------------------------------


async def _extended_task(
    d: Dispatcher, timeout_ms: int
) -> tuple[MemoryWorker, TaskDispatch, trio_pipe.TaskHandle[object]]:
    worker = await connect_memory_worker(d, "w", ["long", "short"])
    handle = await d.submit(Task.new("long", timeout_ms=timeout_ms))
    return worker, await worker.receive_task(), handle


async def test_an_extension_moves_the_deadline_up_to_the_types_longest_life(
    autojump_clock: object,
) -> None:
    async with dispatcher(max_lifetime_by_type={"long": 10}) as d:
        start = trio.current_time()
        worker, dispatch, handle = await _extended_task(d, timeout_ms=1000)
        await trio.sleep(0.5)
        await worker.send(report(worker, dispatch, extend_ms=2000))  # to 2.5 s
        await trio.sleep_until(start + 2.4)
        assert not handle.done
        await worker.send(report(worker, dispatch, extend_ms=60_000))  # capped: 10 s
        await trio.sleep_until(start + 9.9)
        assert not handle.done
        result = await handle.result()
        assert result.status is TaskStatus.TIMED_OUT
        assert trio.current_time() == pytest.approx(start + 10)
        kill = decode(await worker.receive_frame())
        assert isinstance(kill, Kill) and kill.task_id == dispatch.task.id


async def test_an_extension_never_brings_a_deadline_nearer(autojump_clock: object) -> None:
    async with dispatcher(max_lifetime_by_type={"long": 60}) as d:
        start = trio.current_time()
        worker, dispatch, handle = await _extended_task(d, timeout_ms=5000)
        await worker.send(report(worker, dispatch, extend_ms=100))
        await trio.sleep_until(start + 4.9)
        assert not handle.done
        await handle.result()
        assert trio.current_time() == pytest.approx(start + 5)


async def test_an_extension_for_a_type_not_allowed_is_ignored(
    autojump_clock: object, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="trio_pipe.dispatcher")
    async with dispatcher(max_lifetime_by_type={"short": 60}) as d:
        start = trio.current_time()
        worker, dispatch, handle = await _extended_task(d, timeout_ms=1000)
        await worker.send(report(worker, dispatch, extend_ms=30_000))
        assert (await handle.result()).status is TaskStatus.TIMED_OUT
        assert trio.current_time() == pytest.approx(start + 1)
        assert "may not extend its deadline" in caplog.text


# -- limits per task type --------------------------------------------------------------


async def test_a_workers_limit_per_type_holds_while_other_types_are_sent(
    autojump_clock: object,
) -> None:
    async with dispatcher() as d:
        worker = await connect_memory_worker(
            d, "w", ["render", "fetch"], max_concurrency=3,
            max_concurrency_by_type={"render": 1},
        )  # fmt: skip
        renders = [await d.submit(Task.new("render", i)) for i in range(3)]
        fetches = [await d.submit(Task.new("fetch", i)) for i in range(2)]
        received = [await worker.receive_task() for _ in range(3)]
        await settle()
        assert sorted(r.task.task_type for r in received) == ["fetch", "fetch", "render"]
        assert d.pool_stats().queued == 2  # the other renders wait
        for dispatch in received:
            await worker.complete(dispatch)
        for _ in range(2):  # one render at a time
            dispatch = await worker.receive_task()
            assert dispatch.task.task_type == "render"
            await settle()
            assert d.pool_stats().used_capacity == 1
            await worker.complete(dispatch)
        for handle in [*renders, *fetches]:
            assert (await handle.result()).status is TaskStatus.COMPLETED


async def test_a_task_of_a_type_at_its_limit_goes_to_another_worker(
    autojump_clock: object,
) -> None:
    async with dispatcher() as d:
        limited = await connect_memory_worker(
            d, "limited", ["render"], max_concurrency=8,
            max_concurrency_by_type={"render": 1},
        )  # fmt: skip
        other = await connect_memory_worker(d, "other", ["render"], max_concurrency=1)
        handles = [await d.submit(Task.new("render", i)) for i in range(2)]
        await settle()
        assert sorted(h.worker_id or "" for h in handles) == ["limited", "other"]
        del limited, other


# -- leaving the dispatcher abruptly ---------------------------------------------------


class Boom(Exception):
    pass


async def _frames_after_the_end(worker: MemoryWorker) -> list[object]:
    """Every message the dispatcher sent the worker until it closed the connection."""
    messages = []
    try:
        while True:
            messages.append(decode(await worker.receive_frame()))
    except trio.EndOfChannel:
        return messages


@pytest.mark.parametrize("how", ["exception", "cancellation", "KeyboardInterrupt"])
async def test_leaving_abruptly_tells_every_worker_to_stop_now(
    autojump_clock: object, how: str
) -> None:
    workers: list[MemoryWorker] = []
    handles = []
    with trio.move_on_after(5) as scope:  # the cancellation, when that is the case
        try:
            async with dispatcher() as d:
                for name in ("a", "b"):
                    workers.append(await connect_memory_worker(d, name, ["t"]))
                handles = [await d.submit(Task.new("t")) for _ in range(2)]
                for worker in workers:
                    await worker.receive_task()
                if how == "exception":
                    raise Boom
                if how == "KeyboardInterrupt":
                    raise KeyboardInterrupt
                await trio.sleep_forever()
        except (Boom, KeyboardInterrupt):
            pass
    assert scope.cancelled_caught == (how == "cancellation")
    for worker in workers:
        assert await _frames_after_the_end(worker) == [Shutdown(graceful=False)]
        assert worker.channel.close_reason == "dispatcher closed"
    for handle in handles:
        result = await handle.result()
        assert result.error is not None
        assert result.error.code == ErrorCode.DISPATCHER_CLOSED


@pytest.mark.parametrize("write_seconds", [1, 3])
async def test_leaving_abruptly_during_a_write_finishes_it_within_close_timeout(
    autojump_clock: object, write_seconds: float
) -> None:
    # The cancellation lands while the writer is sending the task to a slow reader.
    # Within close_timeout (2 s) the write finishes and Shutdown follows it on the
    # same connection; a write that would take longer is cut short there, and then
    # nothing more can be sent on that connection.
    with trio.CancelScope() as scope:
        async with dispatcher() as d:
            worker = await connect_memory_worker(d, "w", ["t"])
            send_all, writing = worker.channel.send_all, trio.Event()

            async def slow_send_all(frames: Sequence[str]) -> None:
                writing.set()
                await trio.sleep(write_seconds)
                await send_all(frames)

            worker.channel.send_all = slow_send_all  # type: ignore[method-assign]
            await d.submit(Task.new("t"))
            await writing.wait()
            cancelled_at = trio.current_time()
            scope.cancel()
            await trio.sleep_forever()
    assert trio.current_time() - cancelled_at <= 2 + write_seconds
    frames = await _frames_after_the_end(worker)
    if write_seconds < 2:
        assert [type(frame).__name__ for frame in frames] == ["TaskDispatch", "Shutdown"]
        assert frames[-1] == Shutdown(graceful=False)
    else:
        assert frames == []
    assert worker.channel.close_reason == "dispatcher closed"


async def test_leaving_gracefully_still_says_graceful(autojump_clock: object) -> None:
    async with dispatcher(shutdown_grace=0) as d:
        worker = await connect_memory_worker(d, "w", ["t"])
    assert await _frames_after_the_end(worker) == [Shutdown(graceful=True)]
