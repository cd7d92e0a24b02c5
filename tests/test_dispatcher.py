"""Dispatcher rules, with in-memory workers under Trio's MockClock (autojump_clock);
the last few need the real world (a spawned process, listening sockets) and real time.
"""

from __future__ import annotations

import math
import socket
import sys
import uuid
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio
from helpers import open_raw_websocket

import trio_pipe
from trio_pipe import (
    DispatcherClosed,
    DispatcherConfig,
    ErrorCode,
    EventStream,
    NoWorkerAvailable,
    Priority,
    QueueFull,
    Task,
    TaskEvent,
    TaskEventKind,
    TaskFailed,
    TaskSpec,
    TaskStatus,
    WorkerNotFound,
    WorkerState,
)
from trio_pipe.protocol import (
    Backpressure,
    BackpressureSignal,
    Heartbeat,
    HeartbeatAck,
    HeartbeatPayload,
    Kill,
    Shutdown,
    TaskError,
    TaskResult,
    TaskResultMessage,
    WorkerRegister,
    WorkerRegistered,
    WorkerRegistration,
    decode,
    encode,
    validate_worker_id,
)
from trio_pipe.testing import MemoryWorker, connect_memory_worker, open_memory_worker


async def _double(payload: int) -> int:
    return payload * 2


async def _serve_in(nursery: trio.Nursery, worker: MemoryWorker) -> None:
    nursery.start_soon(worker.serve, _double)


def _failed(dispatch_task: Task, worker_id: str, *, retryable: bool) -> TaskResultMessage:
    return TaskResultMessage(
        TaskResult(
            task_id=dispatch_task.id,
            status=TaskStatus.FAILED,
            error=TaskError("HANDLER_ERROR", "boom", retryable=retryable),
            worker_id=worker_id,
        )
    )


async def _next_event(
    events: EventStream, kind: TaskEventKind, task_id: uuid.UUID, *, retry_count: int
) -> TaskEvent:
    """The next *kind* event of the task's try number *retry_count* + 1."""
    async for event in events:
        if not isinstance(event, TaskEvent) or event.task_id != task_id:
            continue
        if (event.kind, event.retry_count) == (kind, retry_count):
            return event
    raise AssertionError(f"the events ended before {kind.value} of {task_id}")


# --------------------------------------------------------------------- routing


async def test_run_returns_the_result_payload(autojump_clock: object) -> None:
    async with trio_pipe.open_dispatcher(port=None) as d, trio.open_nursery() as n:
        async with open_memory_worker(d, "w1", ["double"]) as w:
            await _serve_in(n, w)
            assert await d.run(Task.new("double", 21)) == 42
        n.cancel_scope.cancel()


@attrs.frozen
class Sum:
    total: int


@attrs.frozen
class AddNumbers(TaskSpec[Sum], task_type="add"):
    numbers: list[int]


async def test_typed_task_returns_its_declared_result_type(autojump_clock: object) -> None:
    async with trio_pipe.open_dispatcher(port=None) as d:
        async with open_memory_worker(d, "w1", ["add"]) as w:
            async with trio.open_nursery() as n:

                async def add(payload: dict[str, list[int]]) -> dict[str, int]:
                    return {"total": sum(payload["numbers"])}

                n.start_soon(w.serve, add)
                result = await d.run(AddNumbers(numbers=[1, 2, 3]), priority=Priority.HIGH)
                assert result == Sum(total=6)
                n.cancel_scope.cancel()


async def test_tasks_spread_to_the_least_loaded_workers(autojump_clock: object) -> None:
    async with trio_pipe.open_dispatcher(port=None) as d:
        async with (
            open_memory_worker(d, "a", ["t"], max_concurrency=4) as a,
            open_memory_worker(d, "b", ["t"], max_concurrency=4) as b,
            open_memory_worker(d, "c", ["t"], max_concurrency=2) as c,
        ):
            for i in range(10):
                await d.submit(Task.new("t", i))
            loads = {w.worker_id: w.active_tasks for w in d.workers()}
            assert loads == {"a": 4, "b": 4, "c": 2}
            stats = d.pool_stats()
            assert (stats.busy, stats.used_capacity, stats.total_capacity) == (3, 10, 10)
            del a, b, c


async def test_submit_queues_until_a_worker_supports_the_type(
    autojump_clock: object,
) -> None:
    async with trio_pipe.open_dispatcher(port=None) as d:
        handle = await d.submit(Task.new("late", 1))
        assert handle.status is TaskStatus.PENDING
        assert d.pool_stats().queued == 1
        async with open_memory_worker(d, "w1", ["late"]) as w:
            dispatch = await w.receive_task()
            assert dispatch.task.id == handle.id
            await w.complete(dispatch, "done")
            assert await handle.value() == "done"


