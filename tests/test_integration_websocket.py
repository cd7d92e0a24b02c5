"""The dispatcher with real worker subprocesses over real WebSockets.

Real time and real processes: every wait is bounded generously with trio.fail_after.
"""

from __future__ import annotations

import collections
import signal
from pathlib import Path

import pytest
import trio
import trio_websocket
from helpers import child_processes, open_raw_websocket, start_python_worker

import trio_pipe
from trio_pipe import (
    ErrorCode,
    NoWorkerAvailable,
    Task,
    TaskFailed,
    TaskStatus,
    WorkerState,
)
from trio_pipe.protocol import (
    WorkerRegister,
    WorkerRegistered,
    WorkerRegistration,
    decode,
    encode,
)

pytestmark = pytest.mark.slow


async def test_a_thousand_tasks_spread_across_three_workers() -> None:
    async with trio_pipe.open_dispatcher() as d, trio.open_nursery() as n:
        for i in range(3):
            await start_python_worker(n, d.url, f"w{i}", max_concurrency=16)
        with trio.fail_after(30):
            await d.wait_for_workers(3)
            handles = [await d.submit(Task.new("echo", i)) for i in range(1000)]
            values = [await h.value() for h in handles]
        assert values == list(range(1000))
        spread = collections.Counter(h.worker_id for h in handles)
        assert set(spread) == {"w0", "w1", "w2"}
        assert min(spread.values()) > 150, spread
        n.cancel_scope.cancel()


async def test_kill_9_of_a_worker_loses_no_task() -> None:
    async with trio_pipe.open_dispatcher(retry_backoff=0.01) as d, trio.open_nursery() as n:
        victim = await start_python_worker(n, d.url, "victim", max_concurrency=20)
        with trio.fail_after(30):
            await d.wait_for_workers(1)
        # First tries outlast the test: only their retries, on the survivor, can end.
        tasks = [Task.new("metadata", {"first_try_seconds": 600}) for _ in range(20)]
        handles = [await d.submit(task) for task in tasks]
        await start_python_worker(n, d.url, "survivor", max_concurrency=20)
        with trio.fail_after(30):
            await d.wait_for_workers(2)
        victim.send_signal(signal.SIGKILL)
        with trio.fail_after(30):
            results = [await h.result() for h in handles]
        assert [r.status for r in results] == [TaskStatus.COMPLETED] * 20
        assert {r.worker_id for r in results} == {"survivor"}
        assert all(
            h.attempts[0].error.code == ErrorCode.WORKER_DISCONNECTED for h in handles
        )  # type: ignore[union-attr]
        n.cancel_scope.cancel()


async def test_a_frozen_worker_is_declared_dead_within_the_heartbeat_timeout() -> None:
    async with (
        trio_pipe.open_dispatcher(heartbeat_timeout=2.0) as d,
        trio.open_nursery() as n,
    ):
        frozen = await start_python_worker(n, d.url, "frozen", heartbeat_interval=0.5)
        with trio.fail_after(30):
            await d.wait_for_workers(1)
        handle = await d.submit(Task.new("sleep", {"seconds": 60}, max_retries=0))
        frozen.send_signal(signal.SIGSTOP)
        try:
            stopped_at = trio.current_time()
            with trio.fail_after(10):
                result = await handle.result()
            took = trio.current_time() - stopped_at
        finally:
            frozen.send_signal(signal.SIGCONT)
        assert result.error is not None
        assert result.error.code == ErrorCode.WORKER_DISCONNECTED
        assert 1.4 < took < 2.0 + 1.0, took  # within the timeout, plus scheduling slack
        assert d.workers()[0].state is WorkerState.DEAD
        n.cancel_scope.cancel()


