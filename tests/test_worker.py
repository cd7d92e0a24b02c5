"""The Python worker SDK, driven by a scripted dispatcher.

Real-socket tests bound every wait with ``trio.fail_after(WAIT)``; timing rules run
over in-memory streams with the autojump clock.
"""

from __future__ import annotations

import itertools
import logging
import random
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import attrs
import pytest
import trio
import trio.testing
from _scripted_dispatcher import Controlled, GatedConnection, Peer, ScriptedDispatcher
from trio_websocket import ConnectionClosed

from trio_pipe._backoff import backoff_delay
from trio_pipe._typed import TaskSpec
from trio_pipe.protocol import (
    Backpressure,
    BackpressureSignal,
    Heartbeat,
    HeartbeatPayload,
    Kill,
    Shutdown,
    TaskDispatch,
    TaskError,
    TaskResultMessage,
    TaskStatus,
    WorkerRegister,
    WorkerRegistered,
    WorkerRegistration,
    validate_worker_id,
)
from trio_pipe.transports import FrameChannel
from trio_pipe.worker import (
    Handlers,
    TaskFailure,
    WorkerConnectionError,
    current_task,
    default_worker_id,
    run_worker,
)
from trio_pipe.worker._worker import run_worker_on

WAIT = 10  # seconds; a generous bound on every real-time wait


# -- handlers used by the tests --------------------------------------------------------


@attrs.frozen
class ScanReport:
    url: str
    links: int


@attrs.frozen
class ScanTarget(TaskSpec[ScanReport], task_type="scan"):
    url: str
    depth: int = 1


def make_handlers(block: Controlled | None = None) -> Handlers:
    handlers = Handlers()

    @handlers.handler("echo")
    async def echo(payload: Any) -> Any:
        return payload

    @handlers.handler("boom")
    async def boom(payload: Any) -> Any:
        raise ValueError(f"bad input {payload!r}")

    @handlers.handler("refuse")
    async def refuse(payload: Any) -> Any:
        raise TaskFailure("BAD_INPUT", "url must be absolute", retryable=False)

    @handlers.handler("not-json")
    async def not_json(payload: Any) -> Any:
        return {1, 2}

    @handlers.handler("not-unicode")
    async def not_unicode(payload: Any) -> Any:
        return {"text": "half a pair: \ud800"}

    @handlers.handler("whoami")
    async def whoami(payload: Any) -> Any:
        return str(current_task().id)

    @handlers.typed(ScanTarget)
    async def scan(target: ScanTarget) -> ScanReport:
        assert isinstance(target, ScanTarget)
        return ScanReport(url=target.url, links=10 * target.depth)

    if block is not None:
        handlers.add("block", block)
    return handlers


async def start_worker(
    nursery: trio.Nursery, dispatcher: ScriptedDispatcher, **kwargs: Any
) -> tuple[Peer, trio.Event]:
    """Serve *dispatcher*, start ``run_worker`` against it; return the registered peer
    and an event set when ``run_worker`` returns."""
    url = await dispatcher.serve(nursery)
    kwargs.setdefault("handlers", make_handlers())
    kwargs.setdefault("worker_id", "w-1")
    returned = trio.Event()

    async def worker(task_status: trio.TaskStatus[None]) -> None:
        await run_worker(url, task_status=task_status, **kwargs)
        returned.set()

    await nursery.start(worker)
    return await dispatcher.peers.receive(), returned


async def start_memory_worker(
    nursery: trio.Nursery, dispatcher: ScriptedDispatcher, **kwargs: Any
) -> Peer:
    """``run_worker_on`` over in-memory trio-websocket (for the autojump clock)."""
    connect = dispatcher.memory_connector(
        nursery, connections=kwargs.pop("connections", None)
    )
    kwargs.setdefault("worker_id", "w-mem")
    handlers = kwargs.pop("handlers", None) or make_handlers()
    await nursery.start(partial(run_worker_on, connect, handlers, **kwargs))
    return await dispatcher.peers.receive()


# -- registration ----------------------------------------------------------------------


