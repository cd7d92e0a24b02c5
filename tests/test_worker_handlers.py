"""The Python SDK's handlers: where each kind runs (Trio task, worker thread, process),
what cancelling each does, what a handler may ask while it runs (progress, a later
deadline), limits per task type, and the drain on SIGTERM and SIGINT.

A scripted dispatcher drives the worker in this process. Thread, process and signal
tests run in real time (a worker thread or a signal is no MockClock's), every wait
bounded by ``trio.fail_after(WAIT)``.
"""

from __future__ import annotations

import functools
import os
import pickle
import signal
import threading
from typing import Any

import attrs
import pytest
import trio
import trio.testing
import worker_handlers
from _scripted_dispatcher import Controlled, Peer, ScriptedDispatcher

from trio_pipe._typed import TaskSpec
from trio_pipe.protocol import (
    Backpressure,
    Heartbeat,
    Kill,
    TaskProgress,
    TaskResult,
    TaskResultMessage,
    TaskStatus,
)
from trio_pipe.worker import (
    HandlerKind,
    Handlers,
    TaskFailure,
    check_handlers,
    current_task,
    extend_deadline,
    in_process,
    progress,
    run_worker,
)
from trio_pipe.worker._handlers import handler_kind
from trio_pipe.worker._worker import run_worker_on

WAIT = 20  # seconds; a generous bound on every real-time wait (processes start slowly)


async def start(nursery: trio.Nursery, handlers: Any, **kwargs: Any) -> tuple[Peer, Any]:
    """``run_worker`` over a real socket; returns the registered peer and a box that
    holds what ``run_worker`` returned, once it has."""
    dispatcher = ScriptedDispatcher()
    url = await dispatcher.serve(nursery)
    returned: dict[str, Any] = {}
    done = trio.Event()

    async def worker(task_status: trio.TaskStatus[None]) -> None:
        returned["value"] = await run_worker(
            url, handlers, worker_id="w-1", task_status=task_status, **kwargs
        )
        done.set()

    await nursery.start(worker)
    returned["done"] = done
    return await dispatcher.peers.receive(), returned


async def reports_and_result(peer: Peer) -> tuple[list[TaskResult], TaskResult]:
    """The progress reports of the next task, then its terminal result."""
    reports = []
    while True:
        message = await peer.next(TaskResultMessage, skip=(Heartbeat, Backpressure))
        if message.result.status.is_terminal:
            return reports, message.result
        reports.append(message.result)


# -- where each kind runs ------------------------------------------------------------


async def _async_handler(payload: Any) -> Any:
    return payload


def _plain_handler(payload: Any) -> Any:
    return payload


class _AsyncCallable:
    async def __call__(self, payload: Any) -> Any:
        return payload


@pytest.mark.parametrize(
    ("handler", "kind"),
    [
        (_async_handler, HandlerKind.ASYNC),
        (_AsyncCallable(), HandlerKind.ASYNC),
        (functools.partial(_async_handler), HandlerKind.ASYNC),
        (_plain_handler, HandlerKind.THREAD),
        (len, HandlerKind.THREAD),
        (in_process(_plain_handler), HandlerKind.PROCESS),
    ],
    ids=["async def", "async __call__", "partial of async", "def", "builtin", "process"],
)
def test_each_kind_of_handler_is_recognised(handler: Any, kind: HandlerKind) -> None:
    assert handler_kind(handler) is kind


def test_an_async_function_cannot_run_in_a_process() -> None:
    with pytest.raises(TypeError, match="is an async function: a process runs a plain"):
        in_process(_async_handler)
    with pytest.raises(TypeError, match="is an async function"):
        Handlers().handler("x", process=True)(_async_handler)


def test_a_process_handler_that_cannot_be_pickled_is_refused_before_connecting() -> None:
    def local(payload: Any) -> Any:  # not importable by its name
        return payload

    handlers = Handlers()
    handlers.handler("local", process=True)(local)
    with pytest.raises(TypeError, match="handler for 'local' cannot be sent to a process"):
        check_handlers(handlers)


def test_progress_and_extensions_only_while_a_handler_runs() -> None:
    with pytest.raises(LookupError, match=r"progress\(\) is only available"):
        progress(0.5)
    with pytest.raises(LookupError, match=r"extend_deadline\(\) is only available"):
        extend_deadline(1000)
    with pytest.raises(LookupError, match=r"current_task\(\) is only available"):
        current_task()


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda: progress(1.5), ValueError),
        (lambda: progress(True), TypeError),
        (lambda: progress("half"), TypeError),
        (lambda: progress(message=3), TypeError),
        (lambda: extend_deadline(0), ValueError),
        (lambda: extend_deadline(1.5), TypeError),
    ],
)
def test_bad_reports_are_refused_where_they_are_made(call: Any, error: type) -> None:
    with pytest.raises(error):
        call()