async def test_submit_nowait_refuses_a_type_no_worker_supports(
    autojump_clock: object,
) -> None:
    async with trio_pipe.open_dispatcher(port=None) as d:
        with pytest.raises(NoWorkerAvailable, match="'nobody'"):
            d.submit_nowait(Task.new("nobody", 1))


async def test_a_payload_that_is_not_json_is_refused_at_submit(
    autojump_clock: object,
) -> None:
    async with trio_pipe.open_dispatcher(port=None) as d:
        with pytest.raises(TypeError):
            await d.submit(Task.new("t", {"x": object()}))
        with pytest.raises(ValueError):
            await d.submit(Task.new("t", math.nan))


async def test_dispatch_to_pins_a_task_to_one_worker(autojump_clock: object) -> None:
    async with trio_pipe.open_dispatcher(port=None) as d:
        async with (
            open_memory_worker(d, "a", ["t"], max_concurrency=2),
            open_memory_worker(d, "b", ["t"], max_concurrency=2) as b,
        ):
            handle = await d.dispatch_to("b", Task.new("t", 1))
            assert handle.worker_id == "b"
            assert (await b.receive_task()).task.id == handle.id
            with pytest.raises(WorkerNotFound):
                await d.dispatch_to("nobody", Task.new("t", 1))


async def test_dispatch_with_tag_only_uses_tagged_workers(autojump_clock: object) -> None:
    async with trio_pipe.open_dispatcher(port=None) as d:
        async with (
            open_memory_worker(d, "plain", ["t"], max_concurrency=5),
            open_memory_worker(d, "gpu", ["t"], tags=("gpu",)),
        ):
            first = await d.dispatch_with_tag("gpu", Task.new("t", 1))
            second = await d.dispatch_with_tag("gpu", Task.new("t", 2))
            assert first.worker_id == "gpu"
            assert second.status is TaskStatus.PENDING  # waits for the tagged worker


async def test_a_pinned_task_fails_when_its_worker_leaves(autojump_clock: object) -> None:
    async with trio_pipe.open_dispatcher(port=None) as d:
        async with open_memory_worker(d, "only", ["t"]) as w:
            await d.dispatch_to("only", Task.new("t", 1, max_retries=5))
            queued = await d.dispatch_to("only", Task.new("t", 2))
            await w.receive_task()
        result = await queued.result()
        assert result.error is not None
        assert result.error.code == ErrorCode.WORKER_DISCONNECTED


async def test_a_pinned_task_waiting_to_be_retried_fails_when_its_worker_leaves(
    autojump_clock: object,
) -> None:
    async with trio_pipe.open_dispatcher(port=None, retry_backoff=1.0) as d:
        async with open_memory_worker(d, "only", ["t"]) as w:
            handle = await d.dispatch_to("only", Task.new("t", 1, timeout_ms=60_000))
            dispatch = await w.receive_task()
            await w.send(_failed(dispatch.task, "only", retryable=True))
            await trio.sleep(0.1)  # within the backoff (0.5 s at least): not retried yet
            assert not handle.done
        result = await handle.result()
        assert (result.status, result.error and result.error.code) == (
            TaskStatus.FAILED,
            ErrorCode.WORKER_DISCONNECTED,
        )
        assert trio.current_time() < 2  # not at its timeout, a minute later


# ------------------------------------------------------------------- priority


async def test_higher_priority_runs_first_under_saturation(autojump_clock: object) -> None:
    async with trio_pipe.open_dispatcher(port=None) as d:
        async with open_memory_worker(d, "w", ["t"]) as w:
            blocker = await d.submit(Task.new("t", "blocker"))
            for i in range(3):
                await d.submit(Task.new("t", f"normal-{i}"))
            await d.submit(Task.new("t", "critical", priority=Priority.CRITICAL))
            await d.submit(Task.new("t", "low", priority=Priority.LOW))
            order = []
            for _ in range(6):
                dispatch = await w.receive_task()
                order.append(dispatch.task.payload)
                await w.complete(dispatch)
            assert order == [
                "blocker",
                "critical",
                "normal-0",
                "normal-1",
                "normal-2",
                "low",
            ]
            assert blocker.done


async def test_aging_lets_an_old_low_task_pass_newer_high_ones(
    autojump_clock: object,
) -> None:
    async with trio_pipe.open_dispatcher(port=None, aging_interval=1.0) as d:
        async with open_memory_worker(d, "w", ["t"]) as w:
            await d.submit(Task.new("t", "blocker"))
            await d.submit(Task.new("t", "old-low", priority=Priority.LOW))
            await trio.sleep(2.5)  # more than two priority levels' worth of aging
            for i in range(3):
                await d.submit(Task.new("t", f"high-{i}", priority=Priority.HIGH))
            order = []
            for _ in range(5):
                dispatch = await w.receive_task()
                order.append(dispatch.task.payload)
                await w.complete(dispatch)
            assert order == ["blocker", "old-low", "high-0", "high-1", "high-2"]