async def test_registration_carries_id_tasks_capacity_language_and_tags(
    nursery: trio.Nursery,
) -> None:
    with trio.fail_after(WAIT):
        peer, _ = await start_worker(
            nursery, ScriptedDispatcher(), max_concurrency=3, tags=("gpu", "eu")
        )
    assert peer.registration == WorkerRegistration(
        worker_id="w-1",
        supported_tasks=(
            "echo",
            "boom",
            "refuse",
            "not-json",
            "not-unicode",
            "whoami",
            "scan",
        ),
        max_concurrency=3,
        language="Python",
        tags=("gpu", "eu"),
    )


async def test_started_only_after_registration_is_acknowledged(
    nursery: trio.Nursery,
) -> None:
    dispatcher = ScriptedDispatcher(answer_registration=False)
    url = await dispatcher.serve(nursery)
    started = trio.Event()

    async def start() -> None:
        await nursery.start(partial(run_worker, url, make_handlers(), worker_id="w-1"))
        started.set()

    with trio.fail_after(WAIT):
        nursery.start_soon(start)
        peer = await dispatcher.peers.receive()
        await peer.register()  # reads WorkerRegister, then answers
        await started.wait()


async def test_started_waits_for_the_dispatchers_answer(nursery: trio.Nursery) -> None:
    dispatcher = ScriptedDispatcher(answer_registration=False)
    url = await dispatcher.serve(nursery)
    started = trio.Event()

    async def start() -> None:
        await nursery.start(partial(run_worker, url, make_handlers(), worker_id="w-1"))
        started.set()

    with trio.fail_after(WAIT):
        nursery.start_soon(start)
        peer = await dispatcher.peers.receive()
        await peer.ws.get_message()  # WorkerRegister, unanswered
        await trio.testing.wait_all_tasks_blocked()
        assert not started.is_set()


async def test_default_worker_id_is_generated_valid_and_stable_per_worker(
    nursery: trio.Nursery,
) -> None:
    with trio.fail_after(WAIT):
        peer, _ = await start_worker(nursery, ScriptedDispatcher(), worker_id=None)
    assert peer.registration is not None
    worker_id = peer.registration.worker_id
    assert worker_id.startswith("py-")
    assert validate_worker_id(worker_id) == worker_id
    assert default_worker_id() != default_worker_id()


