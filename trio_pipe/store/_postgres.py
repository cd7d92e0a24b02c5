"""PostgresStore: the durable store in a PostgreSQL database, on psycopg 3.

The only module that imports psycopg (the ``postgres`` extra). psycopg does not run
on Trio, so its blocking connection is driven from worker threads, as SqliteStore
drives ``sqlite3``: one connection, used by one thread at a time under a one-token
:class:`trio.CapacityLimiter` (docs/architecture.md gives the measurements behind
that choice). Writes are **group-committed** as in SqliteStore: the scheduler's
changes and the submissions waiting in ``add()`` collect while the previous
transaction commits, and the writer sends them all in the next one, in psycopg's
pipeline mode: the batch costs the round trips of its transaction (begin, the
statements together, commit), not one per statement.

The schema lives in its own PostgreSQL schema, ``trio_pipe``:

- ``tasks``: every task the store keeps, written when it is submitted and when it
  ends (its payload, its outcome); the idempotency key is unique among them by a
  partial unique index.
- ``queue``: the hot table, one narrow row per task not yet finished (its live
  status and attempt: the fence). Dispatches and retries change only this row;
  a task's row leaves the queue when the task ends, so the table stays as small as
  the backlog.
- ``attempts``: the history, one row per attempt.
- ``epochs``: one row per opening (the epoch, and who opened the store).

Versioned migrations (:data:`MIGRATIONS`, ``schema_version``) are applied at
opening, in one transaction under a transaction-level advisory lock, so dispatchers
(or ``trio-pipe tasks`` commands) starting at once do not race. While it runs, a
dispatcher holds a session-level advisory lock: a second one is refused, as a second
SqliteStore is by its lock file, and the server drops the lock when the dispatcher's
connection ends, however the process ends. (Several dispatchers sharing one queue
are the next step: docs/scale-out.md.)

A lost connection (the server restarted, a network cut) fails the transaction in
flight -- its submissions raise :class:`StoreError`; its changes stay pending -- and
the next call connects again and takes the lock again.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final, TypeVar

import orjson
import psycopg
import trio

from .._backoff import backoff_delay
from .._errors import StoreError, TaskNotFound
from ..protocol import TaskError, TaskResult, TaskResultMessage, TaskStatus, encode
from ._base import Store
from ._records import (
    AttemptRecord,
    CachedResult,
    Retention,
    TaskRecord,
    recover,
    requeued,
)
from ._sqlite import _DISPATCHED, _ENDED, _WRITE_ERROR_BACKOFF, _Add, _Change, _record
from ._url import redacted

__all__ = ["MIGRATIONS", "PostgresStore"]

log = logging.getLogger("trio_pipe.store")

T = TypeVar("T")

#: Advisory lock keys (two int4s: trio_pipe's, then which lock).
_LOCK_CLASS: Final = 0x7470_6970  # "tpip"
_SERVE_LOCK: Final = 1  # session-level: held by the dispatcher using the store
_MIGRATE_LOCK: Final = 2  # transaction-level: held while the schema is checked/migrated

MIGRATIONS: Final[tuple[str, ...]] = (
    # 1: tasks, the queue of unfinished ones, attempts, epochs.
    """
    CREATE TABLE trio_pipe.tasks (
        seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, -- submission order
        id uuid NOT NULL UNIQUE,
        task_type text NOT NULL,
        status text NOT NULL,            -- once finished; 'Pending' while queued
        idempotency_key text,
        submitted_at double precision NOT NULL,
        deadline double precision NOT NULL,
        updated_at double precision NOT NULL,
        finished_at double precision,
        placement text,
        counted_from integer NOT NULL DEFAULT 0,
        created_at text NOT NULL,
        timeout_ms bigint NOT NULL,
        priority smallint NOT NULL,
        max_retries integer NOT NULL,
        trace_id text,
        frame text,                      -- the TaskDispatch; NULL once completed
        result text                      -- the final TaskResult message
    );
    CREATE UNIQUE INDEX tasks_by_key ON trio_pipe.tasks (idempotency_key)
        WHERE idempotency_key IS NOT NULL;
    CREATE INDEX tasks_by_status ON trio_pipe.tasks (status, seq);
    CREATE INDEX tasks_by_finish ON trio_pipe.tasks (finished_at)
        WHERE finished_at IS NOT NULL;
    CREATE TABLE trio_pipe.queue (
        id uuid PRIMARY KEY REFERENCES trio_pipe.tasks (id) ON DELETE CASCADE,
        seq bigint NOT NULL,
        priority smallint NOT NULL,
        status text NOT NULL CHECK (status IN ('Pending', 'Dispatched')),
        attempt integer NOT NULL,        -- the live (or last) attempt's number
        updated_at double precision NOT NULL
    ) WITH (
        fillfactor = 70,                 -- room for HOT updates in place
        autovacuum_vacuum_scale_factor = 0.0,
        autovacuum_vacuum_threshold = 1000,
        autovacuum_vacuum_insert_scale_factor = 0.0,
        autovacuum_vacuum_insert_threshold = 1000
    );
    CREATE INDEX queue_waiting ON trio_pipe.queue (priority DESC, seq)
        WHERE status = 'Pending';
    CREATE TABLE trio_pipe.attempts (
        task_id uuid NOT NULL REFERENCES trio_pipe.tasks (id) ON DELETE CASCADE,
        number integer NOT NULL,
        epoch bigint NOT NULL,
        worker_id text NOT NULL,
        started_at double precision NOT NULL,
        ended_at double precision,
        status text,
        error_code text,
        error_message text,
        error_retryable boolean,
        PRIMARY KEY (task_id, number)
    );
    CREATE TABLE trio_pipe.epochs (
        epoch bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        opened_at double precision NOT NULL,
        pid integer NOT NULL,
        host text NOT NULL
    );
    """,
    # 2: cached results of workflow steps (payload: JSON text).
    """
    CREATE TABLE trio_pipe.cache (
        key text PRIMARY KEY,
        payload text NOT NULL,
        worker_id text NOT NULL,
        stored_at double precision NOT NULL
    );
    CREATE INDEX cache_by_time ON trio_pipe.cache (stored_at);
    """,
)

# A task's columns as _record reads them (the same order as SqliteStore's): the live
# status and update time come from its queue row while it has one.
_TASK_COLUMNS = (
    "t.id::text, t.task_type, COALESCE(q.status, t.status), t.idempotency_key, "
    "t.submitted_at, t.deadline, COALESCE(q.updated_at, t.updated_at), t.finished_at, "
    "t.placement, t.counted_from, t.created_at, t.timeout_ms, t.priority, "
    "t.max_retries, t.trace_id, t.frame, t.result"
)
#: One statement of a group commit, with its parameters.
_Statement = tuple[str, Sequence[Any] | Mapping[str, Any]]

_FROM = "FROM trio_pipe.tasks t LEFT JOIN trio_pipe.queue q ON q.id = t.id"


def _status_is(status: TaskStatus) -> str:
    """The condition for tasks with *status* (one parameter): a finished task's is in
    ``tasks`` (indexed), an unfinished one's in its ``queue`` row."""
    return "t.status = %s" if status.is_terminal else "q.status = %s"