async def test_a_full_queue_blocks_submit_and_refuses_submit_nowait(
    autojump_clock: object,
) -> None:
    async with trio_pipe.open_dispatcher(port=None, max_queued=2) as d:
        async with open_memory_worker(d, "w", ["t"]) as w:
            await d.submit(Task.new("t", 0))  # runs
            await d.submit(Task.new("t", 1))  # queued
            await d.submit(Task.new("t", 2))  # queued: now full
            with pytest.raises(QueueFull):
                d.submit_nowait(Task.new("t", 3))
            with trio.move_on_after(5) as blocked:
                await d.submit(Task.new("t", 3))
            assert blocked.cancelled_caught
            async with trio.open_nursery() as n:
                admitted = trio.Event()

                async def submit_when_room() -> None:
                    await d.submit(Task.new("t", 4))
                    admitted.set()

                n.start_soon(submit_when_room)
                await w.complete(await w.receive_task())  # frees a queue slot
                with trio.fail_after(1):
                    await admitted.wait()
            assert d.pool_stats().queued == 2


async def test_a_queued_task_times_out_without_being_sent(autojump_clock: object) -> None:
    async with trio_pipe.open_dispatcher(port=None) as d:
        async with open_memory_worker(d, "w", ["t"]) as w:
            await d.submit(Task.new("t", "blocker", timeout_ms=60_000))
            waiting = await d.submit(Task.new("t", "waits", timeout_ms=1_000))
            result = await waiting.result()
            assert result.status is TaskStatus.TIMED_OUT
            assert trio.current_time() == pytest.approx(1.0, abs=0.01)
            await w.complete(await w.receive_task())
            with trio.move_on_after(5):
                sent = await w.receive_task()
                pytest.fail(f"a timed-out task was sent: {sent}")


# -------------------------------------------------------------------- timeouts


async def test_a_task_its_worker_keeps_past_its_timeout_is_killed_there(
    autojump_clock: object,
) -> None:
    async with trio_pipe.open_dispatcher(port=None) as d:
        async with open_memory_worker(d, "w", ["t"]) as w:
            handle = await d.submit(Task.new("t", 1, timeout_ms=2_000))
            dispatch = await w.receive_task()
            assert dispatch.task.metadata.timeout_ms == 2_000
            # The worker ignores the deadline it was given: it never answers.
            with trio.fail_after(5):
                result = await handle.result()
            assert trio.current_time() == pytest.approx(2.0)
            assert result.status is TaskStatus.TIMED_OUT
            assert result.error is not None and result.error.code == ErrorCode.TIMEOUT
            with trio.fail_after(1):
                frame = await w.receive_frame()
            assert decode(frame) == Kill(task_id=dispatch.task.id, reason="timed out")


async def test_a_late_result_after_timeout_frees_the_slot(autojump_clock: object) -> None:
    async with trio_pipe.open_dispatcher(port=None) as d:
        async with open_memory_worker(d, "w", ["t"]) as w:
            slow = await d.submit(Task.new("t", 1, timeout_ms=1_000))
            dispatch = await w.receive_task()
            await slow.result()
            nxt = await d.submit(Task.new("t", 2))
            assert nxt.status is TaskStatus.PENDING  # the killed task still holds the slot
            await w.complete(dispatch, "late")
            assert (await w.receive_task()).task.id == nxt.id
            assert (await slow.result()).status is TaskStatus.TIMED_OUT


async def test_a_heartbeat_with_fewer_active_tasks_frees_abandoned_slots(
    autojump_clock: object,
) -> None:
    async with trio_pipe.open_dispatcher(port=None) as d:
        async with open_memory_worker(d, "w", ["t"]) as w:
            await d.submit(Task.new("t", 1, timeout_ms=1_000))
            await w.receive_task()
            await trio.sleep(2)  # timed out; the worker ignores the Kill
            nxt = await d.submit(Task.new("t", 2))
            assert nxt.status is TaskStatus.PENDING
            await w.send(Heartbeat(HeartbeatPayload("w", active_tasks=0, capacity=1)))
            assert (await w.receive_task()).task.id == nxt.id


# ------------------------------------------------------------- dead workers


async def test_a_silent_worker_is_declared_dead_within_the_heartbeat_timeout(
    autojump_clock: object,
) -> None:
    async with trio_pipe.open_dispatcher(port=None, heartbeat_timeout=5) as d:
        async with open_memory_worker(d, "w", ["t"]) as w:
            handle = await d.submit(Task.new("t", 1, max_retries=0))
            await w.receive_task()
            result = await handle.result()
            assert trio.current_time() == pytest.approx(5, abs=0.01)
            assert result.error is not None
            assert result.error.code == ErrorCode.WORKER_DISCONNECTED
            assert d.workers()[0].state is WorkerState.DEAD