async def test_a_task_before_workerregistered_accepts_the_registration(
    nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    # A rust-pipe 0.1 dispatcher never sends WorkerRegistered: it dispatches at once.
    caplog.set_level(logging.DEBUG, logger="trio_pipe.worker")
    dispatcher = ScriptedDispatcher(answer_registration=False)
    url = await dispatcher.serve(nursery)
    started = trio.Event()

    async def start() -> None:
        await nursery.start(partial(run_worker, url, make_handlers(), worker_id="w-1"))
        started.set()

    with trio.fail_after(WAIT):
        nursery.start_soon(start)
        peer = await dispatcher.peers.receive()
        await peer.next(WorkerRegister)
        result = await peer.run("echo", {"n": 1})
        await started.wait()
    assert (result.status, result.payload) == (TaskStatus.COMPLETED, {"n": 1})
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert any("before WorkerRegistered" in r.getMessage() for r in caplog.records)


async def test_a_dispatcher_that_never_answers_is_served_after_connect_timeout(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    # An idle rust-pipe 0.1 dispatcher sends nothing at all after WorkerRegister: the
    # worker keeps the connection, and heartbeats at once so as not to be declared dead.
    dispatcher = ScriptedDispatcher(answer_registration=False)
    connect = dispatcher.memory_connector(nursery)
    start = trio.current_time()
    run = partial(run_worker_on, connect, make_handlers(), worker_id="w-mem")
    await nursery.start(
        partial(run, reconnect=False, connect_timeout=3.0, heartbeat_interval=5.0)
    )
    assert trio.current_time() - start == pytest.approx(3.0)
    peer = await dispatcher.peers.receive()
    await peer.next(WorkerRegister)
    times = []
    for _ in range(2):
        await peer.next(Heartbeat, skip=())
        times.append(trio.current_time() - start)
    assert times == pytest.approx([3.0, 8.0])
    result = await peer.run("echo", "still here")
    assert (result.status, result.payload) == (TaskStatus.COMPLETED, "still here")
    with pytest.raises(trio.WouldBlock):
        dispatcher.peers.receive_nowait()  # no second connection


class _StuckConnection:
    """A connection on which nothing is ever written or read."""

    peer = "stuck"
    lenient = False

    async def send_all(self, frames: Sequence[str]) -> None:
        await trio.sleep_forever()

    async def receive(self) -> str:
        await trio.sleep_forever()
        raise AssertionError("unreachable")

    async def aclose(self, reason: str = "", *, protocol_error: bool = False) -> None:
        pass


async def test_a_registration_that_cannot_be_written_fails_after_connect_timeout(
    autojump_clock: trio.testing.MockClock,
) -> None:
    @asynccontextmanager
    async def connect() -> AsyncIterator[FrameChannel]:
        yield _StuckConnection()

    start = trio.current_time()
    with pytest.raises(
        WorkerConnectionError, match="could not send WorkerRegister within 3 s"
    ):
        await run_worker_on(connect, make_handlers(), reconnect=False, connect_timeout=3.0)
    assert trio.current_time() - start == pytest.approx(3.0)


# -- heartbeats ------------------------------------------------------------------------


async def test_heartbeats_are_sent_at_the_interval(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    peer = await start_memory_worker(
        nursery, ScriptedDispatcher(), heartbeat_interval=5.0, max_concurrency=4
    )
    registered_at = trio.current_time()
    times, payloads = [], []
    for _ in range(3):
        message = await peer.receive()
        assert isinstance(message, Heartbeat)
        times.append(trio.current_time() - registered_at)
        payloads.append(message.payload)
    assert times == pytest.approx([5.0, 10.0, 15.0])
    assert [p.uptime_seconds for p in payloads] == [5, 10, 15]
    assert {(p.worker_id, p.active_tasks, p.capacity) for p in payloads} == {
        ("w-mem", 0, 4)
    }


async def test_heartbeat_reports_active_tasks(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    block = Controlled()
    peer = await start_memory_worker(
        nursery, ScriptedDispatcher(), handlers=make_handlers(block), heartbeat_interval=1
    )
    await peer.dispatch("block", {"key": "a"})
    await block.started["a"].wait()
    heartbeat = await peer.next(Heartbeat, skip=(Backpressure,))
    assert heartbeat.payload.active_tasks == 1


# -- outcomes --------------------------------------------------------------------------


async def test_echo_task_completes_with_its_payload(nursery: trio.Nursery) -> None:
    with trio.fail_after(WAIT):
        peer, _ = await start_worker(nursery, ScriptedDispatcher())
        result = await peer.run("echo", {"text": "héllo", "n": [1, 2]})
    assert result.status is TaskStatus.COMPLETED
    assert result.payload == {"text": "héllo", "n": [1, 2]}
    assert result.error is None
    assert result.worker_id == "w-1"
    assert result.duration_ms >= 0


async def test_plain_dict_of_handlers_is_accepted(nursery: trio.Nursery) -> None:
    async def double(payload: Any) -> Any:
        return payload * 2

    with trio.fail_after(WAIT):
        peer, _ = await start_worker(
            nursery, ScriptedDispatcher(), handlers={"double": double}
        )
        result = await peer.run("double", 21)
    assert peer.registration is not None
    assert peer.registration.supported_tasks == ("double",)
    assert (result.status, result.payload) == (TaskStatus.COMPLETED, 42)


async def test_raising_handler_fails_the_task_as_retryable_handler_error(
    nursery: trio.Nursery,
) -> None:
    with trio.fail_after(WAIT):
        peer, _ = await start_worker(nursery, ScriptedDispatcher())
        result = await peer.run("boom", "x")
    assert result.status is TaskStatus.FAILED
    assert result.error == TaskError("HANDLER_ERROR", "ValueError: bad input 'x'", True)
    assert result.payload is None


async def test_task_failure_sets_the_error_code(nursery: trio.Nursery) -> None:
    with trio.fail_after(WAIT):
        peer, _ = await start_worker(nursery, ScriptedDispatcher())
        result = await peer.run("refuse")
    assert result.status is TaskStatus.FAILED
    assert result.error == TaskError("BAD_INPUT", "url must be absolute", False)


async def test_unknown_task_type_fails_not_retryable(nursery: trio.Nursery) -> None:
    with trio.fail_after(WAIT):
        peer, _ = await start_worker(nursery, ScriptedDispatcher())
        result = await peer.run("nope")
    assert result.status is TaskStatus.FAILED
    assert result.error == TaskError(
        "UNKNOWN_TASK_TYPE", "no handler for task type 'nope'", False
    )


async def test_non_json_result_fails_with_parse_error(nursery: trio.Nursery) -> None:
    with trio.fail_after(WAIT):
        peer, _ = await start_worker(nursery, ScriptedDispatcher())
        result = await peer.run("not-json")
    assert result.status is TaskStatus.FAILED
    assert result.error is not None
    assert (result.error.code, result.error.retryable) == ("PARSE_ERROR", False)
    assert result.error.message.startswith("result payload is not JSON: ")


async def test_a_result_that_is_not_unicode_fails_and_loses_nothing(
    nursery: trio.Nursery,
) -> None:
    with trio.fail_after(WAIT):
        peer, _ = await start_worker(nursery, ScriptedDispatcher())
        result = await peer.run("not-unicode")
        assert await peer.run("echo", "still connected") is not None
    assert result.status is TaskStatus.FAILED
    assert result.error is not None
    assert result.error.code == "PARSE_ERROR"
    assert "lone surrogate U+D800" in result.error.message


async def test_handler_sees_its_task_through_current_task(nursery: trio.Nursery) -> None:
    with trio.fail_after(WAIT):
        peer, _ = await start_worker(nursery, ScriptedDispatcher())
        task = await peer.dispatch("whoami")
        result = await peer.result()
    assert result.payload == str(task.id)


# -- typed handlers --------------------------------------------------------------------


async def test_typed_handler_structures_payload_and_unstructures_result(
    nursery: trio.Nursery,
) -> None:
    with trio.fail_after(WAIT):
        peer, _ = await start_worker(nursery, ScriptedDispatcher())
        task = ScanTarget(url="https://example.org", depth=3).to_task()
        await peer.send(TaskDispatch(task))
        result = await peer.result()
    assert result.status is TaskStatus.COMPLETED
    assert result.payload == {"url": "https://example.org", "links": 30}
    assert ScanTarget.structure_result(result.payload) == ScanReport(
        "https://example.org", 30
    )


async def test_typed_handler_rejects_a_bad_payload_with_parse_error(
    nursery: trio.Nursery,
) -> None:
    with trio.fail_after(WAIT):
        peer, _ = await start_worker(nursery, ScriptedDispatcher())
        wrong_field = await peer.run("scan", {"url": 5, "depth": "deep"})
        not_object = await peer.run("scan", [1, 2])
    assert wrong_field.status is TaskStatus.FAILED
    assert wrong_field.error == TaskError(
        "PARSE_ERROR",
        "payload does not match ScanTarget: expected str, got int @ payload.url; "
        "expected int, got str @ payload.depth",
        False,
    )
    assert not_object.error == TaskError(
        "PARSE_ERROR",
        "payload does not match ScanTarget: expected a JSON object, got list",
        False,
    )


# -- deadlines, kills, capacity --------------------------------------------------------


async def test_deadline_times_out_the_task_and_cancels_the_handler(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    block = Controlled()
    peer = await start_memory_worker(
        nursery, ScriptedDispatcher(), handlers=make_handlers(block)
    )
    sent_at = trio.current_time()
    task = await peer.dispatch("block", {"key": "slow"}, timeout_ms=2_000)
    result = await peer.result()
    assert result.task_id == task.id
    assert result.status is TaskStatus.TIMED_OUT
    assert result.error == TaskError(
        "TIMEOUT", "task exceeded its timeout of 2000 ms", True
    )
    assert result.duration_ms == 2_000
    assert trio.current_time() - sent_at == pytest.approx(2.0)
    assert block.cancelled["slow"].is_set()


async def test_deadlines_expire_each_at_its_own_time_whatever_the_order(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    # One heap holds every deadline: a later dispatch with an earlier deadline, many
    # finished tasks left in the heap, and an expired deadline at receipt.
    block = Controlled()
    peer = await start_memory_worker(
        nursery, ScriptedDispatcher(), handlers=make_handlers(block)
    )
    sent_at = trio.current_time()
    slow = await peer.dispatch("block", {"key": "slow"}, timeout_ms=5_000)
    quick = await peer.dispatch("block", {"key": "quick"}, timeout_ms=1_000)
    for i in range(150):
        assert (await peer.run("echo", i)).status is TaskStatus.COMPLETED
    now = await peer.run("echo", "now", timeout_ms=0)
    assert now.status is TaskStatus.TIMED_OUT
    assert now.error == TaskError("TIMEOUT", "task exceeded its timeout of 0 ms", True)
    first = await peer.result()
    assert (first.task_id, first.status) == (quick.id, TaskStatus.TIMED_OUT)
    assert trio.current_time() - sent_at == pytest.approx(1.0)
    second = await peer.result()
    assert (second.task_id, second.status) == (slow.id, TaskStatus.TIMED_OUT)
    assert trio.current_time() - sent_at == pytest.approx(5.0)
    assert block.cancelled["quick"].is_set() and block.cancelled["slow"].is_set()


async def test_a_handler_done_before_its_deadline_is_not_cancelled_later(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    block = Controlled()
    peer = await start_memory_worker(
        nursery, ScriptedDispatcher(), handlers=make_handlers(block)
    )
    task = await peer.dispatch("block", {"key": "a"}, timeout_ms=1_000)
    await block.started["a"].wait()
    block.release["a"].set()
    result = await peer.result()
    assert (result.task_id, result.status) == (task.id, TaskStatus.COMPLETED)
    await trio.sleep(2)  # its deadline passes: nothing more is sent
    assert (await peer.run("echo", 1)).status is TaskStatus.COMPLETED
    assert not block.cancelled["a"].is_set()


async def test_kill_cancels_the_task_with_the_kill_reason(nursery: trio.Nursery) -> None:
    block = Controlled()
    with trio.fail_after(WAIT):
        peer, _ = await start_worker(
            nursery, ScriptedDispatcher(), handlers=make_handlers(block)
        )
        task = await peer.dispatch("block", {"key": "k"})
        await block.started["k"].wait()
        await peer.send(Kill(task_id=task.id, reason="user pressed stop"))
        result = await peer.result()
    assert result.task_id == task.id
    assert result.status is TaskStatus.CANCELLED
    assert result.error == TaskError("KILLED", "user pressed stop", False)
    assert block.cancelled["k"].is_set()


async def test_kill_for_an_unknown_task_is_ignored(nursery: trio.Nursery) -> None:
    with trio.fail_after(WAIT):
        peer, _ = await start_worker(nursery, ScriptedDispatcher())
        await peer.send(Kill(task_id=uuid.uuid4(), reason="stale"))
        result = await peer.run("echo", 1)
    assert result.status is TaskStatus.COMPLETED


async def test_duplicate_dispatch_of_a_running_task_is_ignored(
    nursery: trio.Nursery,
) -> None:
    block = Controlled()
    with trio.fail_after(WAIT):
        peer, _ = await start_worker(
            nursery, ScriptedDispatcher(), handlers=make_handlers(block)
        )
        task = await peer.dispatch("block", {"key": "d"})
        await block.started["d"].wait()
        await peer.send(TaskDispatch(task))
        echo = await peer.run("echo", "after the duplicate")
        block.release["d"].set()
        first = await peer.result()
        second = await peer.run("echo", "nothing in between")
    assert echo.payload == "after the duplicate"
    assert (first.task_id, first.status) == (task.id, TaskStatus.COMPLETED)
    assert second.payload == "nothing in between"


async def test_dispatch_beyond_max_concurrency_is_rejected_as_saturated(
    nursery: trio.Nursery,
) -> None:
    block = Controlled()
    with trio.fail_after(WAIT):
        peer, _ = await start_worker(
            nursery, ScriptedDispatcher(), handlers=make_handlers(block), max_concurrency=2
        )
        for key in "ab":
            await peer.dispatch("block", {"key": key})
            await block.started[key].wait()
        rejected = await peer.run("block", {"key": "c"})
        block.release["a"].set()
        block.release["b"].set()
        finished = {(await peer.result()).payload["done"] for _ in range(2)}
    assert rejected.status is TaskStatus.FAILED
    assert rejected.error is not None
    assert (rejected.error.code, rejected.error.retryable) == ("WORKER_SATURATED", True)
    assert "c" not in block.started
    assert finished == {"a", "b"}


# -- backpressure ----------------------------------------------------------------------


async def test_backpressure_signalled_on_saturation_and_cleared_after(
    nursery: trio.Nursery,
) -> None:
    block = Controlled()
    with trio.fail_after(WAIT):
        peer, _ = await start_worker(
            nursery, ScriptedDispatcher(), handlers=make_handlers(block), max_concurrency=2
        )
        await peer.dispatch("block", {"key": "a"})
        await block.started["a"].wait()
        await peer.dispatch("block", {"key": "b"})
        saturated = await peer.next(Backpressure)
        block.release["a"].set()
        result = await peer.next(TaskResultMessage)
        cleared = await peer.next(Backpressure)
    assert saturated.signal == BackpressureSignal(
        "w-1", current_load=1.0, should_throttle=True
    )
    assert result.result.payload == {"done": "a"}
    assert cleared.signal == BackpressureSignal(
        "w-1", current_load=0.5, should_throttle=False
    )


async def test_slot_freed_and_refilled_between_writes_sends_no_backpressure(
    nursery: trio.Nursery,
) -> None:
    block = Controlled()
    connections: list[GatedConnection] = []
    with trio.fail_after(WAIT):
        peer = await start_memory_worker(
            nursery,
            ScriptedDispatcher(),
            handlers=make_handlers(block),
            max_concurrency=1,
            connections=connections,
        )
        (conn,) = connections
        assert isinstance(conn, GatedConnection)
        await peer.dispatch("block", {"key": "a"})
        assert (await peer.next(Backpressure)).signal.should_throttle
        # Hold the writer inside a write (of a rejection) ...
        conn.gate = trio.Event()
        await peer.dispatch("unknown-type")
        await conn.blocked.wait()
        # ... while a slot frees (a's result is queued) and is refilled by b.
        block.release["a"].set()
        await trio.testing.wait_all_tasks_blocked()
        await peer.dispatch("block", {"key": "b"})
        await block.started["b"].wait()
        conn.gate.set()
        block.release["b"].set()
        seen = [await peer.next(object) for _ in range(4)]
    assert [type(m).__name__ for m in seen] == [
        "TaskResultMessage",  # the rejection
        "TaskResultMessage",  # a
        "TaskResultMessage",  # b
        "Backpressure",  # cleared only when b finished
    ]
    assert [m.result.status for m in seen[:3]] == [
        TaskStatus.FAILED,
        TaskStatus.COMPLETED,
        TaskStatus.COMPLETED,
    ]
    assert seen[3].signal.should_throttle is False


# -- shutdown --------------------------------------------------------------------------


async def test_graceful_shutdown_drains_in_flight_tasks_then_returns(
    nursery: trio.Nursery,
) -> None:
    block = Controlled()
    with trio.fail_after(WAIT):
        peer, returned = await start_worker(
            nursery, ScriptedDispatcher(), handlers=make_handlers(block)
        )
        await peer.dispatch("block", {"key": "a"})
        await block.started["a"].wait()
        await peer.send(Shutdown(graceful=True))
        late = await peer.run("echo", "too late")
        assert not returned.is_set()
        block.release["a"].set()
        drained = await peer.result()
        with pytest.raises(ConnectionClosed) as closed:
            await peer.next(object, skip=(Heartbeat, Backpressure))
        await returned.wait()
    assert late.error == TaskError(
        "WORKER_SHUTTING_DOWN", "the worker is shutting down", True
    )
    assert (drained.status, drained.payload) == (TaskStatus.COMPLETED, {"done": "a"})
    assert not block.cancelled["a"].is_set()
    assert closed.value.reason is not None
    assert closed.value.reason.code == 1000


async def test_graceful_shutdown_keeps_each_tasks_own_deadline(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    block = Controlled()
    peer = await start_memory_worker(
        nursery, ScriptedDispatcher(), handlers=make_handlers(block)
    )
    await peer.dispatch("block", {"key": "a"}, timeout_ms=30_000)
    await block.started["a"].wait()
    await peer.send(Shutdown(graceful=True))
    result = await peer.result()
    assert result.status is TaskStatus.TIMED_OUT
    assert result.duration_ms == 30_000


async def test_non_graceful_shutdown_cancels_in_flight_tasks_then_returns(
    nursery: trio.Nursery,
) -> None:
    block = Controlled()
    with trio.fail_after(WAIT):
        peer, returned = await start_worker(
            nursery, ScriptedDispatcher(), handlers=make_handlers(block)
        )
        tasks = [await peer.dispatch("block", {"key": key}) for key in "ab"]
        for key in "ab":
            await block.started[key].wait()
        await peer.send(Shutdown(graceful=False))
        results = [await peer.result() for _ in range(2)]
        await returned.wait()
    assert {r.task_id for r in results} == {t.id for t in tasks}
    assert {r.status for r in results} == {TaskStatus.CANCELLED}
    assert {r.error.code for r in results if r.error} == {"WORKER_SHUTTING_DOWN"}
    assert block.cancelled["a"].is_set() and block.cancelled["b"].is_set()


# -- session rules ---------------------------------------------------------------------


async def test_a_task_that_overtakes_worker_registered_is_served_after_it(
    nursery: trio.Nursery,
) -> None:
    # The rules let a dispatcher send tasks as soon as it has read WorkerRegister.
    dispatcher = ScriptedDispatcher(answer_registration=False)
    url = await dispatcher.serve(nursery)
    nursery.start_soon(partial(run_worker, url, make_handlers(), worker_id="w-1"))
    with trio.fail_after(WAIT):
        peer = await dispatcher.peers.receive()
        await peer.next(WorkerRegister)
        task = await peer.dispatch("echo", "early")
        await peer.send(WorkerRegistered(worker_id="w-1"))
        result = await peer.result()
    assert (result.task_id, result.status, result.payload) == (
        task.id,
        TaskStatus.COMPLETED,
        "early",
    )


async def test_a_message_the_dispatcher_may_not_send_is_logged_and_ignored(
    nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    with trio.fail_after(WAIT):
        peer, _ = await start_worker(nursery, ScriptedDispatcher())
        with caplog.at_level(logging.WARNING, logger="trio_pipe.worker"):
            await peer.send(Heartbeat(HeartbeatPayload("dispatcher")))
            await peer.send(WorkerRegistered(worker_id="w-1"))  # a second answer
            result = await peer.run("echo", "still here")
    assert result.payload == "still here"
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("Heartbeat is sent by a worker, not by a dispatcher" in w for w in warnings)
    assert any("WorkerRegistered answers one WorkerRegister" in w for w in warnings)


# -- connection loss -------------------------------------------------------------------


async def test_connection_drop_cancels_tasks_reconnects_and_reregisters(
    nursery: trio.Nursery,
) -> None:
    block = Controlled()
    dispatcher = ScriptedDispatcher()
    with trio.fail_after(WAIT):
        first, _ = await start_worker(
            nursery,
            dispatcher,
            handlers=make_handlers(block),
            backoff_initial=0.01,
            backoff_max=0.05,
        )
        await first.dispatch("block", {"key": "lost"})
        await block.started["lost"].wait()
        await first.ws.aclose()
        await block.cancelled["lost"].wait()
        second = await dispatcher.peers.receive()
        result = await second.run("echo", "again")
    assert second.registration == first.registration
    assert result.status is TaskStatus.COMPLETED


async def test_malformed_frames_are_ignored(nursery: trio.Nursery) -> None:
    with trio.fail_after(WAIT):
        peer, _ = await start_worker(nursery, ScriptedDispatcher())
        for frame in (
            "not json",
            "[1, 2]",
            '{"type": "Bogus"}',
            '{"type": "TaskDispatch", "task": {"id": "nope"}}',
            '{"type": "Heartbeat", "payload": {"workerId": "x"}}',
        ):
            await peer.send_raw(frame)
        result = await peer.run("echo", "still here")
    assert result.payload == "still here"


async def test_without_reconnect_a_lost_connection_raises(nursery: trio.Nursery) -> None:
    dispatcher = ScriptedDispatcher()
    url = await dispatcher.serve(nursery)
    errors: list[WorkerConnectionError] = []

    async def worker(task_status: trio.TaskStatus[None]) -> None:
        try:
            await run_worker(url, make_handlers(), reconnect=False, task_status=task_status)
        except WorkerConnectionError as exc:
            errors.append(exc)

    with trio.fail_after(WAIT):
        async with trio.open_nursery() as worker_nursery:
            await worker_nursery.start(worker)
            peer = await dispatcher.peers.receive()
            await peer.ws.aclose()
    (error,) = errors
    assert "WebSocket closed" in str(error)


async def test_without_reconnect_a_refused_connection_raises() -> None:
    (listener,) = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listener.socket.getsockname()[1]
    await listener.aclose()
    with trio.fail_after(WAIT), pytest.raises(WorkerConnectionError, match="connecting to"):
        await run_worker(f"ws://127.0.0.1:{port}", make_handlers(), reconnect=False)


async def test_reconnect_attempts_back_off_until_the_dispatcher_answers(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    attempts: list[float] = []
    dispatcher = ScriptedDispatcher()
    memory = dispatcher.memory_connector(nursery)

    def connect() -> Any:
        attempts.append(trio.current_time())
        if len(attempts) <= 5:
            return _refusing()
        return memory()

    await nursery.start(
        partial(
            run_worker_on, connect, make_handlers(), backoff_initial=1.0, backoff_max=4.0
        )
    )
    gaps = [b - a for a, b in itertools.pairwise(attempts)]
    assert len(gaps) == 5
    for attempt, gap in enumerate(gaps):
        assert 0 <= gap <= min(4.0, 2.0**attempt) + 1e-9


def _refusing() -> Any:
    from contextlib import asynccontextmanager

    from trio_pipe import ChannelClosed

    @asynccontextmanager
    async def refuse() -> Any:
        await trio.lowlevel.checkpoint()
        raise ChannelClosed("refused")
        yield  # pragma: no cover

    return refuse()


def test_backoff_is_full_jitter_under_a_doubling_capped_ceiling() -> None:
    rng = random.Random(7)
    for attempt in range(12):
        cap = min(10.0, 0.1 * 2**attempt)
        delays = [
            backoff_delay(attempt, 0.1, 10.0, jitter="full", rng=rng) for _ in range(200)
        ]
        assert all(0.0 <= d <= cap for d in delays)
        assert max(delays) > 0.8 * cap  # the whole range is used
    assert backoff_delay(10_000, 0.1, 10.0, jitter="full", rng=rng) <= 10.0


# -- the Handlers registry and argument checks -----------------------------------------


def test_registering_a_task_type_twice_is_an_error() -> None:
    handlers = Handlers()

    @handlers.handler("x")
    async def first(payload: Any) -> Any:
        return payload

    with pytest.raises(ValueError, match="already registered"):
        handlers.add("x", first)


async def test_run_worker_checks_its_arguments_before_connecting() -> None:
    handlers = make_handlers()
    with pytest.raises(ValueError, match="ws:// or wss://"):
        await run_worker("http://127.0.0.1:1", handlers)
    with pytest.raises(ValueError, match="at least one handler"):
        await run_worker("ws://127.0.0.1:1", {})
    with pytest.raises(ValueError, match="invalid worker id"):
        await run_worker("ws://127.0.0.1:1", handlers, worker_id="bad id; rm -rf")
    with pytest.raises(ValueError, match="max_concurrency"):
        await run_worker("ws://127.0.0.1:1", handlers, max_concurrency=0)