async def test_a_plain_handler_runs_off_the_event_loop(nursery: trio.Nursery) -> None:
    release = threading.Event()

    def blocking(payload: Any) -> str:
        assert not trio.lowlevel.in_trio_run()  # a worker thread
        release.wait(WAIT)
        return f"released {current_task().task_type}"

    handlers = {"block": blocking, "echo": _async_handler}
    with trio.fail_after(WAIT):
        peer, _ = await start(nursery, handlers, max_concurrency=2)
        blocked = await peer.dispatch("block")
        assert (await peer.run("echo", 7)).payload == 7  # while the thread blocks
        release.set()
        result = await peer.result()
        assert (result.task_id, result.payload) == (blocked.id, "released block")


async def test_a_killed_thread_handler_frees_its_slot_at_once(
    nursery: trio.Nursery,
) -> None:
    release = threading.Event()
    finished = threading.Event()

    def stuck(payload: Any) -> str:
        release.wait(WAIT)
        finished.set()
        return "too late"

    handlers = {"stuck": stuck, "echo": _async_handler}
    try:
        with trio.fail_after(WAIT):
            peer, _ = await start(nursery, handlers, max_concurrency=1)
            task = await peer.dispatch("stuck")
            await peer.send(Kill(task.id, "enough"))
            killed = await peer.result()
            assert (killed.task_id, killed.status) == (task.id, TaskStatus.CANCELLED)
            assert killed.error is not None and killed.error.code == "KILLED"
            # The one slot is free while the abandoned thread still blocks.
            assert (await peer.run("echo", "next")).payload == "next"
            assert not finished.is_set()
    finally:
        release.set()


async def test_a_plain_handler_that_returns_a_coroutine_is_told_to_be_async(
    nursery: trio.Nursery,
) -> None:
    handlers = {"sneaky": lambda payload: _async_handler(payload)}
    with trio.fail_after(WAIT):
        peer, _ = await start(nursery, handlers)
        result = await peer.run("sneaky", 1)
    assert result.status is TaskStatus.FAILED
    assert result.error is not None and "declare it `async def`" in result.error.message


@attrs.frozen
class Area(TaskSpec[int], task_type="area"):
    width: int
    height: int


def area(spec: Area) -> int:
    return spec.width * spec.height


async def test_a_typed_plain_handler_runs_in_a_thread(nursery: trio.Nursery) -> None:
    handlers = Handlers()
    handlers.typed(Area)(area)
    assert handler_kind(handlers["area"]) is HandlerKind.THREAD
    with trio.fail_after(WAIT):
        peer, _ = await start(nursery, handlers)
        assert (await peer.run("area", {"width": 3, "height": 4})).payload == 12


# -- processes -------------------------------------------------------------------


def _process_handlers() -> Handlers:
    handlers = Handlers()
    handlers.add("spin", worker_handlers.spin_process, process=True)
    handlers.add("report", worker_handlers.report_process, process=True)
    handlers.add("outlive", worker_handlers.outlive, process=True)
    handlers.add("refuse", in_process(worker_handlers.refuse_in_process))
    handlers.add("raise", in_process(worker_handlers.raise_in_process))
    handlers.add("unpicklable", in_process(worker_handlers.unpicklable_result))
    return handlers


@pytest.mark.slow
async def test_a_process_handler_runs_in_a_process_that_is_reused(
    nursery: trio.Nursery,
) -> None:
    with trio.fail_after(WAIT):
        peer, _ = await start(nursery, _process_handlers())
        first = (await peer.run("spin", {"seconds": 0})).payload
        second = (await peer.run("spin", {"seconds": 0})).payload
    assert first["pid"] == second["pid"] != os.getpid()


@pytest.mark.slow
async def test_a_killed_process_handler_has_its_process_killed(
    nursery: trio.Nursery,
) -> None:
    with trio.fail_after(WAIT):
        peer, _ = await start(nursery, _process_handlers())
        pid = (await peer.run("spin", {"seconds": 0})).payload["pid"]
        task = await peer.dispatch("spin", {"seconds": 600})  # in the same process
        await trio.sleep(0.2)
        await peer.send(Kill(task.id))
        killed = await peer.result()
        assert killed.status is TaskStatus.CANCELLED
        assert not await trio.Path(f"/proc/{pid}").exists()  # killed and reaped
        again = (await peer.run("spin", {"seconds": 0})).payload["pid"]
    assert again != pid  # the pool started another