async def test_heartbeats_keep_a_worker_alive_and_are_acknowledged(
    autojump_clock: object,
) -> None:
    async with trio_pipe.open_dispatcher(port=None, heartbeat_timeout=5) as d:
        async with open_memory_worker(d, "w", ["t"]) as w:
            for _ in range(5):
                await trio.sleep(3)
                await w.send(Heartbeat(HeartbeatPayload("w", 0, 1, 0)))
                assert await w.receive() == HeartbeatAck()
            assert d.pool_stats().active == 1


async def test_a_task_on_a_dead_worker_is_retried_on_another(
    autojump_clock: object,
) -> None:
    async with trio_pipe.open_dispatcher(port=None) as d:
        async with open_memory_worker(d, "b", ["t"]) as b:
            async with open_memory_worker(d, "a", ["t"]) as a:
                await d.submit(Task.new("t", "keeps b busy"))
                handle = await d.submit(Task.new("t", "moves"))
                assert handle.worker_id == "a"
                await a.receive_task()
            await b.complete(await b.receive_task())
            dispatch = await b.receive_task()
            assert dispatch.task.id == handle.id
            assert dispatch.task.metadata.retry_count == 1
            await b.complete(dispatch, "ok")
            assert await handle.value() == "ok"
            assert [x.worker_id for x in handle.attempts] == ["a", "b"]


async def test_retryable_failures_are_retried_until_max_retries(
    autojump_clock: object,
) -> None:
    async with trio_pipe.open_dispatcher(port=None) as d:
        async with open_memory_worker(d, "w", ["t"]) as w:
            handle = await d.submit(Task.new("t", 1, max_retries=2))
            for expected_retry in range(3):
                dispatch = await w.receive_task()
                assert dispatch.task.metadata.retry_count == expected_retry
                await w.send(_failed(dispatch.task, "w", retryable=True))
            result = await handle.result()
            assert result.status is TaskStatus.FAILED
            assert len(handle.attempts) == 3
            assert all(a.error and a.error.message == "boom" for a in handle.attempts)
            with pytest.raises(TaskFailed, match="HANDLER_ERROR: boom"):
                await handle.value()


async def test_non_retryable_failures_resolve_at_once(autojump_clock: object) -> None:
    async with trio_pipe.open_dispatcher(port=None) as d:
        async with open_memory_worker(d, "w", ["t"]) as w:
            handle = await d.submit(Task.new("t", 1))
            dispatch = await w.receive_task()
            await w.send(_failed(dispatch.task, "w", retryable=False))
            assert (await handle.result()).status is TaskStatus.FAILED
            assert len(handle.attempts) == 1


async def test_retry_prefers_a_different_worker(autojump_clock: object) -> None:
    async with trio_pipe.open_dispatcher(port=None, retry_backoff=0.01) as d:
        async with (
            open_memory_worker(d, "a", ["t"]) as a,
            open_memory_worker(d, "b", ["t"]) as b,
        ):
            handle = await d.submit(Task.new("t", 1))
            first = a if handle.worker_id == "a" else b
            other = b if first is a else a
            dispatch = await first.receive_task()
            await first.send(_failed(dispatch.task, first.worker_id, retryable=True))
            again = await other.receive_task()
            assert again.task.id == handle.id


async def test_a_retry_avoids_the_worker_that_failed_it_even_when_the_other_is_busier(
    autojump_clock: object,
) -> None:
    async with trio_pipe.open_dispatcher(port=None, retry_backoff=0.01) as d:
        async with (
            open_memory_worker(d, "a", ["t"], max_concurrency=4) as a,
            open_memory_worker(d, "b", ["t"], max_concurrency=4) as b,
            d.events() as events,
        ):
            await d.dispatch_to("b", Task.new("t", "holds one slot of b"))
            handle = await d.submit(Task.new("t", "fails on a"))
            assert handle.worker_id == "a"  # the least loaded: 0 of 4 slots taken
            dispatch = await a.receive_task()
            await a.send(_failed(dispatch.task, "a", retryable=True))
            retry = await _next_event(
                events, TaskEventKind.DISPATCHED, handle.id, retry_count=1
            )
            # a is idle again (0 of 4) and b is not (1 of 4): only avoiding a sends it to b.
            assert retry.worker_id == "b"
            assert (await b.receive_task()).task.payload == "holds one slot of b"
            again = await b.receive_task()
            assert (again.task.id, again.task.metadata.retry_count) == (handle.id, 1)


