"""PostgresStore beyond the shared contract: its schema and hot table, the lock that
keeps a second dispatcher out (and goes with a killed one), migrations under an
advisory lock, group commit, and a server that restarts or cannot be reached.

Every test runs against a real PostgreSQL server (tests/conftest.py's throwaway
cluster); skipped where none is installed, unless TRIO_PIPE_REQUIRE_POSTGRES=1.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import psycopg
import pytest
import trio
from helpers import ROOT, every_unfinished, postgres_binaries

from benchmarks import _postgres
from benchmarks._postgres import Cluster
from trio_pipe import ErrorCode, StoreError, Task, TaskError, TaskResult, TaskStatus
from trio_pipe.store import Retention, TaskRecord, store_from_url
from trio_pipe.store._postgres import MIGRATIONS, PostgresStore

DAY = 24 * 3600.0


def new_record(payload: object = None, *, key: str | None = None) -> TaskRecord:
    now = time.time()
    task = Task.new("job", payload, idempotency_key=key)
    return TaskRecord(task, TaskStatus.PENDING, now, now + DAY, now)


@asynccontextmanager
async def opened(store: PostgresStore) -> AsyncIterator[list[TaskRecord]]:
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


def query(url: str, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    """What an operator's psql would see."""
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute(sql, args).fetchall()  # type: ignore[arg-type]


async def test_the_schema_is_made_once_and_each_opening_takes_a_new_epoch(
    postgres_url: str,
) -> None:
    for expected in (1, 2, 3):
        store = PostgresStore(postgres_url)
        async with opened(store):
            assert store.epoch == expected
    assert query(postgres_url, "SELECT version FROM trio_pipe.schema_version") == [
        (len(MIGRATIONS),)
    ]
    tables = query(
        postgres_url,
        "SELECT table_name FROM information_schema.tables "
        "WHERE table_schema = 'trio_pipe' ORDER BY 1",
    )
    assert [t for (t,) in tables] == [
        "attempts",
        "cache",
        "epochs",
        "queue",
        "schema_version",
        "tasks",
    ]
    opened_by = query(postgres_url, "SELECT epoch, pid FROM trio_pipe.epochs ORDER BY 1")
    assert opened_by == [(1, os.getpid()), (2, os.getpid()), (3, os.getpid())]


async def test_the_queue_holds_only_unfinished_tasks_and_pruning_removes_history(
    postgres_url: str,
) -> None:
    store = PostgresStore(postgres_url, retention=Retention(completed=10.0, failed=10.0))
    async with opened(store):
        done, waiting = new_record(1), new_record(2)
        await store.add(done)
        await store.add(waiting)
        now = time.time()
        store.dispatched(done.id, 1, "w1", now)
        store.ended(
            done.id, 1, TaskResult(done.id, TaskStatus.COMPLETED, 2), now, final=True
        )
        await store.get(done.id)  # written
        assert query(postgres_url, "SELECT id FROM trio_pipe.queue") == [(waiting.id,)]
        assert query(postgres_url, "SELECT count(*) FROM trio_pipe.attempts") == [(1,)]
        assert await store.prune(now + 5) == 0  # still kept
        assert await store.prune(now + 11) == 1
        assert [r.id for r in await store.tasks()] == [waiting.id]
        assert query(postgres_url, "SELECT count(*) FROM trio_pipe.attempts") == [(0,)]


async def test_a_second_dispatcher_on_the_same_database_is_refused_naming_the_first(
    postgres_url: str,
) -> None:
    async with opened(first := PostgresStore(postgres_url)):
        await first.add(record := new_record())
        with pytest.raises(
            StoreError, match=r"in use by another dispatcher.*server process"
        ):
            async with opened(PostgresStore(postgres_url, lock_wait=0.2)):
                pass  # pragma: no cover
        reader = PostgresStore(postgres_url, readonly=True)
        async with opened(reader):  # a reader takes no lock
            assert [r.id for r in await reader.tasks()] == [record.id]
            with pytest.raises(StoreError, match="open read-only"):
                await reader.add(new_record())
    async with opened(PostgresStore(postgres_url)):  # the lock went with the first
        pass


OPEN_AND_WAIT = """
import sys, trio
from trio_pipe.store import PostgresStore

async def main():
    async with trio.open_nursery() as nursery:
        await nursery.start(PostgresStore(sys.argv[1]).run)
        print("open", flush=True)
        await trio.sleep_forever()

trio.run(main)
"""