class PostgresStore(Store):
    """Tasks in a PostgreSQL database: accepted tasks survive a crash of the process,
    and of the machine it runs on.

    - *dsn*: a libpq connection string or ``postgresql://`` URL. The tables are made
      in the schema ``trio_pipe`` of that database on first opening.
    - *commit_delay*, *writeback_delay*, *max_batch*, *retention*, *prune_interval*
      and *readonly*: as for :class:`~trio_pipe.store.SqliteStore`.
    - *connect_timeout*: seconds to wait for the server when connecting;
      *lock_wait*, for another dispatcher to let go of the store (one that is closing)
      before giving up with :class:`StoreError`.
    """

    durable = True

    def __init__(
        self,
        dsn: str,
        *,
        commit_delay: float = 0.0,
        writeback_delay: float = 0.01,
        max_batch: int = 4096,
        retention: Retention = Retention(),  # noqa: B008 (frozen)
        prune_interval: float = 60.0,
        connect_timeout: float = 10.0,
        lock_wait: float = 2.0,
        readonly: bool = False,
    ) -> None:
        if min(commit_delay, writeback_delay) < 0 or max_batch < 1 or prune_interval <= 0:
            raise ValueError(
                "commit_delay and writeback_delay must be >= 0, max_batch >= 1 and "
                "prune_interval > 0"
            )
        if connect_timeout <= 0 or lock_wait <= 0:
            raise ValueError("connect_timeout and lock_wait must be > 0")
        self.dsn = dsn
        self.commit_delay = commit_delay
        self.writeback_delay = writeback_delay
        self.max_batch = max_batch
        self.retention = retention
        self.prune_interval = prune_interval
        self.connect_timeout = connect_timeout
        self.lock_wait = lock_wait
        self.readonly = readonly
        #: Changes that named an attempt that was not the task's live one (fencing).
        self.stale_writes = 0
        #: Group commits made, and the submissions and changes they carried.
        self.commits = 0
        self.committed = 0
        #: Connections made again after one was lost.
        self.reconnects = 0
        self._name = redacted(dsn)
        self._db: psycopg.Connection[Any] | None = None
        self._opened = False
        self._limiter = trio.CapacityLimiter(1)
        self._pending: list[_Change | _Add] = []
        self._adds = 0
        self._wake = trio.Event()
        self._failures = 0

    def __repr__(self) -> str:
        return f"PostgresStore({self._name!r})"

    # -- opening and closing ---------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None]) -> None:
        await self._call(self._open, time.time())
        try:
            task_status.started()
            if self.readonly:
                await trio.sleep_forever()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._write_loop)
                nursery.start_soon(self._prune_loop)
        finally:
            with trio.CancelScope(shield=True):
                if not self.readonly:
                    await self._write_pending()
                await self._call(self._close)

    def _open(self, now: float) -> None:
        try:
            db = self._connect()
            if self.readonly:
                if self._check_version(db) == 0:
                    raise StoreError(f"{self._name} holds no trio_pipe task store (yet)")
            else:
                self._migrate(db)
                with db.transaction():
                    self._begin_epoch(db, now)
            self._opened = True
        except BaseException:
            self._close()
            raise

    def _connect(self) -> psycopg.Connection[Any]:
        """A new connection (holding the dispatcher's lock unless read-only)."""
        options = "-c default_transaction_read_only=on" if self.readonly else ""
        db = psycopg.connect(
            self.dsn,
            autocommit=True,
            connect_timeout=max(1, round(self.connect_timeout)),
            application_name="trio_pipe",
            options=options,
        )
        self._db = db
        if not self.readonly:
            try:
                self._lock(db)
            except BaseException:
                self._close()  # never a connection without the lock
                raise
        return db

    def _lock(self, db: psycopg.Connection[Any]) -> None:
        """Take the dispatcher's lock, waiting up to ``lock_wait`` for a holder that
        is going (the server releases a closed connection's locks a moment later)."""
        db.execute("SELECT set_config('lock_timeout', %s, false)", (f"{self.lock_wait}s",))
        try:
            db.execute("SELECT pg_advisory_lock(%s, %s)", (_LOCK_CLASS, _SERVE_LOCK))
        except psycopg.errors.LockNotAvailable:
            holder = db.execute(
                "SELECT a.pid, a.client_addr::text FROM pg_locks l "
                "JOIN pg_stat_activity a ON a.pid = l.pid "
                "WHERE l.locktype = 'advisory' AND l.database = a.datid "
                "AND l.classid = %s AND l.objid = %s AND l.granted",
                (_LOCK_CLASS, _SERVE_LOCK),
            ).fetchone()
            who = "unknown" if holder is None else f"server process {holder[0]}"
            if holder is not None and holder[1]:
                who += f", client {holder[1]}"
            raise StoreError(
                f"{self._name} is in use by another dispatcher ({who}); one store "
                "serves one dispatcher at a time"
            ) from None
        finally:
            if not db.broken:
                db.execute("RESET lock_timeout")

    def _close(self) -> None:
        db, self._db = self._db, None
        if db is None:
            return
        if not self.readonly and not db.broken:
            # Released now, not when the server notices the connection gone.
            with contextlib.suppress(psycopg.Error):
                db.execute("SELECT pg_advisory_unlock_all()")
        db.close()

    def _check_version(self, db: psycopg.Connection[Any]) -> int:
        row = db.execute("SELECT to_regclass('trio_pipe.schema_version')").fetchone()
        if row is None or row[0] is None:
            return 0
        version_row = db.execute("SELECT version FROM trio_pipe.schema_version").fetchone()
        version = 0 if version_row is None else int(version_row[0])
        if version > len(MIGRATIONS):
            raise StoreError(
                f"{self._name} has schema version {version}, newer than this trio_pipe "
                f"knows ({len(MIGRATIONS)}): upgrade trio_pipe to open it"
            )
        return version

    def _migrate(self, db: psycopg.Connection[Any]) -> None:
        with db.transaction():
            # Whoever comes second waits here, then finds the schema migrated.
            db.execute("SELECT pg_advisory_xact_lock(%s, %s)", (_LOCK_CLASS, _MIGRATE_LOCK))
            db.execute("CREATE SCHEMA IF NOT EXISTS trio_pipe")
            db.execute(
                "CREATE TABLE IF NOT EXISTS trio_pipe.schema_version (version integer "
                "NOT NULL)"
            )
            version = self._check_version(db)
            if version == 0:
                db.execute("DELETE FROM trio_pipe.schema_version")
                db.execute("INSERT INTO trio_pipe.schema_version VALUES (0)")
            for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
                db.execute(script)
                db.execute("UPDATE trio_pipe.schema_version SET version = %s", (number,))
                log.info("%s: schema migrated to version %d", self._name, number)

    def _begin_epoch(self, db: psycopg.Connection[Any], now: float) -> None:
        row = db.execute(
            "INSERT INTO trio_pipe.epochs (opened_at, pid, host) VALUES (%s, %s, %s) "
            "RETURNING epoch",
            (now, os.getpid(), socket.gethostname()),
        ).fetchone()
        assert row is not None
        self.epoch = int(row[0])
        # What was on a worker (as many as the workers held): the rest is paged.
        self._recover(db, self._select(db, "WHERE q.status = 'Dispatched'", ()), now)

    def _recover(
        self, db: psycopg.Connection[Any], records: list[TaskRecord], now: float
    ) -> list[TaskRecord]:
        """:func:`recover` each record, writing what changed; the ones unfinished."""
        unfinished = []
        for record in records:
            after = recover(record, now)
            if after is not record:
                self._write_record(db, record, after)
            if not after.done:
                unfinished.append(after)
        return unfinished

    def _write_record(
        self, db: psycopg.Connection[Any], before: TaskRecord, after: TaskRecord
    ) -> None:
        """Store what :func:`recover` changed: the last attempt, status and result."""
        if after.attempts != before.attempts:
            attempt = after.attempts[-1]
            db.execute(
                *_end_attempt(
                    after.id,
                    attempt.number,
                    attempt.ended_at,
                    attempt.status,
                    attempt.error,
                )
            )
        if after.done:
            assert after.result is not None
            db.execute("DELETE FROM trio_pipe.queue WHERE id = %s", (after.id,))
            db.execute(
                "UPDATE trio_pipe.tasks SET status = %s, updated_at = %s, "
                "finished_at = %s, result = %s WHERE id = %s",
                (
                    after.status.value,
                    after.updated_at,
                    after.finished_at,
                    encode(TaskResultMessage(after.result)),
                    after.id,
                ),
            )
        else:
            db.execute(
                "UPDATE trio_pipe.queue SET status = %s, updated_at = %s WHERE id = %s",
                (after.status.value, after.updated_at, after.id),
            )

    async def unfinished(
        self, after: object | None, limit: int
    ) -> tuple[list[TaskRecord], object | None]:
        return await self._read(self._unfinished, after, limit, time.time())

    def _unfinished(
        self, db: psycopg.Connection[Any], after: object | None, limit: int, now: float
    ) -> tuple[list[TaskRecord], object | None]:
        where, args = "status = 'Pending'", []
        if isinstance(after, tuple):  # keyset paging: (priority, seq) of the last row
            where += " AND (priority < %s OR (priority = %s AND seq > %s))"
            args = [after[0], after[0], after[1]]
        keys = db.execute(
            f"SELECT priority, seq FROM trio_pipe.queue WHERE {where} "
            "ORDER BY priority DESC, seq LIMIT %s",
            (*args, limit),
        ).fetchall()
        if not keys:
            return [], None
        records = self._select(
            db,
            "WHERE t.seq = ANY(%s) ORDER BY t.priority DESC, t.seq",
            ([seq for _, seq in keys],),
        )
        if any(r.deadline <= now for r in records):  # some end here: write them
            with db.transaction():
                page = self._recover(db, records, now)
        else:
            page = records
        return page, (tuple(keys[-1]) if len(keys) == limit else None)

    # -- the writer ------------------------------------------------------------------

    def dispatched(
        self, task_id: uuid.UUID, attempt: int, worker_id: str, at: float
    ) -> None:
        self._queue((_DISPATCHED, task_id, attempt, worker_id, at))

    def ended(
        self,
        task_id: uuid.UUID,
        attempt: int | None,
        result: TaskResult,
        at: float,
        *,
        final: bool,
    ) -> None:
        self._queue((_ENDED, task_id, attempt, result, at, final))

    def _queue(self, item: _Change | _Add) -> None:
        self._pending.append(item)
        self._wake.set()

    async def _write_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake = trio.Event()
            await self._gather()
            if not await self._write_pending():
                # The server refused or is gone: try the changes again later.
                self._failures += 1
                await trio.sleep(backoff_delay(self._failures - 1, *_WRITE_ERROR_BACKOFF))
                self._wake.set()
            else:
                self._failures = 0

    async def _gather(self) -> None:
        """Let more join the next transaction: for ``commit_delay`` once a
        submission waits, for ``writeback_delay`` while only changes do, never past
        ``max_batch``."""
        start = trio.current_time()
        while len(self._pending) < self.max_batch:
            delay = self.commit_delay if self._adds else self.writeback_delay
            if trio.current_time() >= start + delay:
                return
            with trio.move_on_at(start + delay):
                await self._wake.wait()
            self._wake = trio.Event()

    async def _write_pending(self) -> bool:
        """Commit everything pending in one transaction; False if it failed (the
        submissions in it then raise :class:`StoreError`; the changes stay pending)."""
        batch, self._pending, self._adds = self._pending, [], 0
        if not batch:
            return True
        try:
            # Shielded: a batch taken is a batch written (or given back on error).
            with trio.CancelScope(shield=True):
                stored = await self._call(self._commit, batch)
        except StoreError as error:
            log.error("%s", error)
            self._pending[:0] = [item for item in batch if not isinstance(item, _Add)]
            for item in batch:
                if isinstance(item, _Add):
                    item.error = error
                    item.done.set()
            return False
        for item, record in zip(
            (i for i in batch if isinstance(i, _Add)), stored, strict=True
        ):
            item.stored = record
            item.done.set()
        return True

    def _commit(self, batch: Sequence[_Change | _Add]) -> list[TaskRecord]:
        """One transaction: every statement of the batch sent in one pipeline, then
        the row counts read (a change that moved no row was fenced off), then the
        tasks whose id or idempotency key was taken read back."""
        db = self._connection()
        statements: list[_Statement] = []
        for item in batch:
            if isinstance(item, _Add):
                statements.append(_insert(item.record, item.frame))
            elif item[0] == _DISPATCHED:
                _, task_id, attempt, worker_id, at = item
                statements.append(_dispatch(task_id, attempt, worker_id, at, self.epoch))
            else:
                statements.append(_end(*item[1:]))
        with db.transaction():
            with db.pipeline():
                cursors = [db.execute(sql, args) for sql, args in statements]
            moved = [cursor.rowcount for cursor in cursors]
            stored = []
            for item, rows in zip(batch, moved, strict=True):
                if isinstance(item, _Add):
                    stored.append(item.record if rows == 1 else self._holder(db, item))
                elif rows != 1:
                    self.stale_writes += 1
        self.commits += 1
        self.committed += len(batch)
        return stored

    def _holder(self, db: psycopg.Connection[Any], item: _Add) -> TaskRecord:
        """The task that holds the id or the idempotency key of a submission."""
        task = item.record.task
        (existing,) = self._select(
            db,
            "WHERE t.id = %s OR t.idempotency_key = %s LIMIT 1",
            (task.id, task.metadata.idempotency_key),
        )
        return existing

    async def _prune_loop(self) -> None:
        while True:
            await trio.sleep(self.prune_interval)
            pruned = await self.prune(time.time())
            if pruned:
                log.info("%s: pruned %d finished tasks", self._name, pruned)

    # -- waits -----------------------------------------------------------------------

    async def add(self, record: TaskRecord) -> TaskRecord:
        self._writable()
        item = _Add(record)
        self._adds += 1
        self._queue(item)
        # Shielded: once queued, the task is written whatever the caller does, so
        # the caller learns how that went (commits are short, and failures raise).
        with trio.CancelScope(shield=True):
            await item.done.wait()
        if item.error is not None:
            raise StoreError(f"the task was not accepted: {item.error}") from item.error
        assert item.stored is not None
        return item.stored

    async def get(self, task_id: uuid.UUID) -> TaskRecord | None:
        records = await self._read(self._select, "WHERE t.id = %s", (task_id,))
        return records[0] if records else None

    async def tasks(
        self,
        *,
        status: TaskStatus | None = None,
        task_type: str | None = None,
        submitted_after: float | None = None,
        submitted_before: float | None = None,
        limit: int = 100,
        after: uuid.UUID | None = None,
    ) -> list[TaskRecord]:
        where: list[str] = ["true"]
        args: list[Any] = []
        if status is not None:
            where.append(_status_is(status))
            args.append(status.value)
        if task_type is not None:
            where.append("t.task_type = %s")
            args.append(task_type)
        if submitted_after is not None:
            where.append("t.submitted_at >= %s")
            args.append(submitted_after)
        if submitted_before is not None:
            where.append("t.submitted_at < %s")
            args.append(submitted_before)
        if after is not None:
            where.append("t.seq > (SELECT seq FROM trio_pipe.tasks WHERE id = %s)")
            args.append(after)
            if await self.get(after) is None:
                raise TaskNotFound(f"no task {after} to list after")
        clause = f"WHERE {' AND '.join(where)} ORDER BY t.seq LIMIT %s"
        return await self._read(self._select, clause, (*args, limit))

    async def count(self, *, status: TaskStatus | None = None) -> int:
        def count(db: psycopg.Connection[Any]) -> int:
            if status is None:
                row = db.execute("SELECT count(*) FROM trio_pipe.tasks").fetchone()
            else:
                row = db.execute(
                    f"SELECT count(*) {_FROM} WHERE {_status_is(status)}",
                    (status.value,),
                ).fetchone()
            assert row is not None
            return int(row[0])

        return await self._read(count)

    async def requeue(self, task_id: uuid.UUID, at: float) -> TaskRecord:
        self._writable()
        return await self._read(self._requeue, task_id, at)

    def _requeue(
        self, db: psycopg.Connection[Any], task_id: uuid.UUID, at: float
    ) -> TaskRecord:
        with db.transaction():
            found = self._select(db, "WHERE t.id = %s FOR UPDATE OF t", (task_id,))
            if not found:
                raise TaskNotFound(f"no task {task_id}")
            record = requeued(found[0], at)
            db.execute(
                "UPDATE trio_pipe.tasks SET status = 'Pending', deadline = %s, "
                "counted_from = %s, result = NULL, finished_at = NULL, updated_at = %s "
                "WHERE id = %s",
                (record.deadline, record.counted_from, at, task_id),
            )
            db.execute(
                "INSERT INTO trio_pipe.queue (id, seq, priority, status, attempt, "
                "updated_at) SELECT id, seq, priority, 'Pending', %s, %s "
                "FROM trio_pipe.tasks WHERE id = %s",
                (len(record.attempts), at, task_id),
            )
        return record

    async def purge(
        self,
        *,
        task_ids: frozenset[uuid.UUID] | None = None,
        status: TaskStatus | None = None,
        finished_before: float | None = None,
    ) -> int:
        self._writable()
        where: list[str] = ["finished_at IS NOT NULL"]
        args: list[Any] = []
        if task_ids is not None:
            where.append("id = ANY(%s)")
            args.append(list(task_ids))
        if status is not None:
            where.append("status = %s")
            args.append(status.value)
        if finished_before is not None:
            where.append("finished_at < %s")
            args.append(finished_before)
        return await self._read(self._delete, " AND ".join(where), args)

    async def prune(self, now: float) -> int:
        self._writable()
        completed, failed = self.retention.cutoffs(now)
        where = []
        args: list[Any] = []
        if completed is not None:
            where.append("(status = 'Completed' AND finished_at < %s)")
            args.append(completed)
        if failed is not None:
            where.append("(status <> 'Completed' AND finished_at < %s)")
            args.append(failed)
        pruned = 0
        if where:
            pruned += await self._read(
                self._delete, f"finished_at IS NOT NULL AND ({' OR '.join(where)})", args
            )
        if self.retention.cached is not None:
            cutoff = now - self.retention.cached
            pruned += await self._read(self._prune_cache, cutoff)
        return pruned

    def _prune_cache(self, db: psycopg.Connection[Any], cutoff: float) -> int:
        with db.transaction():
            return db.execute(
                "DELETE FROM trio_pipe.cache WHERE stored_at < %s", (cutoff,)
            ).rowcount

    async def cache_get(self, key: str) -> CachedResult | None:
        row = await self._read(
            lambda db: db.execute(
                "SELECT payload, worker_id, stored_at FROM trio_pipe.cache WHERE key = %s",
                (key,),
            ).fetchone()
        )
        if row is None:
            return None
        return CachedResult(key, orjson.loads(row[0]), row[1], row[2])

    async def cache_put(self, entry: CachedResult) -> None:
        self._writable()
        payload = orjson.dumps(entry.payload).decode()  # raises here if not JSON
        await self._read(self._cache_put, entry, payload)

    def _cache_put(
        self, db: psycopg.Connection[Any], entry: CachedResult, payload: str
    ) -> None:
        with db.transaction():
            db.execute(
                "INSERT INTO trio_pipe.cache (key, payload, worker_id, stored_at) "
                "VALUES (%s, %s, %s, %s) ON CONFLICT (key) DO UPDATE SET "
                "payload = EXCLUDED.payload, worker_id = EXCLUDED.worker_id, "
                "stored_at = EXCLUDED.stored_at",
                (entry.key, payload, entry.worker_id, entry.stored_at),
            )

    def _delete(self, db: psycopg.Connection[Any], where: str, args: Sequence[Any]) -> int:
        # A finished task has no queue row; its attempts go with it (ON DELETE CASCADE).
        with db.transaction():
            return db.execute(
                f"DELETE FROM trio_pipe.tasks WHERE {where}",
                args,
            ).rowcount

    # -- reading ---------------------------------------------------------------------

    def _select(
        self, db: psycopg.Connection[Any], clause: str, args: Sequence[Any]
    ) -> list[TaskRecord]:
        rows = db.execute(
            f"SELECT {_TASK_COLUMNS} {_FROM} {clause}",
            args,
        ).fetchall()
        if not rows:
            return []
        attempts: dict[str, list[AttemptRecord]] = {row[0]: [] for row in rows}
        for a in db.execute(
            "SELECT task_id::text, number, epoch, worker_id, started_at, ended_at, "
            "status, error_code, error_message, error_retryable "
            "FROM trio_pipe.attempts WHERE task_id = ANY(%s::uuid[]) "
            "ORDER BY task_id, number",
            (list(attempts),),
        ):
            attempts[a[0]].append(
                AttemptRecord(
                    a[1],
                    a[2],
                    a[3],
                    a[4],
                    a[5],
                    None if a[6] is None else TaskStatus(a[6]),
                    None if a[7] is None else TaskError(a[7], a[8], bool(a[9])),
                )
            )
        return [_record(row, tuple(attempts[row[0]])) for row in rows]

    async def _read(self, function: Callable[..., T], *args: Any) -> T:
        """Run *function(db, ...)* on the store's thread, after what is pending."""
        if not self.readonly:
            await self._write_pending()
        return await self._call(lambda: function(self._connection(), *args))

    async def _call(self, function: Callable[..., T], *args: Any) -> T:
        try:
            return await trio.to_thread.run_sync(function, *args, limiter=self._limiter)
        except psycopg.Error as exc:
            if self._db is not None and self._db.broken:
                self._close()  # the next call connects again
            raise StoreError(f"task store {self._name}: {_describe(exc)}") from exc

    def _connection(self) -> psycopg.Connection[Any]:
        """The open connection; a new one (and the lock again) after one was lost."""
        if not self._opened:
            raise StoreError(f"task store {self._name} is not open")
        if self._db is None or self._db.closed:
            self._db = None
            self._connect()
            self.reconnects += 1
            log.warning("%s: connected again", self._name)
        assert self._db is not None
        return self._db

    def _writable(self) -> None:
        if self.readonly:
            raise StoreError(f"task store {self._name} is open read-only")