async def test_malformed_frames_close_that_connection_only() -> None:
    async with trio_pipe.open_dispatcher() as d, trio.open_nursery() as n:
        await start_python_worker(n, d.url, "good")
        with trio.fail_after(30):
            await d.wait_for_workers(1)
            async with open_raw_websocket(d.url) as ws:
                registration = WorkerRegistration("garbage", ("echo",), 1, "Python")
                await ws.send_message(encode(WorkerRegister(registration)))
                assert decode(await ws.get_message()) == WorkerRegistered("garbage")
                await ws.send_message('{"type": "Heartbeat", "payload": {"workerId": 7}}')
                with pytest.raises(trio_websocket.ConnectionClosed) as closed:
                    while True:
                        await ws.get_message()
            reason = closed.value.reason
            assert reason.code == 1008
            assert reason.reason is not None and "Heartbeat" in reason.reason
            assert await d.run(Task.new("echo", "still fine")) == "still fine"
        n.cancel_scope.cancel()


async def test_a_raising_handler_fails_with_its_message() -> None:
    async with trio_pipe.open_dispatcher() as d, trio.open_nursery() as n:
        await start_python_worker(n, d.url, "w")
        with trio.fail_after(30):
            await d.wait_for_workers(1)
            with pytest.raises(TaskFailed) as failed:
                await d.run(Task.new("fail", {"message": "disk on fire"}, max_retries=0))
        error = failed.value.result.error
        assert error is not None
        assert error.code == ErrorCode.HANDLER_ERROR
        assert "disk on fire" in error.message
        n.cancel_scope.cancel()


async def test_a_type_no_worker_supports_is_refused_or_waits() -> None:
    async with trio_pipe.open_dispatcher() as d, trio.open_nursery() as n:
        await start_python_worker(n, d.url, "w")
        with trio.fail_after(30):
            await d.wait_for_workers(1)
        with pytest.raises(NoWorkerAvailable):
            d.submit_nowait(Task.new("nobody-does-this", 1))
        with pytest.raises(TaskFailed) as failed:
            await d.run(Task.new("nobody-does-this", 1, timeout_ms=200))
        assert failed.value.result.status is TaskStatus.TIMED_OUT
        n.cancel_scope.cancel()


async def test_timeout_cancels_the_handler_on_the_worker(tmp_path: Path) -> None:
    marker = tmp_path / "cancelled"
    async with trio_pipe.open_dispatcher() as d, trio.open_nursery() as n:
        await start_python_worker(n, d.url, "w")
        with trio.fail_after(30):
            await d.wait_for_workers(1)
            with pytest.raises(TaskFailed) as failed:
                await d.run(Task.new("hang", {"marker": str(marker)}, timeout_ms=300))
            assert failed.value.result.status is TaskStatus.TIMED_OUT
            # A fact in another process: poll it, bounded by the fail_after above.
            while not await trio.Path(marker).exists():  # noqa: ASYNC110
                await trio.sleep(0.05)
        assert marker.read_text() == "cancelled"
        n.cancel_scope.cancel()


async def test_graceful_shutdown_completes_in_flight_tasks() -> None:
    async with trio.open_nursery() as n:
        async with trio_pipe.open_dispatcher() as d:
            worker = await start_python_worker(n, d.url, "w")
            with trio.fail_after(30):
                await d.wait_for_workers(1)
            nap = {"seconds": 0.3}
            handles = [await d.submit(Task.new("sleep", nap)) for _ in range(5)]
            assert d.pool_stats().used_capacity == 5  # all running when shutdown begins
        for handle in handles:
            assert (await handle.result()).status is TaskStatus.COMPLETED
        with trio.fail_after(10):
            await worker.wait()
        assert worker.returncode == 0


@pytest.mark.parametrize("how", ["exception", "cancellation"])
async def test_a_dispatcher_left_abruptly_stops_its_workers_for_good(
    tmp_path: Path, how: str
) -> None:
    marker = tmp_path / "cancelled"
    async with trio.open_nursery() as n:
        with trio.CancelScope() as scope:
            try:
                async with trio_pipe.open_dispatcher() as d:
                    worker = await start_python_worker(n, d.url, "w")
                    with trio.fail_after(30):
                        await d.wait_for_workers(1)
                    handle = await d.submit(Task.new("hang", {"marker": str(marker)}))
                    assert handle.status is TaskStatus.DISPATCHED
                    if how == "exception":
                        raise LookupError("the application failed")
                    scope.cancel()
                    await trio.sleep_forever()
            except LookupError:
                pass
        result = await handle.result()
        assert result.error is not None
        assert result.error.code == ErrorCode.DISPATCHER_CLOSED
        # Shutdown{graceful:false}: it stops its task and exits, not reconnecting.
        with trio.fail_after(10):
            await worker.wait()
        assert worker.returncode == 0
        assert marker.read_text() == "cancelled"