async def test_the_lock_of_a_killed_dispatcher_goes_with_its_connection(
    postgres_url: str,
) -> None:
    """kill -9 leaves no lock behind: the server drops it with the connection."""
    child = await trio.lowlevel.open_process(
        [sys.executable, "-c", OPEN_AND_WAIT, postgres_url], stdout=subprocess.PIPE
    )
    try:
        assert child.stdout is not None
        said = b""
        while not said.endswith(b"\n"):
            chunk = await child.stdout.receive_some()
            assert chunk, "the child exited before opening the store"
            said += chunk
        assert said == b"open\n"
        with pytest.raises(StoreError, match="in use by another dispatcher"):
            async with opened(PostgresStore(postgres_url, lock_wait=0.2)):
                pass  # pragma: no cover
    finally:
        child.kill()  # SIGKILL
        await child.wait()
        assert child.stdout is not None
        await child.stdout.aclose()
    # The server notices the closed socket at once; lock_wait covers the moment.
    async with opened(store := PostgresStore(postgres_url, lock_wait=10)):
        assert store.epoch == 2


def test_two_stores_migrating_at_once_do_not_race(
    new_postgres_database: Callable[[], str],
) -> None:
    """The schema is created under an advisory lock: without it, two concurrent
    ``CREATE SCHEMA IF NOT EXISTS`` collide on the catalog's unique index."""

    def migrate(url: str, barrier: threading.Barrier, errors: list[BaseException]) -> None:
        store = PostgresStore(url)
        with psycopg.connect(url, autocommit=True) as conn:
            barrier.wait()
            try:
                store._migrate(conn)
            except BaseException as exc:  # pragma: no cover (the failure)
                errors.append(exc)

    for _ in range(5):
        url = new_postgres_database()
        barrier = threading.Barrier(4)
        errors: list[BaseException] = []
        threads = [
            threading.Thread(target=migrate, args=(url, barrier, errors)) for _ in range(4)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert errors == []
        assert query(url, "SELECT version FROM trio_pipe.schema_version") == [
            (len(MIGRATIONS),)
        ]


async def test_a_database_from_a_newer_version_is_refused(postgres_url: str) -> None:
    async with opened(PostgresStore(postgres_url)):
        pass
    query(postgres_url, "UPDATE trio_pipe.schema_version SET version = 99 RETURNING 1")
    with pytest.raises(StoreError, match="schema version 99, newer than"):
        async with opened(PostgresStore(postgres_url)):
            pass  # pragma: no cover


async def test_a_reader_of_a_database_without_a_store_is_told_so(postgres_url: str) -> None:
    with pytest.raises(StoreError, match="holds no trio_pipe task store"):
        async with opened(PostgresStore(postgres_url, readonly=True)):
            pass  # pragma: no cover
    assert query(postgres_url, "SELECT to_regnamespace('trio_pipe')") == [(None,)]


async def test_many_submissions_share_few_transactions(postgres_url: str) -> None:
    store = PostgresStore(postgres_url)
    records = [new_record(i) for i in range(300)]
    async with opened(store):
        async with trio.open_nursery() as nursery:
            for record in records:
                nursery.start_soon(store.add, record)
        assert store.committed == 300
        assert store.commits <= 20, store.commits
        assert {r.id for r in await store.tasks(limit=1000)} == {r.id for r in records}


async def test_two_submissions_with_one_key_in_one_transaction_are_one_task(
    postgres_url: str,
) -> None:
    store = PostgresStore(postgres_url, commit_delay=0.5)
    first, second = new_record(1, key="k"), new_record(2, key="k")
    stored: list[TaskRecord] = []
    async with opened(store):
        async with trio.open_nursery() as nursery:
            for record in (first, second):
                nursery.start_soon(lambda r: _append(stored, store.add(r)), record)
        assert store.commits == 1
        (kept,) = {r.id for r in stored}  # whichever came first holds the key
        assert kept in (first.id, second.id)
        assert [r.id for r in await store.tasks()] == [kept]


async def _append(into: list[TaskRecord], added: Any) -> None:
    into.append(await added)


async def test_a_server_restart_fails_one_transaction_and_the_store_connects_again(
    postgres_cluster: Cluster, postgres_url: str
) -> None:
    store = PostgresStore(postgres_url)
    async with opened(store):
        queued = await store.add(new_record(1))
        # On this thread, not a worker thread: the new server dies with the thread
        # that started it (Cluster.start). The store is idle meanwhile.
        postgres_cluster.restart()
        error = TaskError(ErrorCode.CANCELLED, "by the caller")
        cancelled = TaskResult(queued.id, TaskStatus.CANCELLED, error=error)
        store.ended(queued.id, None, cancelled, time.time(), final=True)
        lost = new_record(2)
        with pytest.raises(StoreError, match="cannot be reached or closed the connection"):
            await store.add(lost)  # the transaction that met the closed connection
        accepted = await store.add(new_record(3))  # on a new connection
        assert store.reconnects == 1
        records = {r.id: r for r in await store.tasks()}
        assert records.keys() == {queued.id, accepted.id}  # the change was kept...
        assert records[queued.id].status is TaskStatus.CANCELLED  # ...and written
        with pytest.raises(StoreError, match="in use by another dispatcher"):
            async with opened(PostgresStore(postgres_url, lock_wait=0.2)):
                pass  # pragma: no cover (the lock was taken again)


async def test_a_store_cut_off_does_not_write_once_another_took_the_lock(
    postgres_url: str,
) -> None:
    """Its connection cut (the server ended it), a store connects again only with
    the lock: if another dispatcher took the store meanwhile, it writes nothing."""
    first = PostgresStore(postgres_url, lock_wait=0.2)
    async with opened(first):
        kept = await first.add(new_record(1))
        ((pid,),) = query(
            postgres_url,
            "SELECT pid FROM pg_stat_activity WHERE application_name = 'trio_pipe'",
        )
        query(postgres_url, "SELECT pg_terminate_backend(%s)", pid)
        async with opened(second := PostgresStore(postgres_url)):
            with pytest.raises(StoreError, match="closed the connection"):
                await first.add(new_record(2))
            for attempt in (3, 4):  # each try connects again, and is refused again
                with pytest.raises(StoreError, match="in use by another dispatcher"):
                    await first.add(new_record(attempt))
            assert [r.id for r in await second.tasks()] == [kept.id]
            assert first.reconnects == 0


async def test_an_unreachable_server_is_a_clear_error_without_the_password(
    postgres_cluster: Cluster,
) -> None:
    with trio.socket.socket() as unused:
        await unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    store = store_from_url(f"postgresql://postgres:s3cret@127.0.0.1:{port}/x")
    assert "s3cret" not in repr(store)
    with pytest.raises(StoreError, match="cannot be reached") as raised:
        async with opened(store):  # type: ignore[arg-type]
            pass  # pragma: no cover
    assert "s3cret" not in str(raised.value)
    assert "postgres:***@127.0.0.1" in str(raised.value)


def test_a_url_passes_libpq_options_through_and_keeps_the_stores() -> None:
    store = store_from_url(
        "postgresql://u@db.example/tasks?sslmode=require&commit_delay=0.002"
    )
    assert isinstance(store, PostgresStore)
    assert store.dsn == "postgresql://u@db.example/tasks?sslmode=require"
    assert (store.commit_delay, store.writeback_delay) == (0.002, 0.01)
    with pytest.raises(ValueError, match="writeback_delay must be seconds"):
        store_from_url("postgres://u:pw@db/tasks?writeback_delay=x")


@pytest.mark.parametrize("required", [False, True])
def test_without_postgresql_the_tests_skip_saying_why_unless_it_is_required(
    monkeypatch: pytest.MonkeyPatch, required: bool
) -> None:
    monkeypatch.setattr(_postgres, "find_binaries", lambda: None)
    monkeypatch.setenv("TRIO_PIPE_REQUIRE_POSTGRES", "1" if required else "")
    outcome = pytest.fail.Exception if required else pytest.skip.Exception
    with pytest.raises(outcome, match="no PostgreSQL server binaries"):
        postgres_binaries()


CLUSTER_AND_WAIT = """
import sys, time
sys.path.insert(0, sys.argv[1])
from benchmarks._postgres import find_binaries, throwaway_cluster

with throwaway_cluster(find_binaries(), durable=False) as cluster:
    print(cluster.port, cluster.directory, flush=True)
    time.sleep(600)
"""


async def test_the_server_of_a_killed_run_stops_with_it(postgres_cluster: Cluster) -> None:
    """The cluster's server dies with the process that started it, even by SIGKILL
    (a parent-death signal), so a killed test run leaves no server behind."""
    child = await trio.lowlevel.open_process(
        [sys.executable, "-c", CLUSTER_AND_WAIT, str(ROOT)], stdout=subprocess.PIPE
    )
    assert child.stdout is not None
    said = b""
    while not said.endswith(b"\n"):
        chunk = await child.stdout.receive_some()
        assert chunk, "the child exited before starting its cluster"
        said += chunk
    port, directory = said.decode().split()
    try:
        await trio.to_thread.run_sync(
            query, f"postgresql://postgres@127.0.0.1:{port}/postgres", "SELECT 1"
        )
        child.kill()
        await child.wait()
        with trio.fail_after(30):
            # Not our child, so nothing to wait on but its port closing.
            while await _accepts(int(port)):  # noqa: ASYNC110
                await trio.sleep(0.05)
    finally:
        await child.stdout.aclose()
        shutil.rmtree(directory, ignore_errors=True)  # the one thing left behind


async def _accepts(port: int) -> bool:
    try:
        stream = await trio.open_tcp_stream("127.0.0.1", port)
    except OSError:
        return False
    await stream.aclose()
    return True
