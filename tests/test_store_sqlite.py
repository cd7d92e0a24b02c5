"""SqliteStore beyond the shared contract: the file, its lock, its schema versions,
group commit, and what happens when the disk refuses a write."""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio
from helpers import every_unfinished

from trio_pipe import ErrorCode, StoreError, Task, TaskError, TaskResult, TaskStatus
from trio_pipe.protocol import encode_dispatch
from trio_pipe.store import SqliteStore, TaskRecord
from trio_pipe.store._sqlite import MIGRATIONS, _statements

DAY = 24 * 3600.0


def new_record(
    payload: object = None, *, key: str | None = None, deadline: float = DAY
) -> TaskRecord:
    now = time.time()
    task = Task.new("job", payload, idempotency_key=key)
    return TaskRecord(task, TaskStatus.PENDING, now, now + deadline, now)


@asynccontextmanager
async def opened(store: SqliteStore) -> AsyncIterator[list[TaskRecord]]:
    """The store, open for the block (an error opening it raised as itself)."""
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(store.run)
            yield [] if store.readonly else await every_unfinished(store)
            nursery.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        if len(group.exceptions) == 1:
            raise group.exceptions[0] from None
        raise


async def on_store_thread(store: SqliteStore, sql: str) -> None:
    """Run *sql* on the store's own connection (a stand-in for what the disk or the
    operator does to the file)."""
    await store._call(lambda: store._connection().execute(sql))


async def test_the_file_is_in_wal_mode_and_each_opening_takes_a_new_epoch(
    tmp_path: Path,
) -> None:
    path = tmp_path / "tasks.db"
    for expected in (1, 2, 3):
        store = SqliteStore(path)
        async with opened(store):
            assert store.epoch == expected
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        epochs = db.execute("SELECT epoch, pid FROM epochs ORDER BY epoch").fetchall()
    assert epochs == [(1, os.getpid()), (2, os.getpid()), (3, os.getpid())]


async def test_a_second_dispatcher_on_the_same_file_is_refused_naming_the_first(
    tmp_path: Path,
) -> None:
    path = tmp_path / "tasks.db"
    async with opened(SqliteStore(path)):
        with pytest.raises(
            StoreError, match=rf"in use by another dispatcher \(process {os.getpid()}\)"
        ):
            async with opened(SqliteStore(path)):
                pass  # pragma: no cover
        # Reading is allowed meanwhile (the command line does it).
        reader = SqliteStore(path, readonly=True)
        async with opened(reader) as resumed:
            assert resumed == []
            assert await reader.tasks() == []
            with pytest.raises(StoreError, match="open read-only"):
                await reader.add(new_record())
    async with opened(SqliteStore(path)):  # the lock went with the first
        pass


async def test_a_database_of_the_previous_schema_version_is_migrated(
    tmp_path: Path,
) -> None:
    path = tmp_path / "tasks.db"
    store = SqliteStore(path)
    # A file as version 1 of the store left it: one task queued, epoch 4.
    db = sqlite3.connect(path, isolation_level=None)
    for statement in _statements(MIGRATIONS[0]):
        db.execute(statement)
    db.execute("PRAGMA user_version = 1")
    db.execute("UPDATE meta SET value = 4 WHERE key = 'epoch'")
    db.close()
    queued = new_record({"left": "behind"})
    async with opened(SqliteStore(path, readonly=True)):
        pass  # a reader does not migrate
    # The queued task, written by the same SQL the version-1 schema took.
    with sqlite3.connect(path) as db:
        SqliteStore(path)._insert(db, queued, encode_dispatch(queued.task))
    async with opened(store) as resumed:
        assert store.epoch == 5
        assert [r.id for r in resumed] == [queued.id]
        assert resumed[0].task.payload == {"left": "behind"}
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone() == (len(MIGRATIONS),)
        assert db.execute("SELECT epoch FROM epochs ORDER BY epoch").fetchall() == [
            (4,),
            (5,),
        ]


async def test_a_database_from_a_newer_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "tasks.db"
    with sqlite3.connect(path) as db:
        db.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    with pytest.raises(
        StoreError, match=r"newer than this trio_pipe knows.*upgrade trio_pipe"
    ):
        async with opened(SqliteStore(path)):
            pass  # pragma: no cover