async def test_two_hundred_simultaneous_connections_are_held() -> None:
    async with trio_pipe.open_dispatcher() as d, trio.open_nursery() as n:
        ready = trio.Semaphore(0)
        done = trio.Event()

        async def connect(i: int) -> None:
            async with open_raw_websocket(d.url) as ws:
                registration = WorkerRegistration(f"conn-{i}", ("echo",), 1, "Python")
                await ws.send_message(encode(WorkerRegister(registration)))
                assert isinstance(decode(await ws.get_message()), WorkerRegistered)
                ready.release()
                await done.wait()

        with trio.fail_after(60):
            for i in range(200):
                n.start_soon(connect, i)
            for _ in range(200):
                await ready.acquire()
        stats = d.pool_stats()
        assert (stats.total, stats.active, stats.total_capacity) == (200, 200, 200)
        done.set()


def test_no_worker_process_outlives_its_test() -> None:
    # Worker processes are nursery children: cancelled tests leave none behind.
    assert child_processes() == []


async def test_a_graceful_shutdown_stops_accepting_connections_first() -> None:
    from trio_pipe.protocol import Shutdown
    from trio_pipe.testing import connect_memory_worker

    async with trio.open_nursery() as nursery:
        async with trio_pipe.open_dispatcher(shutdown_grace=30) as d:
            port = d.port
            worker = await connect_memory_worker(d, "w", ["t"])
            handle = await d.submit(Task.new("t"))
            dispatch = await worker.receive_task()

            async def during_the_grace_period() -> None:
                assert await worker.receive() == Shutdown(graceful=True)
                await trio.testing.wait_all_tasks_blocked()
                with pytest.raises(OSError):
                    await trio.open_tcp_stream("127.0.0.1", port)
                await worker.complete(dispatch, "done")  # in-flight work still finishes

            nursery.start_soon(during_the_grace_period)
        assert (await handle.result()).status is TaskStatus.COMPLETED


async def test_a_bug_of_the_dispatcher_is_not_blamed_on_the_worker(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A LocalProtocolError (the dispatcher breaking the protocol itself) propagates out
    of open_dispatcher; it must not be taken for the worker's fault (close code 1008)."""
    from trio_pipe.dispatch._scheduler import Scheduler
    from trio_pipe.protocol import Heartbeat, HeartbeatPayload, LocalProtocolError

    def buggy(self: Scheduler, record: object, message: object) -> None:
        raise LocalProtocolError("a bug of the dispatcher's own")

    close_codes: list[int] = []
    bug = pytest.RaisesExc(LocalProtocolError, match="a bug of the dispatcher's own")
    with pytest.RaisesGroup(bug, flatten_subgroups=True):
        async with trio_pipe.open_dispatcher() as d:
            async with open_raw_websocket(d.url) as ws:
                registration = WorkerRegistration("innocent", ("echo",), 1, "Python")
                await ws.send_message(encode(WorkerRegister(registration)))
                assert decode(await ws.get_message()) == WorkerRegistered("innocent")
                monkeypatch.setattr(Scheduler, "on_message", buggy)
                heartbeat = Heartbeat(HeartbeatPayload("innocent", 0, 1, 0))
                await ws.send_message(encode(heartbeat))
                try:
                    with trio.fail_after(10):
                        await ws.get_message()
                except trio_websocket.ConnectionClosed as closed:
                    close_codes.append(closed.reason.code)
    assert 1008 not in close_codes