async def test_a_retried_task_keeps_its_place_in_the_queue(autojump_clock: object) -> None:
    async with trio_pipe.open_dispatcher(port=None, retry_backoff=0.01) as d:
        async with open_memory_worker(d, "w", ["t"]) as w, d.events() as events:
            await d.submit(Task.new("t", "blocker"))
            first = await d.submit(Task.new("t", "first"))  # queued at 0 s
            await trio.sleep(1)
            await d.submit(Task.new("t", "second"))  # queued at 1 s, the same priority
            async with open_memory_worker(d, "x", ["t"]) as x:
                dispatch = await x.receive_task()
                assert dispatch.task.id == first.id  # the older of the two
                d.drain_worker("x")  # so that the retry has to wait in the queue
                await trio.sleep(1)
                await x.send(_failed(dispatch.task, "x", retryable=True))
                # Queued again at 2 s, with the rank it got at 0 s.
                await _next_event(events, TaskEventKind.PENDING, first.id, retry_count=1)
                assert d.pool_stats().queued == 2
            await w.complete(await w.receive_task())  # the blocker: w has a free slot
            order = []
            for _ in range(2):
                dispatch = await w.receive_task()
                order.append(dispatch.task.payload)
                await w.complete(dispatch)
            assert order == ["first", "second"]


# ------------------------------------------------------------------- faults


async def test_a_malformed_frame_closes_only_that_connection(
    autojump_clock: object,
) -> None:
    async with trio_pipe.open_dispatcher(port=None) as d, trio.open_nursery() as n:
        async with (
            open_memory_worker(d, "bad", ["t"]) as bad,
            open_memory_worker(d, "good", ["t"]) as good,
        ):
            await _serve_in(n, good)
            await bad.send("{this is not json")
            with pytest.raises(trio.EndOfChannel):
                while True:
                    await bad.receive()
            assert bad.channel.closed_for_protocol_error
            assert bad.channel.close_reason is not None
            assert "not JSON" in bad.channel.close_reason
            assert await d.run(Task.new("t", 5)) == 10
            states = {w.worker_id: w.state for w in d.workers()}
            assert states == {"good": WorkerState.ACTIVE, "bad": WorkerState.DEAD}
            n.cancel_scope.cancel()


async def test_a_result_for_a_task_never_dispatched_is_a_protocol_error(
    autojump_clock: object,
) -> None:
    async with trio_pipe.open_dispatcher(port=None) as d:
        async with open_memory_worker(d, "w", ["t"]) as w:
            await w.send(_failed(Task.new("t"), "w", retryable=False))
            with pytest.raises(trio.EndOfChannel):
                await w.receive()
            assert w.channel.close_reason is not None
            assert "never dispatched" in w.channel.close_reason


async def test_a_websocket_worker_must_register_first(autojump_clock: object) -> None:
    async with trio_pipe.open_dispatcher(port=None) as d:
        async with open_memory_worker(d, "w", ["t"], register=False) as w:
            await w.send(Heartbeat(HeartbeatPayload("w")))
            with pytest.raises(trio.EndOfChannel):
                await w.receive()
            assert "expected WorkerRegister" in (w.channel.close_reason or "")
            assert d.workers() == []


async def test_a_worker_that_never_registers_is_dropped(autojump_clock: object) -> None:
    async with trio_pipe.open_dispatcher(port=None, registration_timeout=3) as d:
        async with open_memory_worker(d, "w", ["t"], register=False) as w:
            with pytest.raises(trio.EndOfChannel):
                await w.receive()
            assert trio.current_time() == pytest.approx(3, abs=0.01)
            assert w.channel.close_reason == "no WorkerRegister in time"


async def test_a_throttled_worker_gets_nothing_until_it_clears(
    autojump_clock: object,
) -> None:
    async with trio_pipe.open_dispatcher(port=None) as d:
        async with open_memory_worker(d, "w", ["t"], max_concurrency=4) as w:
            await w.send(Backpressure(BackpressureSignal("w", 0.9, should_throttle=True)))
            await trio.sleep(1)
            handle = await d.submit(Task.new("t", 1))
            assert handle.status is TaskStatus.PENDING
            await w.send(Backpressure(BackpressureSignal("w", 0.1, should_throttle=False)))
            assert (await w.receive_task()).task.id == handle.id


async def test_a_new_connection_with_the_same_id_replaces_the_old(
    autojump_clock: object,
) -> None:
    async with trio_pipe.open_dispatcher(port=None) as d:
        async with open_memory_worker(d, "w", ["t"]) as old:
            handle = await d.submit(Task.new("t", 1))
            await old.receive_task()
            async with open_memory_worker(d, "w", ["t"]) as new:
                dispatch = await new.receive_task()  # retried on the new connection
                assert dispatch.task.id == handle.id
                assert [w.state for w in d.workers()] == [WorkerState.ACTIVE]


# ---------------------------------------------------------------- the pool


