"""Limits at the edge (docs/limits.md), each over a real socket: what a client that
does not play by the rules can cost the dispatcher, and what it gets for it."""

from __future__ import annotations

import socket
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import pytest
import trio
import trio.testing

import trio_pipe
from trio_pipe import EventStream, Task, TaskStatus, WorkerEvent, WorkerEventKind
from trio_pipe.protocol import (
    Heartbeat,
    HeartbeatPayload,
    TaskResult,
    TaskResultMessage,
    WorkerRegister,
    WorkerRegistered,
    WorkerRegistration,
    decode,
    encode,
)
from trio_pipe.testing import connect_memory_worker
from trio_pipe.transports._websocket import (
    WebSocketClosed,
    WebSocketStream,
    connect_websocket,
)

WAIT = 10  # seconds: a generous bound on what should take milliseconds


@asynccontextmanager
async def raw_worker(port: int) -> AsyncIterator[WebSocketStream]:
    """A WebSocket connection to the dispatcher that sends only what the test says."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    ws = await connect_websocket(stream, f"ws://127.0.0.1:{port}/")
    try:
        yield ws
    finally:
        with trio.move_on_after(1, shield=True):
            await ws.aclose()


def register(worker_id: str, tasks: tuple[str, ...] = ("t",), **options: Any) -> str:
    return encode(WorkerRegister(WorkerRegistration(worker_id, tasks, **options)))


async def registered(port: int, worker_id: str, **options: Any) -> WebSocketStream:
    """A raw worker registered (it has its WorkerRegistered); the caller closes it."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    ws = await connect_websocket(stream, f"ws://127.0.0.1:{port}/")
    await ws.send_all([register(worker_id, **options)])
    message = decode(await ws.receive())
    assert message == WorkerRegistered(worker_id=worker_id)
    return ws


async def closed_with(ws: WebSocketStream) -> WebSocketClosed:
    with trio.fail_after(WAIT), pytest.raises(WebSocketClosed) as closed:
        while True:
            await ws.receive()
    return closed.value


async def gone(events: EventStream, worker_id: str) -> None:
    """Wait (bounded) until *worker_id*'s session has ended."""
    with trio.fail_after(WAIT):
        async for event in events:
            if (
                isinstance(event, WorkerEvent)
                and event.worker_id == worker_id
                and event.kind is WorkerEventKind.DEAD
            ):
                return


def logged(caplog: pytest.LogCaptureFixture, text: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if text in r.getMessage()]


# -- the handshake -------------------------------------------------------------------


async def test_the_handshake_timeout_is_a_setting(caplog: pytest.LogCaptureFixture) -> None:
    async with trio_pipe.open_dispatcher(handshake_timeout=0.2) as d:
        async with await trio.open_tcp_stream("127.0.0.1", d.port) as stream:
            started = trio.current_time()
            with trio.fail_after(WAIT):
                assert await stream.receive_some() == b""  # closed on us
            assert trio.current_time() - started >= 0.2
    (line,) = logged(caplog, "no WebSocket handshake within 0.2 s")
    assert "(ws://127.0.0.1:" in line


