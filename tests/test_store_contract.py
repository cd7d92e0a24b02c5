"""The store contract: one suite, run against every Store implementation.

The heart of it is a Hypothesis state machine: submissions (some sharing an
idempotency key), dispatches, results, stale results from superseded attempts, worker
deaths, restarts, requeues, purges and prunes are applied to the store under test and
to a model that says, in a few lines each, what a store must keep. After every step the
store's view of every task -- status, attempts, live attempt, outcome, listing order --
must be the model's.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import attrs
import pytest
import trio
from helpers import every_unfinished
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from trio_pipe import ErrorCode, Task, TaskError, TaskNotFound, TaskResult, TaskStatus
from trio_pipe.store import (
    CachedResult,
    MemoryStore,
    Retention,
    SqliteStore,
    Store,
    TaskRecord,
)

R = TypeVar("R")

# Far enough in the future that no deadline passes during a run.
DAY = 24 * 3600.0
RETENTION = Retention(completed=100.0, failed=1000.0)
KEYS = ("order-1", "order-2", "order-3")


def new_record(key: str | None = None, *, max_retries: int = 2) -> TaskRecord:
    now = time.time()
    task = Task.new("job", {"n": 1}, max_retries=max_retries, idempotency_key=key)
    return TaskRecord(task, TaskStatus.PENDING, now, now + DAY, now)


def failure(task_id: uuid.UUID, code: str, *, retryable: bool) -> TaskResult:
    error = TaskError(code, "went wrong", retryable=retryable)
    return TaskResult(task_id, TaskStatus.FAILED, error=error, worker_id="w")


class StoreRun:
    """A Trio run in a thread with one store open in it; the machine calls in."""

    def __init__(self, make: Callable[[], Store]) -> None:
        self.make = make
        self._ready = threading.Event()
        self._thread = threading.Thread(target=trio.run, args=(self._main,), daemon=True)
        self._thread.start()
        assert self._ready.wait(10)

    async def _main(self) -> None:
        self._token = trio.lowlevel.current_trio_token()
        self._stop = trio.Event()
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            self._ready.set()
            await self._stop.wait()
            nursery.cancel_scope.cancel()

    def call(self, function: Callable[..., R], *args: Any, **kwargs: Any) -> R:
        return trio.from_thread.run_sync(
            lambda: function(*args, **kwargs), trio_token=self._token
        )

    def wait(self, function: Callable[..., Awaitable[R]], *args: Any) -> R:
        return trio.from_thread.run(function, *args, trio_token=self._token)

    def open(self) -> tuple[Store, list[TaskRecord]]:
        """Open a store (a new one, or the same MemoryStore again) in the run."""
        store = self.make()
        self._scope = scope = trio.CancelScope()
        self._closed = closed = trio.Event()

        async def serve(task_status: trio.TaskStatus[list[TaskRecord]]) -> None:
            try:
                with scope:
                    async with trio.open_nursery() as nursery:
                        await nursery.start(store.run)
                        task_status.started(await every_unfinished(store))
            finally:
                closed.set()

        return store, self.wait(self._nursery.start, serve)

    def close_store(self) -> None:
        """Close the open store as a dispatcher's exit would: it writes what is
        pending, then closes."""

        async def close() -> None:
            self._scope.cancel()
            await self._closed.wait()

        self.wait(close)

    def stop(self) -> None:
        self.call(self._stop.set)
        self._thread.join(10)


@attrs.define
class ModelTask:
    id: uuid.UUID
    key: str | None
    max_retries: int
    status: TaskStatus = TaskStatus.PENDING
    attempts: list[TaskStatus | None] = attrs.Factory(list)  # None: live
    counted_from: int = 0
    finished_at: float | None = None

    @property
    def live(self) -> int | None:
        if self.status is TaskStatus.DISPATCHED:
            return len(self.attempts)
        return None


class StoreMachine(RuleBasedStateMachine):
    """Subclassed once per store implementation (``make`` builds or reuses one)."""

    def make(self) -> Store:
        raise NotImplementedError

    def __init__(self) -> None:
        super().__init__()
        self.run = StoreRun(self.make)
        self.store, resumed = self.run.open()
        assert resumed == []
        self.tasks: dict[uuid.UUID, ModelTask] = {}
        self.order: list[uuid.UUID] = []  # first submission order
        self.clock = time.time()  # the times the machine hands the store

    def tick(self) -> float:
        self.clock += 1.0
        return self.clock

    def teardown(self) -> None:
        try:
            self.run.close_store()
        finally:
            self.run.stop()

    def where(self, *statuses: TaskStatus) -> list[ModelTask]:
        return [t for t in self.tasks.values() if t.status in statuses]

    # -- rules -----------------------------------------------------------------------

    @rule(key=st.none() | st.sampled_from(KEYS), max_retries=st.integers(0, 2))
    def submit(self, key: str | None, max_retries: int) -> None:
        record = new_record(key, max_retries=max_retries)
        stored = self.run.wait(self.store.add, record)
        holder = next((t for t in self.tasks.values() if key and t.key == key), None)
        if holder is not None:
            assert stored.id == holder.id, "the key's task is returned"
            return
        assert stored == record
        self.tasks[record.id] = ModelTask(record.id, key, max_retries)
        self.order.append(record.id)

    @precondition(lambda self: self.where(TaskStatus.PENDING))
    @rule(data=st.data())
    def dispatch(self, data: st.DataObject) -> None:
        task = data.draw(st.sampled_from(self.where(TaskStatus.PENDING)))
        task.attempts.append(None)
        task.status = TaskStatus.DISPATCHED
        self.run.call(self.store.dispatched, task.id, len(task.attempts), "w", self.tick())

    @precondition(lambda self: self.where(TaskStatus.DISPATCHED))
    @rule(data=st.data(), outcome=st.sampled_from(["completed", "failed", "retry"]))
    def result(self, data: st.DataObject, outcome: str) -> None:
        task = data.draw(st.sampled_from(self.where(TaskStatus.DISPATCHED)))
        if outcome == "completed":
            result = TaskResult(task.id, TaskStatus.COMPLETED, "done", worker_id="w")
        else:
            result = failure(task.id, ErrorCode.HANDLER_ERROR, retryable=outcome == "retry")
        self.end(task, result, final=outcome != "retry")

    @precondition(lambda self: self.where(TaskStatus.DISPATCHED))
    @rule(data=st.data())
    def worker_dies(self, data: st.DataObject) -> None:
        task = data.draw(st.sampled_from(self.where(TaskStatus.DISPATCHED)))
        result = failure(task.id, ErrorCode.WORKER_DISCONNECTED, retryable=True)
        self.end(task, result, final=False)

    @precondition(lambda self: self.where(TaskStatus.DISPATCHED))
    @rule(data=st.data())
    def retried_elsewhere(self, data: st.DataObject) -> None:
        """Its worker dies and the task goes straight to another: a new live attempt,
        while the old one may still report (see ``stale_result``)."""
        task = data.draw(st.sampled_from(self.where(TaskStatus.DISPATCHED)))
        result = failure(task.id, ErrorCode.WORKER_DISCONNECTED, retryable=True)
        self.end(task, result, final=False)
        task.attempts.append(None)
        task.status = TaskStatus.DISPATCHED
        self.run.call(self.store.dispatched, task.id, len(task.attempts), "w2", self.tick())

    def end(self, task: ModelTask, result: TaskResult, *, final: bool) -> None:
        at = self.tick()
        self.run.call(self.store.ended, task.id, task.live, result, at, final=final)
        task.attempts[-1] = result.status
        task.status = result.status if final else TaskStatus.PENDING
        task.finished_at = at if final else None

    def superseded(self) -> list[ModelTask]:
        """Tasks with an attempt that is over."""
        return [t for t in self.tasks.values() if len(t.attempts) > (t.live is not None)]

    @precondition(lambda self: self.superseded())
    @rule(data=st.data(), final=st.booleans())
    def stale_result(self, data: st.DataObject, final: bool) -> None:
        """A result naming an attempt that is not live: it must change nothing."""
        task = data.draw(st.sampled_from(self.superseded()))
        over = len(task.attempts) - (task.live is not None)
        superseded = data.draw(st.integers(1, over))
        before = self.store.stale_writes  # type: ignore[attr-defined]
        result = TaskResult(task.id, TaskStatus.COMPLETED, "late", worker_id="old")
        self.run.call(
            self.store.ended, task.id, superseded, result, self.tick(), final=final
        )
        self.flush()
        assert self.store.stale_writes == before + 1  # type: ignore[attr-defined]

    @precondition(lambda self: self.where(TaskStatus.PENDING))
    @rule(data=st.data())
    def cancel_waiting(self, data: st.DataObject) -> None:
        task = data.draw(st.sampled_from(self.where(TaskStatus.PENDING)))
        error = TaskError(ErrorCode.CANCELLED, "by the caller")
        result = TaskResult(task.id, TaskStatus.CANCELLED, error=error)
        at = self.tick()
        self.run.call(self.store.ended, task.id, None, result, at, final=True)
        task.status, task.finished_at = TaskStatus.CANCELLED, at

    @rule()
    def restart(self) -> None:
        """The dispatcher stops (or dies) and a new one opens the store."""
        self.run.close_store()
        self.store, resumed = self.run.open()
        expected = []
        for task_id in self.order:
            task = self.tasks.get(task_id)
            if task is None or task.status.is_terminal:
                continue
            if task.status is TaskStatus.DISPATCHED:
                task.attempts[-1] = TaskStatus.FAILED  # DISPATCHER_RESTARTED
                task.status = TaskStatus.PENDING
                if len(task.attempts) - task.counted_from > task.max_retries:
                    task.status = TaskStatus.FAILED
                    task.finished_at = time.time()  # the store's clock, not ours
                    continue
            expected.append(task_id)
        assert [r.id for r in resumed] == expected
        for record in resumed:
            self.check(record)
        self.clock = max(self.clock, time.time())  # recovery is dated by the store

    @precondition(lambda self: self.where(TaskStatus.FAILED, TaskStatus.CANCELLED))
    @rule(data=st.data())
    def requeue(self, data: st.DataObject) -> None:
        task = data.draw(
            st.sampled_from(self.where(TaskStatus.FAILED, TaskStatus.CANCELLED))
        )
        record = self.run.wait(self.store.requeue, task.id, self.tick())
        task.status, task.finished_at = TaskStatus.PENDING, None
        task.counted_from = len(task.attempts)
        self.check(record)

    @rule(data=st.data())
    def requeue_refused(self, data: st.DataObject) -> None:
        """Only a task that ended without completing can be requeued."""
        others = self.where(TaskStatus.PENDING, TaskStatus.DISPATCHED, TaskStatus.COMPLETED)
        if not others:
            with pytest.raises(TaskNotFound):
                self.run.wait(self.store.requeue, uuid.uuid4(), self.tick())
            return
        task = data.draw(st.sampled_from(others))
        with pytest.raises(ValueError, match="only a task that ended without completing"):
            self.run.wait(self.store.requeue, task.id, self.tick())

    @rule(status=st.none() | st.sampled_from([TaskStatus.FAILED, TaskStatus.COMPLETED]))
    def purge(self, status: TaskStatus | None) -> None:
        purged = self.run.wait(lambda: self.store.purge(status=status))
        doomed = [
            t.id
            for t in self.tasks.values()
            if t.status.is_terminal and (status is None or t.status is status)
        ]
        assert purged == len(doomed)
        for task_id in doomed:
            self.forget(task_id)

    @rule(later=st.sampled_from([0.0, 150.0, 2000.0]))
    def prune(self, later: float) -> None:
        now = self.clock + later
        pruned = self.run.wait(self.store.prune, now)
        doomed = []
        for t in self.tasks.values():
            if t.finished_at is None:
                continue
            keep = (
                RETENTION.completed
                if t.status is TaskStatus.COMPLETED
                else RETENTION.failed
            )
            assert keep is not None
            if t.finished_at < now - keep:
                doomed.append(t.id)
        assert pruned == len(doomed)
        for task_id in doomed:
            self.forget(task_id)

    def forget(self, task_id: uuid.UUID) -> None:
        del self.tasks[task_id]
        self.order.remove(task_id)

    # -- what must always hold -------------------------------------------------------

    def flush(self) -> None:
        """Let a write-behind store write (a read waits for what is pending)."""
        self.run.wait(self.store.get, uuid.uuid4())

    def check(self, record: TaskRecord) -> None:
        task = self.tasks[record.id]
        assert record.status is task.status, (record, task)
        assert [a.status for a in record.attempts] == task.attempts
        assert [a.number for a in record.attempts] == list(range(1, len(task.attempts) + 1))
        assert record.counted_from == task.counted_from
        assert record.idempotency_key == task.key
        if task.status.is_terminal:
            assert record.result is not None and record.result.status is task.status
            assert record.finished_at is not None
            if task.status is TaskStatus.COMPLETED:
                assert record.task.payload is None  # not kept once completed
            else:
                assert record.task.payload == {"n": 1}  # kept: it may be requeued
        else:
            assert record.result is None and record.finished_at is None
            assert record.task.payload == {"n": 1}

    @invariant()
    def the_store_agrees_with_the_model(self) -> None:
        listed: list[TaskRecord] = []
        after = None
        while True:  # every task, two per page
            page = self.run.wait(partial(self.store.tasks, limit=2, after=after))
            listed.extend(page)
            if len(page) < 2:
                break
            after = page[-1].id
        assert [r.id for r in listed] == self.order
        for record in listed:
            self.check(record)
        for status in (TaskStatus.FAILED, TaskStatus.PENDING):
            page = self.run.wait(partial(self.store.tasks, status=status, limit=1000))
            assert [r.id for r in page] == [
                i for i in self.order if self.tasks[i].status is status
            ]


MACHINE_SETTINGS = settings(
    max_examples=100,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


class MemoryStoreMachine(StoreMachine):
    def make(self) -> Store:
        if not hasattr(self, "_memory"):
            self._memory = MemoryStore(retention=RETENTION)
        return self._memory


class SqliteStoreMachine(StoreMachine):
    directory: Path

    def make(self) -> Store:
        return SqliteStore(self.directory / "tasks.db", retention=RETENTION)


@pytest.mark.timeout(600)
def test_memory_store_keeps_the_contract() -> None:
    run_state_machine_as_test(MemoryStoreMachine, settings=MACHINE_SETTINGS)


@pytest.fixture
def sqlite_directories(tmp_path: Path) -> Iterator[Callable[[], Path]]:
    count = iter(range(1_000_000))

    def fresh() -> Path:
        directory = tmp_path / f"example-{next(count)}"
        directory.mkdir()
        return directory

    yield fresh


@pytest.mark.timeout(600)
def test_sqlite_store_keeps_the_contract(sqlite_directories: Callable[[], Path]) -> None:
    class Machine(SqliteStoreMachine):
        def __init__(self) -> None:
            self.directory = sqlite_directories()
            super().__init__()

    run_state_machine_as_test(Machine, settings=MACHINE_SETTINGS)


@pytest.mark.timeout(600)
def test_postgres_store_keeps_the_contract(postgres_url: str) -> None:
    import psycopg

    from trio_pipe.store import PostgresStore

    class Machine(StoreMachine):
        def __init__(self) -> None:
            # Each example starts from an empty store: the last one's schema goes.
            with psycopg.connect(postgres_url, autocommit=True) as conn:
                conn.execute("DROP SCHEMA IF EXISTS trio_pipe CASCADE")
            super().__init__()

        def make(self) -> Store:
            return PostgresStore(postgres_url, retention=RETENTION)

    run_state_machine_as_test(Machine, settings=MACHINE_SETTINGS)


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def new_store(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[..., Store]:
    """Makes a store of each kind (with the options given), on a fresh database."""
    if request.param == "memory":
        return MemoryStore
    if request.param == "sqlite":
        return lambda **options: SqliteStore(tmp_path / "tasks.db", **options)
    from trio_pipe.store import PostgresStore

    url = request.getfixturevalue("postgres_url")
    return lambda **options: PostgresStore(url, **options)


@pytest.fixture(params=["sqlite", "postgres"])
def new_durable_store(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Callable[..., Store]:
    """Makes a durable store of each kind, each time on the same database."""
    if request.param == "sqlite":
        return lambda **options: SqliteStore(tmp_path / "tasks.db", **options)
    from trio_pipe.store import PostgresStore

    url = request.getfixturevalue("postgres_url")
    return lambda **options: PostgresStore(url, **options)


async def test_tasks_are_listed_by_submission_time(new_store: Callable[[], Store]) -> None:
    store = new_store()
    async with trio.open_nursery() as nursery:
        await nursery.start(store.run)
        ids = []
        for submitted_at in (100.0, 200.0, 300.0):
            task = Task.new("job", None)
            await store.add(
                TaskRecord(task, TaskStatus.PENDING, submitted_at, time.time() + DAY, 0.0)
            )
            ids.append(task.id)

        async def listed(after: float | None, before: float | None) -> list[uuid.UUID]:
            page = await store.tasks(submitted_after=after, submitted_before=before)
            return [record.id for record in page]

        assert await listed(200.0, None) == ids[1:]
        assert await listed(None, 200.0) == ids[:1]
        assert await listed(150.0, 300.0) == ids[1:2]
        assert await listed(None, None) == ids
        nursery.cancel_scope.cancel()


async def test_tasks_are_counted_by_status(new_store: Callable[[], Store]) -> None:
    store = new_store()
    async with trio.open_nursery() as nursery:
        await nursery.start(store.run)
        records = [new_record() for _ in range(3)]
        for record in records:
            await store.add(record)
        store.ended(records[0].id, None, failure(records[0].id, "X", retryable=False),
                    time.time(), final=True)  # fmt: skip
        assert await store.count() == 3
        assert await store.count(status=TaskStatus.FAILED) == 1
        assert await store.count(status=TaskStatus.PENDING) == 2
        assert await store.count(status=TaskStatus.COMPLETED) == 0
        nursery.cancel_scope.cancel()


async def test_cached_results_are_kept_replaced_and_pruned_by_retention(
    new_store: Callable[..., Store],
) -> None:
    store = new_store(retention=Retention(cached=100.0))
    async with trio.open_nursery() as nursery:
        await nursery.start(store.run)
        assert await store.cache_get("k1") is None
        old = CachedResult("k1", {"n": [1, "two"]}, "w1", 1000.0)
        await store.cache_put(old)
        await store.cache_put(CachedResult("k2", None, "w2", 1050.0))
        assert await store.cache_get("k1") == old
        newer = CachedResult("k1", "again", "w3", 1200.0)
        await store.cache_put(newer)  # the same key: replaced
        assert await store.cache_get("k1") == newer
        # Retention counts from stored_at: at 1160, k2 (1050) is past 100 s; k1 not.
        assert await store.prune(1160.0) == 1
        assert await store.cache_get("k2") is None
        assert await store.cache_get("k1") == newer
        assert await store.prune(1160.0) == 0
        nursery.cancel_scope.cancel()


async def test_a_memory_store_keeps_at_most_max_finished_cached_results() -> None:
    store = MemoryStore(max_finished=2)
    async with trio.open_nursery() as nursery:
        await nursery.start(store.run)
        for index in range(3):
            await store.cache_put(CachedResult(f"k{index}", index, "w", float(index)))
        assert await store.cache_get("k0") is None  # the oldest went first
        assert [(await store.cache_get(k)) is not None for k in ("k1", "k2")] == [True] * 2
        nursery.cancel_scope.cancel()


async def test_cached_results_survive_reopening(
    new_durable_store: Callable[..., Store],
) -> None:
    entry = CachedResult("k", {"deep": {"list": [1.5, None, True]}}, "w", time.time())
    for put in (True, False):
        store = new_durable_store()
        async with trio.open_nursery() as nursery:
            await nursery.start(store.run)
            if put:
                await store.cache_put(entry)
            else:
                assert await store.cache_get("k") == entry
            nursery.cancel_scope.cancel()