async def test_drain_worker_stops_new_tasks_but_finishes_running_ones(
    autojump_clock: object,
) -> None:
    async with trio_pipe.open_dispatcher(port=None) as d:
        async with open_memory_worker(d, "w", ["t"], max_concurrency=2) as w:
            running = await d.submit(Task.new("t", 1))
            d.drain_worker("w")
            waiting = await d.submit(Task.new("t", 2))
            assert waiting.status is TaskStatus.PENDING
            await w.complete(await w.receive_task(), "ok")
            assert await running.value() == "ok"
            assert d.pool_stats().draining == 1


async def test_remove_worker_retries_its_tasks_elsewhere(autojump_clock: object) -> None:
    async with trio_pipe.open_dispatcher(port=None) as d:
        async with open_memory_worker(d, "a", ["t"]) as a:
            handle = await d.submit(Task.new("t", 1))
            await a.receive_task()
            async with open_memory_worker(d, "b", ["t"]) as b:
                d.remove_worker("a")
                dispatch = await b.receive_task()
                assert dispatch.task.id == handle.id
                assert handle.attempts[0].error is not None
                assert handle.attempts[0].error.code == ErrorCode.WORKER_REMOVED
        with pytest.raises(WorkerNotFound):
            d.remove_worker("nobody")


async def test_max_pool_size_turns_extra_workers_away(autojump_clock: object) -> None:
    async with trio_pipe.open_dispatcher(port=None, max_pool_size=1) as d:
        async with open_memory_worker(d, "a", ["t"]):
            async with open_memory_worker(d, "b", ["t"], register=False) as b:
                await b.send(WorkerRegister(WorkerRegistration("b", ("t",))))
                with pytest.raises(trio.EndOfChannel):
                    await b.receive()
                assert "pool is full" in (b.channel.close_reason or "")
            assert [w.worker_id for w in d.workers()] == ["a"]


async def test_falling_below_min_pool_size_calls_back(autojump_clock: object) -> None:
    calls = []
    async with trio_pipe.open_dispatcher(
        port=None, min_pool_size=2, on_below_minimum=calls.append
    ) as d:
        async with open_memory_worker(d, "a", ["t"]), open_memory_worker(d, "b", ["t"]):
            pass
        await trio.sleep(1)
    assert [stats.active for stats in calls[:2]] == [1, 0]


async def test_spawned_workers_may_describe_themselves_once(autojump_clock: object) -> None:
    async with trio_pipe.open_dispatcher(port=None) as d:
        async with open_memory_worker(d, "cli", ["old"], spawned=True) as w:
            await w.send(WorkerRegister(WorkerRegistration("other-name", ("new",), 3)))
            await w.receive()  # WorkerRegistered
            (info,) = d.workers()
            assert (info.worker_id, info.supported_tasks, info.max_concurrency) == (
                "cli",
                ("new",),
                3,
            )


# -------------------------------------------------------- structured waiting


async def test_cancelling_run_kills_the_remote_task(autojump_clock: object) -> None:
    async with trio_pipe.open_dispatcher(port=None) as d:
        async with open_memory_worker(d, "w", ["t"]) as w:
            with trio.move_on_after(2):
                await d.run(Task.new("t", 1))
            dispatch = await w.receive_task()
            kill = await w.receive()
            assert kill == Kill(task_id=dispatch.task.id, reason="the caller was cancelled")
            assert d.pool_stats().in_flight == 0


async def test_the_callers_deadline_shortens_the_timeout_sent(
    autojump_clock: object,
) -> None:
    async with trio_pipe.open_dispatcher(port=None) as d:
        async with open_memory_worker(d, "w", ["t"]) as w:
            with trio.move_on_after(3):
                await d.run(Task.new("t", 1, timeout_ms=60_000))
            dispatch = await w.receive_task()
            assert dispatch.task.metadata.timeout_ms == 3_000


async def test_submit_outlives_the_callers_scope_until_cancelled(
    autojump_clock: object,
) -> None:
    async with trio_pipe.open_dispatcher(port=None) as d:
        async with open_memory_worker(d, "w", ["t"]) as w:
            with trio.move_on_after(1):
                handle = await d.submit(Task.new("t", 1))
                await trio.sleep_forever()
            assert not handle.done
            await handle.cancel("no longer needed")
            assert (await handle.result()).status is TaskStatus.CANCELLED
            await w.receive_task()
            assert await w.receive() == Kill(task_id=handle.id, reason="no longer needed")


async def test_cancelling_a_queued_task_removes_it(autojump_clock: object) -> None:
    async with trio_pipe.open_dispatcher(port=None) as d:
        handle = await d.submit(Task.new("t", 1))
        await handle.cancel()
        assert handle.status is TaskStatus.CANCELLED
        assert d.pool_stats().queued == 0


# ----------------------------------------------------------------- shutdown