async def test_a_flood_of_failing_handshakes_is_logged_once_per_episode(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with trio_pipe.open_dispatcher() as d:
        for _ in range(5):
            async with await trio.open_tcp_stream("127.0.0.1", d.port) as stream:
                await stream.send_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                with trio.fail_after(WAIT):
                    while await stream.receive_some():
                        pass
        await (await registered(d.port, "w")).aclose()  # a handshake that works ends it
        async with await trio.open_tcp_stream("127.0.0.1", d.port) as stream:
            await stream.send_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            with trio.fail_after(WAIT):
                while await stream.receive_some():
                    pass
    begun = logged(caplog, "WebSocket handshakes fail (ws://127.0.0.1:")
    assert len(begun) == 2 and all("logged once until it stops" in b for b in begun)
    assert logged(caplog, "WebSocket handshakes fail: stopped after 5 times")


# -- how many connections --------------------------------------------------------------


async def test_beyond_max_connections_a_new_connection_is_closed_at_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with trio_pipe.open_dispatcher(max_connections=2) as d, d.events() as events:
        workers = [await registered(d.port, f"w{i}") for i in range(2)]
        for _ in range(3):
            async with await trio.open_tcp_stream("127.0.0.1", d.port) as stream:
                with trio.fail_after(WAIT):
                    assert await stream.receive_some() == b""
        await workers[0].aclose()
        await gone(events, "w0")
        replacement = await registered(d.port, "w2")  # room again
        for ws in [*workers[1:], replacement]:
            await ws.aclose()
    # Three refusals, one episode: logged when it began and when it ended.
    assert len(logged(caplog, "too many connections: new ones closed at once")) == 2
    (begun,) = logged(caplog, "logged once until it stops")
    assert "ws://127.0.0.1:" in begun and "the limit is 2" in begun
    assert logged(caplog, "stopped after 3 times")


async def test_idle_connections_beyond_max_unregistered_shed_the_oldest(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with trio_pipe.open_dispatcher(max_unregistered=3) as d:
        idle = [await trio.open_tcp_stream("127.0.0.1", d.port) for _ in range(5)]
        with trio.fail_after(WAIT):  # the two oldest make room for the three newest
            assert await idle[0].receive_some() == b""
            assert await idle[1].receive_some() == b""
        ws = await registered(d.port, "late")  # sheds the next oldest, idle[2]
        with trio.fail_after(WAIT):
            assert await idle[2].receive_some() == b""
        await ws.aclose()
        for stream in idle:
            await stream.aclose()
    assert len(logged(caplog, "the oldest without a message closed")) == 1


async def test_idle_connections_filling_max_connections_cannot_keep_a_worker_out() -> None:
    async with trio_pipe.open_dispatcher(max_connections=4) as d:
        idle = [await trio.open_tcp_stream("127.0.0.1", d.port) for _ in range(10)]
        ws = await registered(d.port, "w")
        assert [w.worker_id for w in d.workers()] == ["w"]
        await ws.aclose()
        for stream in idle:
            await stream.aclose()


# -- what a frame may hold -------------------------------------------------------------


async def test_json_nested_beyond_max_json_depth_closes_with_1008(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with trio_pipe.open_dispatcher(max_json_depth=8) as d:
        ws = await registered(d.port, "w")
        await ws.send_all(['{"type":"Heartbeat","payload":' + "[" * 9 + "]" * 9 + "}"])
        closed = await closed_with(ws)
        await ws.aclose()
    assert (closed.code, closed.reason) == (
        1008,
        "JSON nested too deeply (more than 8 levels)",
    )
    assert len(logged(caplog, "nested too deeply")) == 1


LIMITED = {
    "max_task_types": 4,
    "max_tags": 2,
    "max_name_length": 10,
    "max_worker_concurrency": 100,
}


@pytest.mark.parametrize(
    ("options", "reason"),
    [
        (
            {"supported_tasks": tuple("abcde")},
            "registration declares 5 task types (the limit is 4)",
        ),
        (
            {"supported_tasks": ("t", "x" * 11)},
            "registration declares a name of 11 characters among its task types, "
            "'xxxxxxxxxxx'... (the limit is 10)",
        ),
        (
            {"supported_tasks": ("t",), "tags": ("a", "b", "c")},
            "registration declares 3 tags (the limit is 2)",
        ),
        (
            {"supported_tasks": ("t",), "tags": ("g" * 11,)},
            "registration declares a name of 11 characters among its tags, "
            "'ggggggggggg'... (the limit is 10)",
        ),
        (
            {"supported_tasks": ("t",), "max_concurrency": 1_000_000_000},
            "registration declares maxConcurrency 1000000000 (the limit is 100)",
        ),
        (
            {
                "supported_tasks": ("t",),
                "max_concurrency": 5,
                "max_concurrency_by_type": {k: 1 for k in "abcde"},
            },
            "registration declares 5 per-type limits (the limit is 4)",
        ),
    ],
    ids=["types", "type-length", "tags", "tag-length", "concurrency", "per-type"],
)
async def test_a_registration_beyond_a_limit_is_refused_with_1008_and_why(
    options: dict[str, Any], reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with trio_pipe.open_dispatcher(**LIMITED) as d:
        async with raw_worker(d.port) as ws:
            registration = WorkerRegistration("greedy", **options)
            await ws.send_all([encode(WorkerRegister(registration))])
            closed = await closed_with(ws)
        assert d.workers() == []
    assert (closed.code, closed.reason) == (1008, reason)
    (line,) = logged(caplog, reason)
    assert line.startswith("connection from ws://127.0.0.1:")


async def test_a_registration_at_every_limit_is_accepted() -> None:
    async with trio_pipe.open_dispatcher(**LIMITED) as d:
        ws = await registered(
            d.port,
            "w",
            tasks=("a" * 10, "b", "c", "d"),
            tags=("x" * 10, "y"),
            max_concurrency=100,
        )
        await ws.aclose()


# -- constant work per message -----------------------------------------------------------


def count_lines(call: Callable[[], object]) -> int:
    """How many lines of trio_pipe's own code *call* runs: a measure of its work that
    no clock or machine load changes."""
    count = 0

    def tracer(frame: Any, event: str, arg: Any) -> Any:
        nonlocal count
        if "trio_pipe" not in frame.f_code.co_filename:
            return None
        if event == "line":
            count += 1
        return tracer

    sys.settrace(tracer)
    try:
        call()
    finally:
        sys.settrace(None)
    return count


async def test_a_heartbeat_and_a_result_cost_the_same_whatever_the_registration_declares(
    autojump_clock: object,
) -> None:
    cap = 20_000
    costs: dict[int, tuple[int, int]] = {}
    for declared in (1, cap):
        async with trio_pipe.open_dispatcher(port=None, max_task_types=cap) as d:
            types = ("t", *(f"type-{i}" for i in range(declared - 1)))
            worker = await connect_memory_worker(d, "w", types, max_concurrency=1)
            await d.submit(Task.new("t", 0))
            await d.submit(Task.new("t", 1))  # queued behind it
            dispatch = await worker.receive_task()
            scheduler = d._scheduler
            record = scheduler.pool.get("w")
            assert record is not None
            beat = Heartbeat(HeartbeatPayload("w", active_tasks=1, capacity=1))
            scheduler.on_message(record, beat)  # (the codec's first use builds code)
            heartbeat = count_lines(partial(scheduler.on_message, record, beat))
            done = TaskResultMessage(
                TaskResult(dispatch.task.id, TaskStatus.COMPLETED, worker_id="w")
            )
            # A result frees the slot: the queued task is sent in the same step.
            result = count_lines(partial(scheduler.on_message, record, done))
            costs[declared] = (heartbeat, result)
            await worker.aclose()
    assert costs[cap] == costs[1]


# -- remembered dead workers -----------------------------------------------------------


async def test_a_dead_workers_record_keeps_only_a_summary(autojump_clock: object) -> None:
    async with trio_pipe.open_dispatcher(port=None) as d, d.events() as events:
        types = tuple(f"type-{i}" for i in range(1000))
        worker = await connect_memory_worker(d, "w", types, tags=("a",) * 20)
        (live,) = d.workers()
        assert len(live.supported_tasks) == 1000 and live.task_type_count == 1000
        await worker.aclose()
        await gone(events, "w")
        (dead,) = d.workers()
    assert dead.supported_tasks == types[:16] and dead.tags == ("a",) * 16
    assert dead.task_type_count == 1000


# -- memory buffered per connection ------------------------------------------------------


async def test_a_worker_that_does_not_read_is_disconnected_at_max_outbox_size(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with (
        trio_pipe.open_dispatcher(max_outbox_size=2_000_000) as d,
        d.events() as events,
    ):
        # A small receive buffer, set before connecting: the kernel's own buffering
        # (autotuned up to tens of MiB on loopback) cannot hide that it never reads.
        sock = trio.socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        await sock.connect(("127.0.0.1", d.port))
        async with trio.SocketStream(sock) as stream:
            ws = await connect_websocket(stream, f"ws://127.0.0.1:{d.port}/")
            await ws.send_all([register("deaf", max_concurrency=1000)])
            payload = "x" * 100_000
            # It never reads again: what is sent to it piles up once the socket is full.
            for _ in range(300):
                await d.submit(Task.new("t", payload, max_retries=0))
            await gone(events, "deaf")
            (info,) = d.workers()
    assert info.close_reason == "more than 2000000 characters queued for it, unread"
    (line,) = logged(caplog, "does not read")
    assert "worker deaf at ws://127.0.0.1:" in line


# -- black holes -----------------------------------------------------------------------


async def test_a_task_whose_deadline_passes_on_a_worker_is_retried_on_another(
    autojump_clock: object,
) -> None:
    async with trio_pipe.open_dispatcher(port=None) as d:
        silent = await connect_memory_worker(d, "silent", ["t"], max_concurrency=100)
        handle = await d.submit(Task.new("t", 1, timeout_ms=1000))
        assert (await silent.receive_task()).task.id == handle.id
        good = await connect_memory_worker(d, "good", ["t"])
        await trio.sleep(1)
        dispatch = await good.receive_task()
        assert dispatch.task.id == handle.id and dispatch.task.metadata.retry_count == 1
        assert dispatch.task.metadata.timeout_ms == 1000  # its timeout, anew
        await good.complete(dispatch, "done")
        assert await handle.value() == "done"
        (attempt,) = handle.attempts[:1]
        assert attempt.worker_id == "silent" and attempt.status is TaskStatus.TIMED_OUT
        await silent.aclose()
        await good.aclose()


async def test_a_retry_never_goes_back_to_the_worker_still_holding_its_slot(
    autojump_clock: object,
) -> None:
    # "silent" keeps the slot of the try it was given up on until it lets it go: with
    # a free slot beside it, it is still no place for the retry, which waits instead.
    async with trio_pipe.open_dispatcher(port=None) as d:
        silent = await connect_memory_worker(d, "silent", ["t"], max_concurrency=2)
        busy = await connect_memory_worker(d, "busy", ["t"])
        blocking = await d.dispatch_to("busy", Task.new("t", "v"))
        first = await busy.receive_task()
        handle = await d.submit(Task.new("t", 1, timeout_ms=1000))
        assert (await silent.receive_task()).task.id == handle.id
        await trio.sleep(1.5)
        assert handle.status is TaskStatus.PENDING  # queued, not back on "silent"
        await busy.complete(first, "v")
        await blocking.result()
        retry = await busy.receive_task()
        assert retry.task.id == handle.id and retry.task.metadata.retry_count == 1
        await busy.complete(retry, "done")
        assert await handle.value() == "done"
        await silent.aclose()
        await busy.aclose()


async def test_a_worker_freeing_a_slot_skips_a_queued_retry_it_still_holds(
    autojump_clock: object,
) -> None:
    async with trio_pipe.open_dispatcher(port=None) as d:
        silent = await connect_memory_worker(d, "silent", ["t"], max_concurrency=2)
        busy = await connect_memory_worker(d, "busy", ["t"])
        blocking = await d.dispatch_to("busy", Task.new("t", "v", timeout_ms=60_000))
        first = await busy.receive_task()
        handle = await d.submit(Task.new("t", 1, timeout_ms=1000))
        other = await d.submit(Task.new("t", 2, timeout_ms=60_000))
        assert (await silent.receive_task()).task.id == handle.id
        other_dispatch = await silent.receive_task()
        await trio.sleep(1.5)  # "handle" timed out on "silent": queued for a retry
        await silent.complete(other_dispatch, 2)  # a slot frees beside the held one
        assert await other.value() == 2
        await trio.testing.wait_all_tasks_blocked()
        assert handle.status is TaskStatus.PENDING
        await busy.complete(first, "v")
        await blocking.result()
        retry = await busy.receive_task()
        assert retry.task.id == handle.id
        await busy.complete(retry, "done")
        assert await handle.value() == "done"
        await silent.aclose()
        await busy.aclose()


async def test_a_timed_out_task_with_no_retries_left_resolves_timed_out(
    autojump_clock: object,
) -> None:
    async with trio_pipe.open_dispatcher(port=None) as d:
        silent = await connect_memory_worker(d, "silent", ["t"])
        other = await connect_memory_worker(d, "other", ["t"])
        handle = await d.submit(Task.new("t", 1, timeout_ms=1000, max_retries=0))
        await trio.sleep(1)
        result = await handle.result()
        assert result.status is TaskStatus.TIMED_OUT
        assert trio.current_time() == pytest.approx(1)
        await silent.aclose()
        await other.aclose()


async def test_a_worker_whose_tasks_time_out_k_times_in_a_row_is_drained(
    autojump_clock: object, caplog: pytest.LogCaptureFixture
) -> None:
    async with trio_pipe.open_dispatcher(
        port=None, max_consecutive_timeouts=2, heartbeat_timeout=1000
    ) as d:
        async with d.events() as events:
            hole = await connect_memory_worker(d, "hole", ["t"], max_concurrency=100)
            good = await connect_memory_worker(d, "good", ["t"])
            # One result in between starts the count again.
            first = await d.dispatch_to("hole", Task.new("t", 0, timeout_ms=1000))
            await hole.receive_task()
            await trio.sleep(1.5)
            answered = await d.dispatch_to("hole", Task.new("t", 1))
            await hole.complete(await hole.receive_task(), "ok")
            await answered.result()
            handles = [
                await d.dispatch_to("hole", Task.new("t", i, timeout_ms=1000))
                for i in range(2)
            ]
            assert d.workers()[0].state is trio_pipe.WorkerState.ACTIVE
            for handle in [first, *handles]:
                assert (await handle.result()).status is TaskStatus.TIMED_OUT
            states = {w.worker_id: w.state for w in d.workers()}
            assert states == {
                "hole": trio_pipe.WorkerState.DRAINING,
                "good": trio_pipe.WorkerState.ACTIVE,
            }
            events.close()  # iteration ends once the buffered events are consumed
            seen = [
                (e.kind, e.reason)
                async for e in events
                if isinstance(e, WorkerEvent) and e.worker_id == "hole"
            ]
        assert (WorkerEventKind.DRAINING, "2 tasks in a row timed out on it") in seen
        await hole.aclose()
        await good.aclose()
    (line,) = logged(caplog, "tasks in a row timed out")
    assert line.startswith("worker hole at ") and line.endswith("drained")
