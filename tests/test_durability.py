"""A dispatcher over a durable store: what survives a restart, dead letters,
idempotency keys, fencing, and the store's errors at submit()."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import trio
import trio.testing

from trio_pipe import (
    ErrorCode,
    Priority,
    StoreError,
    Task,
    TaskError,
    TaskNotFound,
    TaskResult,
    TaskStatus,
    open_dispatcher,
)
from trio_pipe.protocol import TaskResultMessage
from trio_pipe.store import MemoryStore, SqliteStore
from trio_pipe.testing import connect_memory_worker, open_memory_worker


@pytest.fixture(params=["sqlite", "postgres"])
def durable_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of an empty durable store of each kind (the same store every time it
    is opened in the test)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'tasks.db'}"
    return str(request.getfixturevalue("postgres_url"))


def failed(dispatch_task: Task, worker_id: str, *, retryable: bool) -> TaskResultMessage:
    error = TaskError(ErrorCode.HANDLER_ERROR, "boom", retryable=retryable)
    return TaskResultMessage(
        TaskResult(dispatch_task.id, TaskStatus.FAILED, error=error, worker_id=worker_id)
    )


async def test_a_completed_task_is_readable_after_a_restart(durable_url: str) -> None:
    async with open_dispatcher(store=durable_url) as d:
        async with open_memory_worker(d, "w1", ["double"]) as w:
            handle = await d.submit(Task.new("double", 21))
            dispatch = await w.receive_task()
            assert dispatch.task.metadata.attempt == 1
            assert dispatch.task.metadata.epoch == d.store.epoch == 1
            await w.complete(dispatch, 42)
            assert await handle.value() == 42
    async with open_dispatcher(store=durable_url) as d:
        assert d.store.epoch == 2
        again = await d.handle(handle.id)
        assert again.done and await again.value() == 42
        (attempt,) = again.attempts
        assert (attempt.worker_id, attempt.number, attempt.status) == (
            "w1",
            1,
            TaskStatus.COMPLETED,
        )
        assert attempt.started_at <= attempt.ended_at <= time.time()
        (record,) = await d.tasks()
        assert record.id == handle.id and record.status is TaskStatus.COMPLETED
        with pytest.raises(TaskNotFound):
            await d.handle(Task.new("double").id)


async def test_queued_tasks_survive_a_graceful_close_and_run_after_the_restart(
    durable_url: str,
) -> None:
    async with open_dispatcher(store=durable_url, shutdown_grace=0) as d:
        handles = [await d.submit(Task.new("later", i)) for i in range(3)]
    for handle in handles:  # this process will not see them end...
        result = await handle.result()
        assert result.error is not None
        assert result.error.code == ErrorCode.DISPATCHER_CLOSED
    async with open_dispatcher(store=durable_url) as d:  # ...the next one does
        assert [r.id for r in await d.tasks(status=TaskStatus.PENDING)] == [
            h.id for h in handles
        ]
        resumed = [await d.handle(h.id) for h in handles]
        async with open_memory_worker(d, "w1", ["later"]) as w:
            for _ in handles:
                dispatch = await w.receive_task()
                assert dispatch.task.metadata.attempt == 1
                await w.complete(dispatch, dispatch.task.payload)
            assert [await h.value() for h in resumed] == [0, 1, 2]


async def test_a_task_on_a_worker_when_the_dispatcher_stopped_is_retried(
    durable_url: str,
) -> None:
    async with open_dispatcher(store=durable_url, shutdown_grace=0) as d:
        worker = await connect_memory_worker(d, "w1", ["slow"])
        handle = await d.submit(Task.new("slow", "x", max_retries=1))
        await worker.receive_task()  # ...and never answers
    async with open_dispatcher(store=durable_url) as d:
        async with open_memory_worker(d, "w2", ["slow"]) as w:
            dispatch = await w.receive_task()
            assert dispatch.task.id == handle.id
            assert (dispatch.task.metadata.attempt, dispatch.task.metadata.retry_count) == (
                2,
                1,
            )
            assert dispatch.task.metadata.epoch == 2
            await w.complete(dispatch, "done")
            again = await d.handle(handle.id)
            assert await again.value() == "done"
        first, second = again.attempts
        assert (
            first.error is not None and first.error.code == ErrorCode.DISPATCHER_RESTARTED
        )
        assert (first.worker_id, second.worker_id) == ("w1", "w2")


async def test_a_task_that_fails_for_good_is_a_dead_letter_until_requeued_or_purged(
    durable_url: str,
) -> None:
    async with open_dispatcher(store=durable_url) as d:
        async with open_memory_worker(d, "w1", ["flaky"]) as w:
            handle = await d.submit(Task.new("flaky", {"n": 1}, max_retries=1))
            for retryable in (True, True):  # tried twice: max_retries + 1
                dispatch = await w.receive_task()
                await w.send(failed(dispatch.task, "w1", retryable=retryable))
            result = await handle.result()
            assert result.status is TaskStatus.FAILED
            (dead,) = await d.dead_letters()
            assert dead.id == handle.id and dead.task.payload == {"n": 1}
            assert [a.status for a in dead.attempts] == [TaskStatus.FAILED] * 2

            again = await d.requeue(handle.id)  # a fresh retry budget
            dispatch = await w.receive_task()
            assert dispatch.task.metadata.retry_count == 0
            assert dispatch.task.metadata.attempt == 3
            await w.complete(dispatch, "fixed")
            assert await again.value() == "fixed"
            assert await d.dead_letters() == []
            (record,) = await d.tasks()
            assert len(record.attempts) == 3 and record.counted_from == 2

            with pytest.raises(ValueError, match="only a task that ended without"):
                await d.requeue(handle.id)
            gone = await d.submit(Task.new("flaky", None, max_retries=0))
            await w.send(failed((await w.receive_task()).task, "w1", retryable=False))
            await gone.result()
            assert await d.purge() == 1  # dead letters only, by default
            assert [r.id for r in await d.tasks()] == [handle.id]


async def test_a_poison_task_stops_at_max_retries(autojump_clock: object) -> None:
    """Its worker dies on it every time: it goes round max_retries + 1 workers, then
    it is a dead letter -- not round the pool for ever."""
    async with open_dispatcher(retry_backoff=0.01) as d:
        handle = await d.submit(Task.new("poison", None, max_retries=2))
        for number in range(3):
            worker = await connect_memory_worker(d, f"w{number}", ["poison"])
            await worker.receive_task()
            await worker.aclose()  # the worker dies on it
        result = await handle.result()
        assert result.status is TaskStatus.FAILED
        assert result.error is not None
        assert result.error.code == ErrorCode.WORKER_DISCONNECTED
        assert len(handle.attempts) == 3
        assert [r.id for r in await d.dead_letters()] == [handle.id]


async def test_two_concurrent_submissions_with_one_key_are_one_task(
    durable_url: str,
) -> None:
    async with open_dispatcher(store=f"{durable_url}?commit_delay=0.05") as d:
        handles = []

        async def submit(payload: int) -> None:
            task = Task.new("charge", payload, idempotency_key="order-42")
            handles.append(await d.submit(task))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(submit, 1)
            nursery.start_soon(submit, 2)
        first, second = handles
        assert first is second  # the same live handle
        assert len(await d.tasks()) == 1
    async with open_dispatcher(store=durable_url) as d:
        again = await d.submit(Task.new("charge", 3, idempotency_key="order-42"))
        assert again.id == first.id


async def test_a_key_is_kept_in_memory_too(autojump_clock: object) -> None:
    async with open_dispatcher() as d:
        async with open_memory_worker(d, "w1", ["charge"]) as w:
            first = await d.submit(Task.new("charge", 1, idempotency_key="k"))
            assert await d.submit(Task.new("charge", 2, idempotency_key="k")) is first
            dispatch = await w.receive_task()
            assert dispatch.task.metadata.idempotency_key == "k"
            await w.complete(dispatch, "paid")
            await first.result()
            later = d.submit_nowait(Task.new("charge", 3, idempotency_key="k"))
            assert later.id == first.id and await later.value() == "paid"


async def test_a_late_result_of_an_attempt_given_up_on_is_discarded_and_counted(
    autojump_clock: object,
) -> None:
    async with open_dispatcher(store=MemoryStore()) as d:
        async with open_memory_worker(d, "w1", ["slow"]) as w:
            handle = await d.submit(Task.new("slow", None, timeout_ms=1000))
            dispatch = await w.receive_task()
            result = await handle.result()
            assert result.status is TaskStatus.TIMED_OUT
            assert (await w.receive()).task_id == handle.id  # type: ignore[attr-defined]
            # The worker ignored the Kill: it still reports progress, then a result.
            running = TaskResult(handle.id, TaskStatus.RUNNING, worker_id="w1")
            await w.send(TaskResultMessage(running))
            kill = await w.receive()
            assert kill.reason == "superseded"  # type: ignore[attr-defined]
            await w.complete(dispatch, "too late")
            await trio.testing.wait_all_tasks_blocked()  # the result was read
            assert d.pool_stats().stale_results == 2
            assert (
                await d.handle(handle.id)
            ).result_nowait().status is TaskStatus.TIMED_OUT
            (record,) = await d.tasks()
            assert record.status is TaskStatus.TIMED_OUT


async def test_a_full_disk_fails_submit_clearly_and_loses_nothing_accepted(
    tmp_path: Path,
) -> None:
    store = SqliteStore(tmp_path / "tasks.db")
    async with open_dispatcher(store=store) as d:
        async with open_memory_worker(d, "w1", ["job"], max_concurrency=10) as w:
            accepted = [await d.submit(Task.new("job", i)) for i in range(5)]
            (pages,) = await store._call(
                lambda: store._connection().execute("PRAGMA page_count").fetchone()
            )
            await store._call(
                lambda: store._connection().execute(f"PRAGMA max_page_count = {pages}")
            )
            with pytest.raises(StoreError, match=r"not accepted.*the disk is full"):
                await d.submit(Task.new("job", "x" * 500_000))
            for _ in accepted:
                dispatch = await w.receive_task()
                await w.complete(dispatch, dispatch.task.payload)
            assert [await h.value() for h in accepted] == list(range(5))
            await store._call(
                lambda: store._connection().execute("PRAGMA max_page_count = 1073741823")
            )
            records = await d.tasks()
            assert [r.status for r in records] == [TaskStatus.COMPLETED] * 5


async def test_submit_nowait_refuses_a_durable_store(durable_url: str) -> None:
    async with open_dispatcher(store=durable_url) as d:
        with pytest.raises(RuntimeError, match=r"use await submit\(\)"):
            d.submit_nowait(Task.new("job"))


async def test_an_unknown_store_url_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="unknown store; use memory://, sqlite:///"):
        async with open_dispatcher(store="redis://localhost/x"):
            pass  # pragma: no cover


async def test_a_submission_cancelled_while_the_queue_is_full_leaves_nothing_behind(
    tmp_path: Path,
) -> None:
    """Backpressure comes before the store: a submission that gives up waiting for
    room was never written, in this process or for the next."""
    path = tmp_path / "tasks.db"
    async with open_dispatcher(store=SqliteStore(path), max_queued=1) as d:
        first = await d.submit(Task.new("job", 1))  # no worker: it fills the queue
        with trio.move_on_after(0.2) as waited:
            await d.submit(Task.new("job", 2))
        assert waited.cancelled_caught
        assert [r.id for r in await d.tasks()] == [first.id]


async def test_a_backlog_is_resumed_a_page_at_a_time_highest_priority_first(
    autojump_clock: object,
) -> None:
    """2,500 tasks waiting (more than a page): the first dispatch does not wait for
    all of them, a task no page reached yet is found by handle(), and each runs
    once."""
    store = MemoryStore()
    async with open_dispatcher(store=store, shutdown_grace=0) as d:
        ordinary = [await d.submit(Task.new("job", i)) for i in range(2_500)]
        urgent = await d.submit(Task.new("job", "urgent", priority=Priority.CRITICAL))
    async with open_dispatcher(store=store) as d:
        last = await d.handle(ordinary[-1].id)  # resumed on demand
        assert not last.done
        async with open_memory_worker(d, "w1", ["job"]) as w:
            first = await w.receive_task()
            assert first.task.payload == "urgent"  # the first page: highest first
            await w.complete(first, "done")
            seen = []
            for _ in ordinary:
                dispatch = await w.receive_task()
                seen.append(dispatch.task.payload)
                await w.complete(dispatch, "done")
            assert sorted(seen) == list(range(2_500))  # each once
            assert await last.value() == "done"
            assert await (await d.handle(urgent.id)).value() == "done"