@pytest.mark.slow
@pytest.mark.parametrize(
    ("task_type", "code", "message", "retryable"),
    [
        ("refuse", "BAD_INPUT", "no good", False),
        ("raise", "HANDLER_ERROR", "ValueError: raised in a process", True),
        ("unpicklable", "HANDLER_ERROR", "the result cannot be sent back", True),
    ],
)
async def test_a_process_handlers_failure_is_reported_as_an_async_ones(
    nursery: trio.Nursery, task_type: str, code: str, message: str, retryable: bool
) -> None:
    with trio.fail_after(WAIT):
        peer, _ = await start(nursery, _process_handlers())
        result = await peer.run(task_type)
    assert result.status is TaskStatus.FAILED
    assert result.error is not None
    assert (result.error.code, result.error.retryable) == (code, retryable)
    assert message in result.error.message


# -- progress and deadline extension -----------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("task_type", ["report", "report-thread", "report-process"])
async def test_progress_reports_reach_the_dispatcher_in_order(
    nursery: trio.Nursery, task_type: str
) -> None:
    with trio.fail_after(WAIT):
        peer, _ = await start(nursery, worker_handlers.HANDLERS)
        task = await peer.dispatch(task_type, {"steps": 5, "pause": 0.01})
        reports, result = await reports_and_result(peer)
    assert result.status is TaskStatus.COMPLETED
    assert [r.progress for r in reports] == [
        TaskProgress(step / 5, f"step {step} of 5") for step in range(1, 6)
    ]
    assert all(
        (r.task_id, r.status, r.worker_id) == (task.id, TaskStatus.RUNNING, "w-1")
        for r in reports
    )