# -- the statements of a group commit: one each, so that a pipeline carries them ------


def _insert(record: TaskRecord, frame: str) -> _Statement:
    """A new task, and its queue row; no row at all if its id or key is taken."""
    task = record.task
    metadata = task.metadata
    return (
        "WITH t AS (INSERT INTO trio_pipe.tasks (id, task_type, status, "
        "idempotency_key, submitted_at, deadline, updated_at, placement, counted_from, "
        "created_at, timeout_ms, priority, max_retries, trace_id, frame) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
        "ON CONFLICT DO NOTHING RETURNING id, seq, priority, updated_at) "
        "INSERT INTO trio_pipe.queue (id, seq, priority, status, attempt, updated_at) "
        "SELECT id, seq, priority, 'Pending', 0, updated_at FROM t",
        (
            task.id,
            task.task_type,
            record.status.value,
            metadata.idempotency_key,
            record.submitted_at,
            record.deadline,
            record.updated_at,
            record.placement,
            record.counted_from,
            metadata.created_at.isoformat(),
            metadata.timeout_ms,
            int(metadata.priority),
            metadata.max_retries,
            metadata.trace_id,
            frame,
        ),
    )


def _dispatch(
    task_id: uuid.UUID, attempt: int, worker_id: str, at: float, epoch: int
) -> _Statement:
    """Attempt *attempt* starts, if the task waits and has had no later one."""
    return (
        "WITH q AS (UPDATE trio_pipe.queue SET status = 'Dispatched', attempt = %s, "
        "updated_at = %s WHERE id = %s AND status = 'Pending' AND attempt < %s "
        "RETURNING id) "
        "INSERT INTO trio_pipe.attempts (task_id, number, epoch, worker_id, started_at) "
        "SELECT id, %s, %s, %s, %s FROM q",
        (attempt, at, task_id, attempt, attempt, epoch, worker_id, at),
    )