async def test_graceful_shutdown_lets_in_flight_tasks_finish(
    autojump_clock: object,
) -> None:
    async with trio.open_nursery() as n:
        async with trio_pipe.open_dispatcher(port=None) as d:
            worker = await connect_memory_worker(d, "w", ["t"])
            running = await d.submit(Task.new("t", 1))
            queued = await d.submit(Task.new("t", 2))
            dispatch = await worker.receive_task()

            async def finish_later() -> None:
                assert await worker.receive() == Shutdown(graceful=True)
                await trio.sleep(1)
                await worker.complete(dispatch, "finished")

            n.start_soon(finish_later)
        assert await running.value() == "finished"
        queued_result = await queued.result()
        assert queued_result.status is TaskStatus.CANCELLED
        assert queued_result.error is not None
        assert queued_result.error.code == ErrorCode.DISPATCHER_CLOSED
        with pytest.raises(DispatcherClosed):
            await d.submit(Task.new("t", 3))


async def test_the_grace_period_bounds_shutdown(autojump_clock: object) -> None:
    async with trio_pipe.open_dispatcher(port=None, shutdown_grace=5) as d:
        worker = await connect_memory_worker(d, "w", ["t"])
        stuck = await d.submit(Task.new("t", 1))
        await worker.receive_task()
    assert trio.current_time() == pytest.approx(5, abs=0.1)
    result = await stuck.result()
    assert result.error is not None and result.error.code == ErrorCode.DISPATCHER_CLOSED


async def test_an_error_in_the_block_resolves_every_handle(autojump_clock: object) -> None:
    handles = []
    with pytest.raises(RuntimeError, match="user code failed"):
        async with trio_pipe.open_dispatcher(port=None) as d:
            worker = await connect_memory_worker(d, "w", ["t"])
            handles = [await d.submit(Task.new("t", i)) for i in range(3)]
            await worker.receive_task()
            raise RuntimeError("user code failed")
    for handle in handles:
        result = await handle.result()
        assert result.status is TaskStatus.CANCELLED
        assert result.error is not None
        assert result.error.code == ErrorCode.DISPATCHER_CLOSED


# ------------------------------------------------------------------- settings

#: One bad value for every setting of DispatcherConfig, and what it raises.
BAD_SETTINGS: list[tuple[str, Any, type[Exception]]] = [
    ("heartbeat_timeout", 0, ValueError),
    ("registration_timeout", -1.0, ValueError),
    ("send_timeout", math.nan, ValueError),
    ("close_timeout", math.inf, ValueError),
    ("shutdown_grace", -0.5, ValueError),
    ("max_queued", -1, ValueError),
    ("aging_interval", "10", TypeError),
    ("retry_backoff", True, TypeError),
    ("retry_backoff_max", -math.inf, ValueError),
    ("max_pool_size", 0, ValueError),
    ("min_pool_size", 1.5, TypeError),
    ("on_below_minimum", "print", TypeError),
    ("max_frame_size", 0, ValueError),
    ("max_lifetime_by_type", {"render": 0}, ValueError),
    ("max_lifetime_by_type", {"render": math.inf}, ValueError),
    ("max_lifetime_by_type", {"render": "60"}, TypeError),
    ("max_lifetime_by_type", {"": 60}, TypeError),
    ("max_lifetime_by_type", ["render"], TypeError),
    ("auth", "secret", TypeError),
    ("insecure", 1, TypeError),
    ("credentials_check_interval", 0, ValueError),
    ("http", ("127.0.0.1", -1), ValueError),
    ("http_auth", "secret", TypeError),
    ("http_insecure", 1, TypeError),
    ("handshake_timeout", 0, ValueError),
    ("max_connections", 0, ValueError),
    ("max_unregistered", None, TypeError),
    ("max_json_depth", 1, ValueError),
    ("max_json_depth", 1025, ValueError),
    ("max_task_types", 0, ValueError),
    ("max_tags", -1, ValueError),
    ("max_name_length", 0, ValueError),
    ("max_worker_concurrency", 2.5, TypeError),
    ("max_outbox_size", 0, ValueError),
    ("max_consecutive_timeouts", 0, ValueError),
]


@pytest.mark.parametrize(("setting", "value", "error"), BAD_SETTINGS)
def test_each_setting_refuses_a_bad_value_by_its_name(
    setting: str, value: Any, error: type[Exception]
) -> None:
    with pytest.raises(error, match=rf"\b{setting}\b"):
        DispatcherConfig(**{setting: value})


def test_every_setting_has_a_bad_value_tested() -> None:
    fields = {field.name for field in attrs.fields(DispatcherConfig)}
    assert fields == {setting for setting, _, _ in BAD_SETTINGS}


def test_the_settings_bounds_are_inclusive_where_zero_makes_sense() -> None:
    config = DispatcherConfig(
        shutdown_grace=0,
        max_queued=0,
        aging_interval=0,
        retry_backoff=0,
        retry_backoff_max=0,
        min_pool_size=0,
    )
    assert (config.max_queued, config.shutdown_grace) == (0, 0)