async def test_an_extension_moves_the_workers_own_deadline(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    async def long(payload: Any) -> str:
        extend_deadline(payload["extend_ms"])
        await trio.sleep(payload["seconds"])
        return "done"

    dispatcher = ScriptedDispatcher()
    connect = dispatcher.memory_connector(nursery)
    await nursery.start(functools.partial(run_worker_on, connect, {"long": long}))
    peer = await dispatcher.peers.receive()
    # Granted (locally): 0.3 s of timeout, 2 s asked, 1 s used.
    await peer.dispatch("long", {"extend_ms": 2000, "seconds": 1}, timeout_ms=300)
    reports, result = await reports_and_result(peer)
    assert [r.extend_ms for r in reports] == [2000]
    assert result.status is TaskStatus.COMPLETED
    # Never nearer: 10 ms asked of a 2 s timeout, 1 s used.
    await peer.dispatch("long", {"extend_ms": 10, "seconds": 1}, timeout_ms=2000)
    assert (await reports_and_result(peer))[1].status is TaskStatus.COMPLETED
    # And past the new deadline, it times out.
    await peer.dispatch("long", {"extend_ms": 500, "seconds": 5}, timeout_ms=300)
    assert (await reports_and_result(peer))[1].status is TaskStatus.TIMED_OUT


@pytest.mark.slow
async def test_a_process_handler_extends_its_deadline_too(nursery: trio.Nursery) -> None:
    with trio.fail_after(WAIT):
        peer, _ = await start(nursery, _process_handlers())
        await peer.run("spin", {"seconds": 0})  # the process is up: no start-up time
        payload = {"extend_ms": 5000, "seconds": 1}
        await peer.dispatch("outlive", payload, timeout_ms=500)
        reports, result = await reports_and_result(peer)
    assert [r.extend_ms for r in reports] == [5000]
    assert result.status is TaskStatus.COMPLETED


# -- limits per task type ----------------------------------------------------------


async def test_a_limit_per_type_is_registered_and_enforced(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    block = Controlled()
    handlers = {"block": block, "echo": _async_handler}
    dispatcher = ScriptedDispatcher()
    connect = dispatcher.memory_connector(nursery)
    worker = functools.partial(
        run_worker_on, connect, handlers, max_concurrency=4,
        max_concurrency_by_type={"block": 1},
    )  # fmt: skip
    await nursery.start(worker)
    peer = await dispatcher.peers.receive()
    assert peer.registration is not None
    assert peer.registration.max_concurrency_by_type == {"block": 1}
    await peer.dispatch("block", {"key": "a"})
    await block.started["a"].wait()
    refused = await peer.run("block", {"key": "b"})
    assert refused.status is TaskStatus.FAILED
    assert refused.error is not None
    assert (refused.error.code, refused.error.retryable) == ("WORKER_SATURATED", True)
    assert (await peer.run("echo", 1)).status is TaskStatus.COMPLETED  # other types run
    block.release["a"].set()
    assert (await peer.result()).status is TaskStatus.COMPLETED
    block.release["c"].set()
    assert (await peer.run("block", {"key": "c"})).status is TaskStatus.COMPLETED


@pytest.mark.parametrize(
    ("limits", "error", "message"),
    [
        ({"nope": 1}, ValueError, "no handler for task type 'nope'"),
        ({"echo": 0}, ValueError, "must be from 1 to max_concurrency"),
        ({"echo": 11}, ValueError, r"max_concurrency \(10\), got 11"),
        ({"echo": "2"}, TypeError, "must be an int"),
        (["echo"], TypeError, "must be a mapping"),
    ],
)
async def test_limits_per_type_are_checked_before_connecting(
    limits: Any, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        await run_worker(
            "ws://127.0.0.1:1", {"echo": _async_handler}, max_concurrency_by_type=limits
        )


async def test_a_negative_drain_timeout_is_refused() -> None:
    with pytest.raises(ValueError, match="drain_timeout"):
        await run_worker("ws://127.0.0.1:1", {"echo": _async_handler}, drain_timeout=-1)


# -- draining on a signal (delivered to this very process) -----------------------------


async def _draining_worker(
    nursery: trio.Nursery, **kwargs: Any
) -> tuple[Peer, dict[str, Any], Controlled]:
    block = Controlled()
    handlers = {"block": block, "echo": _async_handler}
    peer, returned = await start(
        nursery, handlers, handle_signals=True, max_concurrency=3, **kwargs
    )
    return peer, returned, block


async def test_sigterm_drains_tasks_in_flight_then_closes(nursery: trio.Nursery) -> None:
    with trio.fail_after(WAIT):
        peer, returned, block = await _draining_worker(nursery)
        await peer.dispatch("block", {"key": "a"})
        await block.started["a"].wait()
        signal.raise_signal(signal.SIGTERM)
        said = await peer.next(Backpressure)
        assert (said.signal.draining, said.signal.should_throttle) == (True, True)
        late = await peer.dispatch("echo", "crossed the drain")
        refused = await peer.result()
        assert (refused.task_id, refused.status) == (late.id, TaskStatus.FAILED)
        assert refused.error is not None
        assert (refused.error.code, refused.error.retryable) == (
            "WORKER_SHUTTING_DOWN",
            True,
        )
        block.release["a"].set()
        assert (await peer.result()).payload == {"done": "a"}
        await returned["done"].wait()
    assert returned["value"] is signal.SIGTERM
    assert peer.ws.closed is not None and peer.ws.closed.code == 1000


async def test_tasks_outliving_the_drain_timeout_are_cancelled_retryably(
    nursery: trio.Nursery,
) -> None:
    with trio.fail_after(WAIT):
        peer, returned, block = await _draining_worker(nursery, drain_timeout=0.2)
        await peer.dispatch("block", {"key": "a"})
        await block.started["a"].wait()
        signal.raise_signal(signal.SIGTERM)
        result = await peer.result()
        await returned["done"].wait()
    assert block.cancelled["a"].is_set()
    assert result.status is TaskStatus.CANCELLED
    assert result.error is not None
    assert (result.error.code, result.error.retryable) == ("WORKER_SHUTTING_DOWN", True)


async def test_a_second_signal_stops_the_tasks_at_once(nursery: trio.Nursery) -> None:
    with trio.fail_after(WAIT):
        peer, returned, block = await _draining_worker(nursery, drain_timeout=600)
        await peer.dispatch("block", {"key": "a"})
        await block.started["a"].wait()
        signal.raise_signal(signal.SIGTERM)
        await peer.next(Backpressure)
        signal.raise_signal(signal.SIGTERM)
        result = await peer.result()
        await returned["done"].wait()
    assert result.status is TaskStatus.CANCELLED
    assert returned["value"] is signal.SIGTERM


async def test_sigint_drains_as_sigterm_does(nursery: trio.Nursery) -> None:
    with trio.fail_after(WAIT):
        peer, returned, _ = await _draining_worker(nursery)
        signal.raise_signal(signal.SIGINT)  # no KeyboardInterrupt while serving
        await peer.next(Backpressure)
        await returned["done"].wait()
    assert returned["value"] is signal.SIGINT


async def test_a_signal_while_not_connected_stops_the_worker(nursery: trio.Nursery) -> None:
    listener = trio.socket.socket()
    await listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    listener.close()  # nothing listens there: the worker keeps reconnecting
    returned: list[signal.Signals | None] = []
    done = trio.Event()

    async def worker() -> None:
        returned.append(
            await run_worker(
                f"ws://127.0.0.1:{port}",
                {"echo": _async_handler},
                handle_signals=True,
                backoff_initial=0.05,
                backoff_max=0.05,
            )
        )
        done.set()

    with trio.fail_after(WAIT):
        nursery.start_soon(worker)
        await trio.sleep(0.3)
        signal.raise_signal(signal.SIGTERM)
        await done.wait()
    assert returned == [signal.SIGTERM]


def test_a_task_failure_survives_pickling() -> None:
    failure = pickle.loads(pickle.dumps(TaskFailure("CODE", "why", retryable=True)))
    assert (failure.code, failure.message, failure.retryable) == ("CODE", "why", True)