def _end(
    task_id: uuid.UUID,
    attempt: int | None,
    result: TaskResult,
    at: float,
    final: bool,
) -> _Statement:
    """The live attempt (``None``: the waiting task) ends; fenced in the statement
    itself: the queue row must still be at that attempt, in that state."""
    fence = (
        "status = 'Pending'"
        if attempt is None
        else "status = 'Dispatched' AND attempt = %(attempt)s"
    )
    args: dict[str, Any] = {"id": task_id, "attempt": attempt, "at": at}
    if final:
        # The task leaves the queue; its row in tasks takes the outcome.
        completed = result.status is TaskStatus.COMPLETED
        args |= {"status": result.status.value, "result": encode(TaskResultMessage(result))}
        queue = f"DELETE FROM trio_pipe.queue WHERE id = %(id)s AND {fence} RETURNING id"
        task = (
            "UPDATE trio_pipe.tasks SET status = %(status)s, result = %(result)s, "
            "finished_at = %(at)s, updated_at = %(at)s"
            f"{', frame = NULL' if completed else ''} WHERE id IN (SELECT id FROM q)"
        )
    else:
        queue = (
            "UPDATE trio_pipe.queue SET status = 'Pending', updated_at = %(at)s "
            f"WHERE id = %(id)s AND {fence} RETURNING id"
        )
        task = None
    if attempt is None:
        if task is None:
            return f"WITH q AS ({queue}) SELECT FROM q", args  # rowcount: 1 or 0
        return f"WITH q AS ({queue}) {task}", args
    error = result.error
    args |= {
        "astatus": result.status.value,
        "code": None if error is None else error.code,
        "message": None if error is None else error.message,
        "retryable": None if error is None else error.retryable,
    }
    ended = (
        "UPDATE trio_pipe.attempts SET ended_at = %(at)s, status = %(astatus)s, "
        "error_code = %(code)s, error_message = %(message)s, "
        "error_retryable = %(retryable)s "
        "WHERE task_id IN (SELECT id FROM q) AND number = %(attempt)s"
    )
    if task is None:
        return f"WITH q AS ({queue}) {ended}", args
    return f"WITH q AS ({queue}), t AS ({task}) {ended}", args


def _end_attempt(
    task_id: uuid.UUID,
    number: int,
    at: float | None,
    status: TaskStatus | None,
    error: TaskError | None,
) -> _Statement:
    return (
        "UPDATE trio_pipe.attempts SET ended_at = %s, status = %s, error_code = %s, "
        "error_message = %s, error_retryable = %s WHERE task_id = %s AND number = %s",
        (
            at,
            None if status is None else status.value,
            None if error is None else error.code,
            None if error is None else error.message,
            None if error is None else error.retryable,
            task_id,
            number,
        ),
    )


def _describe(exc: psycopg.Error) -> str:
    """What went wrong, in the words an operator acts on."""
    if isinstance(exc, psycopg.OperationalError):
        return f"the database server cannot be reached or closed the connection ({exc})"
    if isinstance(exc, psycopg.errors.DiskFull):
        return f"the database server's disk is full ({exc})"
    if isinstance(exc, psycopg.errors.ReadOnlySqlTransaction):
        return f"the database cannot be written ({exc})"
    return str(exc).strip()