async def test_open_dispatcher_refuses_a_bad_setting_before_starting(
    autojump_clock: object,
) -> None:
    with pytest.raises(ValueError, match=r"\bheartbeat_timeout\b"):
        async with trio_pipe.open_dispatcher(port=None, heartbeat_timeout=-1):
            pytest.fail("the dispatcher opened with a bad setting")


# ------------------------------------------- a real process and real listeners

ECHO_WORKER = """\
#!{python}
# A stdio worker: answers each task with its payload.
import json
import sys

for line in sys.stdin:
    message = json.loads(line)
    if message["type"] == "TaskDispatch":
        task = message["task"]
        result = {{"taskId": task["id"], "status": "Completed", "payload": task["payload"]}}
        print(json.dumps({{"type": "TaskResult", "result": result}}), flush=True)
"""


@pytest.mark.slow
async def test_the_default_id_of_a_spawned_program_is_a_valid_id(tmp_path: Path) -> None:
    # Named with a leading underscore, and run by a path: neither may reach the id.
    program = tmp_path / "_worker.py"
    program.write_text(ECHO_WORKER.format(python=sys.executable))
    program.chmod(0o755)
    async with trio_pipe.open_dispatcher(port=None) as d:
        worker_id = await d.spawn_stdio(["./_worker.py"], ["echo"], cwd=str(tmp_path))
        assert validate_worker_id(worker_id) == worker_id  # the protocol's rule
        assert worker_id.startswith("worker.py-")
        with trio.fail_after(30):
            assert await d.run(Task.new("echo", "hello")) == "hello"
        assert [info.worker_id for info in d.workers()] == [worker_id]


def _stream_addresses(host: str) -> list[str]:
    """The addresses a listener on *host* binds, one per listener, as trio finds them."""
    found = socket.getaddrinfo(host, 0, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    return [str(sockaddr[0]) for *_, sockaddr in found]


LOCALHOST = _stream_addresses("localhost")


async def _register_on_each_listener(addresses: list[str]) -> None:
    """Open a dispatcher on localhost: it reports one port per listener (in the order
    of *addresses*), and a worker registers through each."""
    async with trio_pipe.open_dispatcher(host="localhost", port=0) as d:
        assert len(d.ports) == len(addresses)
        assert d.port == d.ports[0]
        with trio.fail_after(30):
            for n, (address, port) in enumerate(zip(addresses, d.ports, strict=True)):
                host = f"[{address}]" if ":" in address else address
                async with open_raw_websocket(f"ws://{host}:{port}") as ws:
                    registration = WorkerRegistration(f"w{n}", ("t",), 1, "Python")
                    await ws.send_message(encode(WorkerRegister(registration)))
                    assert decode(await ws.get_message()) == WorkerRegistered(f"w{n}")


@pytest.mark.slow
@pytest.mark.skipif(
    sorted(LOCALHOST) != ["127.0.0.1", "::1"],
    reason=f"localhost resolves to {LOCALHOST} here (socket.getaddrinfo, SOCK_STREAM, "
    "AI_PASSIVE); this test needs it to resolve to 127.0.0.1 and ::1",
)
async def test_listeners_on_a_host_with_two_addresses_report_every_port() -> None:
    await _register_on_each_listener(LOCALHOST)


class _BothLoopbacks(trio.abc.HostnameResolver):
    """``localhost`` is 127.0.0.1 and ::1, as on a dual-stack machine; other names are
    resolved as usual."""

    async def getaddrinfo(
        self,
        host: bytes | None,
        port: bytes | str | int | None,
        family: int = 0,
        type: int = 0,
        proto: int = 0,
        flags: int = 0,
    ) -> list[Any]:
        if host in (b"localhost", "localhost"):
            number = int(port or 0)
            return [
                (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", number)),
                (socket.AF_INET6, socket.SOCK_STREAM, 6, "", ("::1", number, 0, 0)),
            ]
        return await trio.to_thread.run_sync(
            socket.getaddrinfo, host, port, family, type, proto, flags
        )

    async def getnameinfo(self, sockaddr: Any, flags: int) -> tuple[str, str]:
        return await trio.to_thread.run_sync(socket.getnameinfo, sockaddr, flags)


def _can_bind_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.slow
@pytest.mark.skipif(not _can_bind_ipv6_loopback(), reason="no IPv6 loopback (::1) here")
async def test_listeners_report_every_port_wherever_localhost_has_two_addresses() -> None:
    # The same rule on any machine with an IPv6 loopback, whatever its resolver says.
    trio.socket.set_custom_hostname_resolver(_BothLoopbacks())
    await _register_on_each_listener(["127.0.0.1", "::1"])