async def test_a_file_that_is_not_a_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "tasks.db"
    path.write_bytes(b"this is a text file, not a database\n" * 100)
    with pytest.raises(StoreError, match="not a SQLite database"):
        async with opened(SqliteStore(path)):
            pass  # pragma: no cover
    assert path.read_bytes().startswith(b"this is a text file")  # left as it was


async def test_a_missing_directory_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no-such-directory"):
        async with opened(SqliteStore(tmp_path / "no-such-directory" / "tasks.db")):
            pass  # pragma: no cover


async def test_many_submissions_share_few_transactions(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "tasks.db")
    records = [new_record(i) for i in range(300)]
    async with opened(store):
        async with trio.open_nursery() as nursery:
            for record in records:
                nursery.start_soon(store.add, record)
        assert store.committed == 300
        assert store.commits <= 10, store.commits
        assert {r.id for r in await store.tasks(limit=1000)} == {r.id for r in records}


async def test_a_commit_delay_gathers_a_burst_into_one_transaction(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "tasks.db", commit_delay=0.5, max_batch=1000)
    async with opened(store):
        async with trio.open_nursery() as nursery:
            for i in range(50):
                nursery.start_soon(store.add, new_record(i))
        assert (store.commits, store.committed) == (1, 50)


@pytest.mark.parametrize("final", [True, False], ids=["ended", "to be retried"])
async def test_an_attempt_started_and_ended_in_one_transaction_is_written_once(
    tmp_path: Path, final: bool
) -> None:
    store = SqliteStore(tmp_path / "tasks.db", writeback_delay=60)
    statements: list[str] = []
    async with opened(store):
        record = await store.add(new_record(1))
        store._connection().set_trace_callback(statements.append)
        started = time.time()
        error = None if final else TaskError("WORKER_DISCONNECTED", "gone", True)
        status = TaskStatus.COMPLETED if final else TaskStatus.FAILED
        result = TaskResult(record.id, status, payload=7 if final else None, error=error)
        store.dispatched(record.id, 1, "w1", started)
        store.ended(record.id, 1, result, started + 1, final=final)
        store.dispatched(record.id, 1, "w2", started + 2)  # stale: attempt 1 is over
        stored = await store.get(record.id)  # the three changes, one transaction
    writes = [s.split()[0] for s in statements if s.split()[0] in ("UPDATE", "INSERT")]
    assert writes == ["UPDATE", "INSERT", "UPDATE"]  # the last one fenced off
    assert store.stale_writes == 1
    assert stored is not None
    assert stored.status is (TaskStatus.COMPLETED if final else TaskStatus.PENDING)
    assert stored.result == (result if final else None)
    (attempt,) = stored.attempts
    assert (attempt.number, attempt.worker_id, attempt.status, attempt.error) == (
        1,
        "w1",
        status,
        error,
    )
    assert (attempt.started_at, attempt.ended_at) == (started, started + 1)


async def test_two_submissions_with_one_key_in_one_transaction_are_one_task(
    tmp_path: Path,
) -> None:
    store = SqliteStore(tmp_path / "tasks.db", commit_delay=0.5)
    first, second = new_record(1, key="order-42"), new_record(2, key="order-42")
    stored: list[TaskRecord] = []
    async with opened(store):
        async with trio.open_nursery() as nursery:
            for record in (first, second):
                nursery.start_soon(lambda r: _append(stored, store.add(r)), record)
        assert store.commits == 1
        (winner,) = {r.id for r in stored}  # whichever was queued first
        assert winner in (first.id, second.id)
        assert len(await store.tasks()) == 1


async def _append(into: list[TaskRecord], adding: object) -> None:
    into.append(await adding)  # type: ignore[misc]


async def test_a_full_disk_fails_the_submission_and_loses_nothing_accepted(
    tmp_path: Path,
) -> None:
    """SQLITE_FULL, as a full disk gives it; PRAGMA max_page_count stands in for the
    disk (the same error, from the same place in SQLite)."""
    store = SqliteStore(tmp_path / "tasks.db")
    async with opened(store):
        accepted = [await store.add(new_record(i)) for i in range(20)]
        store.dispatched(accepted[0].id, 1, "w1", time.time())
        await store.get(accepted[0].id)  # written
        (pages,) = await store._call(
            lambda: store._connection().execute("PRAGMA page_count").fetchone()
        )
        await on_store_thread(store, f"PRAGMA max_page_count = {pages}")
        with pytest.raises(
            StoreError, match=r"the task was not accepted: .*the disk is full"
        ):
            await store.add(new_record("x" * 200_000))
        # A change made while the disk is full waits, and is written when there is
        # room again; nothing accepted was lost.
        done = TaskResult(accepted[0].id, TaskStatus.COMPLETED, "ok", worker_id="w1")
        store.ended(accepted[0].id, 1, done, time.time(), final=True)
        assert await store.get(accepted[1].id) == accepted[1]  # reading needs no room
        await on_store_thread(store, "PRAGMA max_page_count = 1073741823")
        record = await store.get(accepted[0].id)
        assert record is not None and record.status is TaskStatus.COMPLETED
        listed = await store.tasks(limit=100)
        assert [r.id for r in listed] == [r.id for r in accepted]


async def test_a_database_that_cannot_be_written_fails_the_submission_clearly(
    tmp_path: Path,
) -> None:
    """SQLITE_READONLY, as a read-only file or file system gives it; PRAGMA
    query_only stands in (a test running as root writes read-only files anyway)."""
    store = SqliteStore(tmp_path / "tasks.db")
    async with opened(store):
        accepted = await store.add(new_record(1))
        await on_store_thread(store, "PRAGMA query_only = ON")
        with pytest.raises(StoreError, match=r"cannot be written.*permissions"):
            await store.add(new_record(2))
        await on_store_thread(store, "PRAGMA query_only = OFF")
        assert (await store.get(accepted.id)) == accepted


async def test_a_task_whose_deadline_passed_while_no_dispatcher_ran_times_out(
    tmp_path: Path,
) -> None:
    path = tmp_path / "tasks.db"
    soon, later = new_record(1, deadline=0.5), new_record(2)
    store = SqliteStore(path)
    async with opened(store):
        await store.add(soon)
        await store.add(later)
    await trio.sleep(0.6)
    async with opened(SqliteStore(path)) as resumed:
        assert [r.id for r in resumed] == [later.id]
    async with opened(reader := SqliteStore(path, readonly=True)):
        record = await reader.get(soon.id)
    assert record is not None and record.status is TaskStatus.TIMED_OUT
    assert record.result is not None and record.result.error is not None
    assert record.result.error.code == ErrorCode.TIMEOUT
    assert "the dispatcher was not running" in record.result.error.message


async def test_an_attempt_live_when_the_dispatcher_stopped_is_retried_or_dead_lettered(
    tmp_path: Path,
) -> None:
    path = tmp_path / "tasks.db"
    now = time.time()
    retried = new_record(1)
    exhausted = TaskRecord(
        Task.new("job", 2, max_retries=0), TaskStatus.PENDING, now, now + DAY, now
    )
    store = SqliteStore(path)
    async with opened(store):
        for record in (retried, exhausted):
            await store.add(record)
            store.dispatched(record.id, 1, "w1", time.time())
    store = SqliteStore(path)
    async with opened(store) as resumed:
        assert [r.id for r in resumed] == [retried.id]
        (attempt,) = resumed[0].attempts
        assert attempt.status is TaskStatus.FAILED
        assert attempt.error is not None
        assert attempt.error.code == ErrorCode.DISPATCHER_RESTARTED
        assert attempt.error.retryable
        dead = await store.get(exhausted.id)
    assert dead is not None and dead.status is TaskStatus.FAILED
    assert dead.result is not None and dead.result.error is not None
    assert dead.result.error.code == ErrorCode.DISPATCHER_RESTARTED
    assert dead.task.payload == 2  # a dead letter keeps its payload


async def test_another_programs_database_is_refused_and_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "app.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE users (name TEXT)")
    for store in (SqliteStore(path), SqliteStore(path, readonly=True)):
        with pytest.raises(StoreError, match="not a trio_pipe task store"):
            async with opened(store):
                pass  # pragma: no cover
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT name FROM sqlite_schema").fetchall() == [("users",)]


async def test_reading_a_store_that_does_not_exist_creates_nothing(tmp_path: Path) -> None:
    path = tmp_path / "tasks.db"
    with pytest.raises(StoreError, match="does not exist"):
        async with opened(SqliteStore(path, readonly=True)):
            pass  # pragma: no cover
    assert not os.listdir(tmp_path)
