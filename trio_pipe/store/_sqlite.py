"""SqliteStore: the embedded durable store, on the standard library's ``sqlite3``.

One connection, used by one thread at a time: every statement runs through
``trio.to_thread.run_sync`` under a one-token :class:`trio.CapacityLimiter`, so the
event loop never waits on the disk and SQLite never sees two writers. Writes are
**group-committed**: the scheduler's changes and the submissions waiting in
``add()`` collect in a list while the previous transaction commits, and the writer
takes them all in the next one. ``add()`` returns once its transaction has committed
(the writer waits ``commit_delay`` for more first, 0 by default). The scheduler's
changes are written behind: nobody waits for them, so they gather for up to
``writeback_delay`` -- until a submission comes, whose transaction takes them, or
``max_batch`` of them wait.

The database is in WAL mode. A lock file beside it (``<file>.lock``, ``flock``) keeps
a second dispatcher out while one runs; the kernel drops the lock when the process
dies, however it dies. The schema is versioned with ``PRAGMA user_version`` and
migrated forward on open (:data:`MIGRATIONS`).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import socket
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, Final, Literal, TypeVar

import orjson
import trio

from .._backoff import backoff_delay
from .._errors import StoreError, TaskNotFound
from ..protocol import (
    Priority,
    Task,
    TaskDispatch,
    TaskError,
    TaskMetadata,
    TaskResult,
    TaskResultMessage,
    TaskStatus,
    decode,
    encode,
    encode_dispatch,
)
from ._base import Store
from ._records import (
    AttemptRecord,
    CachedResult,
    Retention,
    TaskRecord,
    recover,
    requeued,
)

__all__ = ["MIGRATIONS", "SqliteStore"]

log = logging.getLogger("trio_pipe.store")

T = TypeVar("T")

Synchronous = Literal["OFF", "NORMAL", "FULL", "EXTRA"]

MIGRATIONS: Final[tuple[str, ...]] = (
    # 1: tasks, their attempts, and the epoch counter.
    """
    CREATE TABLE tasks (
        seq INTEGER PRIMARY KEY,           -- submission order (paging)
        id TEXT NOT NULL UNIQUE,
        task_type TEXT NOT NULL,
        status TEXT NOT NULL,
        idempotency_key TEXT,
        submitted_at REAL NOT NULL,
        deadline REAL NOT NULL,
        updated_at REAL NOT NULL,
        finished_at REAL,
        placement TEXT,
        counted_from INTEGER NOT NULL DEFAULT 0,
        attempt INTEGER NOT NULL DEFAULT 0, -- the live (or last) attempt's number
        created_at TEXT NOT NULL,
        timeout_ms INTEGER NOT NULL,
        priority INTEGER NOT NULL,
        max_retries INTEGER NOT NULL,
        trace_id TEXT,
        frame TEXT,                        -- the TaskDispatch; NULL once completed
        result TEXT                        -- the final TaskResult message
    );
    CREATE UNIQUE INDEX tasks_by_key ON tasks (idempotency_key)
        WHERE idempotency_key IS NOT NULL;
    CREATE INDEX tasks_by_status ON tasks (status, seq);
    CREATE INDEX tasks_by_finish ON tasks (finished_at) WHERE finished_at IS NOT NULL;
    CREATE TABLE attempts (
        task_id TEXT NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
        number INTEGER NOT NULL,
        epoch INTEGER NOT NULL,
        worker_id TEXT NOT NULL,
        started_at REAL NOT NULL,
        ended_at REAL,
        status TEXT,
        error_code TEXT,
        error_message TEXT,
        error_retryable INTEGER,
        PRIMARY KEY (task_id, number)
    ) WITHOUT ROWID;
    CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
    INSERT INTO meta VALUES ('epoch', 0);
    """,
    # 2: who opened the store, when: one row per epoch.
    """
    CREATE TABLE epochs (
        epoch INTEGER PRIMARY KEY,
        opened_at REAL,
        pid INTEGER,
        host TEXT
    );
    INSERT INTO epochs (epoch) SELECT value FROM meta WHERE key = 'epoch' AND value > 0;
    """,
    # 3: cached results of workflow steps (payload: JSON).
    """
    CREATE TABLE cache (
        key TEXT PRIMARY KEY,
        payload BLOB NOT NULL,
        worker_id TEXT NOT NULL,
        stored_at REAL NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX cache_by_time ON cache (stored_at);
    """,
)

_TASK_COLUMNS = (
    "id, task_type, status, idempotency_key, submitted_at, deadline, updated_at, "
    "finished_at, placement, counted_from, created_at, timeout_ms, priority, "
    "max_retries, trace_id, frame, result"
)
_WRITE_ERROR_BACKOFF: Final = (0.05, 5.0)  # seconds: first retry's ceiling, and cap


class _Add:
    """A submission waiting for its transaction."""

    __slots__ = ("done", "error", "frame", "record", "stored")

    def __init__(self, record: TaskRecord) -> None:
        self.record = record
        self.frame = encode_dispatch(record.task)  # raises here if not JSON
        self.done = trio.Event()
        self.stored: TaskRecord | None = None
        self.error: StoreError | None = None


# The scheduler's changes, as tuples: (kind, task_id, attempt, ...).
_DISPATCHED: Final = 0
_ENDED: Final = 1
_Change = tuple[Any, ...]


class SqliteStore(Store):
    """Tasks in one SQLite file: accepted tasks survive a crash of the process.

    - *synchronous*: SQLite's ``PRAGMA synchronous``. ``"NORMAL"`` (the default, with
      WAL) loses nothing to a crash of the application, and may lose the last
      transactions, never the file, to a power loss; ``"FULL"`` loses nothing to
      either; ``"OFF"`` risks the file on a power loss (docs/durability.md).
    - *commit_delay*: seconds the writer waits, once a submission waits for it,
      before it commits, to gather more per transaction (0: as soon as the last
      commit ends). *writeback_delay*: how long the scheduler's changes (dispatches,
      results) may wait for a transaction when no submission does; a crash loses at
      most that much of them (their tasks then run again). *max_batch* waiting ends
      either wait early.
    - *retention*: how long finished tasks are kept; *prune_interval*, how often the
      expired ones are deleted.
    - *readonly*: open for reading only (the CLI on a running dispatcher's store): no
      lock, no new epoch, no recovery, every write raises :class:`StoreError`.
    """

    durable = True

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        synchronous: Synchronous = "NORMAL",
        commit_delay: float = 0.0,
        writeback_delay: float = 0.01,
        max_batch: int = 4096,
        retention: Retention = Retention(),  # noqa: B008 (frozen)
        prune_interval: float = 60.0,
        readonly: bool = False,
    ) -> None:
        if synchronous not in ("OFF", "NORMAL", "FULL", "EXTRA"):
            raise ValueError(
                f"synchronous must be OFF, NORMAL, FULL or EXTRA, not {synchronous!r}"
            )
        if min(commit_delay, writeback_delay) < 0 or max_batch < 1 or prune_interval <= 0:
            raise ValueError(
                "commit_delay and writeback_delay must be >= 0, max_batch >= 1 and "
                "prune_interval > 0"
            )
        self.path = Path(path)
        self.synchronous = synchronous
        self.commit_delay = commit_delay
        self.writeback_delay = writeback_delay
        self.max_batch = max_batch
        self.retention = retention
        self.prune_interval = prune_interval
        self.readonly = readonly
        #: Changes that named an attempt that was not the task's live one (fencing).
        self.stale_writes = 0
        #: Group commits made, and the submissions and changes they carried.
        self.commits = 0
        self.committed = 0
        self._db: sqlite3.Connection | None = None
        self._lock_fd: int | None = None
        self._limiter = trio.CapacityLimiter(1)
        self._pending: list[_Change | _Add] = []
        self._adds = 0  # submissions among them
        self._wake = trio.Event()
        self._failures = 0

    def __repr__(self) -> str:
        return f"SqliteStore({str(self.path)!r})"

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
        if self.readonly and not self.path.exists():
            raise StoreError(f"task store {self.path} does not exist")
        if not self.readonly:
            self._lock()
        try:
            if self.readonly:
                uri = f"{self.path.resolve().as_uri()}?mode=ro"
                db = sqlite3.connect(
                    uri, uri=True, isolation_level=None, check_same_thread=False
                )
            else:
                db = sqlite3.connect(
                    self.path, isolation_level=None, check_same_thread=False
                )
            self._db = db
            db.execute("PRAGMA foreign_keys = ON")
            if self.readonly:
                if self._check_version(db) == 0:
                    raise StoreError(f"{self.path} is not a trio_pipe task store (yet)")
                return
            db.execute("PRAGMA journal_mode = WAL")
            db.execute(f"PRAGMA synchronous = {self.synchronous}")
            self._migrate(db)
            with self._transaction(db):
                self._begin_epoch(db, now)
        except BaseException:
            self._close()
            raise

    def _lock(self) -> None:
        lock_path = self.path.with_name(self.path.name + ".lock")
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 64).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise StoreError(
                f"{self.path} is in use by another dispatcher (process {holder}); "
                "one store serves one dispatcher at a time"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._lock_fd = fd

    def _close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the flock
            self._lock_fd = None

    def _check_version(self, db: sqlite3.Connection) -> int:
        (version,) = db.execute("PRAGMA user_version").fetchone()
        if version > len(MIGRATIONS):
            raise StoreError(
                f"{self.path} has schema version {version}, newer than this trio_pipe "
                f"knows ({len(MIGRATIONS)}): upgrade trio_pipe to open it"
            )
        return int(version)

    def _migrate(self, db: sqlite3.Connection) -> None:
        version = self._check_version(db)
        if version == 0 and db.execute("SELECT 1 FROM sqlite_schema LIMIT 1").fetchone():
            raise StoreError(
                f"{self.path} is a SQLite database of something else, not a trio_pipe "
                "task store: it has tables but no store schema version"
            )
        for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
            with self._transaction(db):
                for statement in _statements(script):
                    db.execute(statement)
                db.execute(f"PRAGMA user_version = {number}")
            log.info("%s: schema migrated to version %d", self.path, number)

    @contextlib.contextmanager
    def _transaction(self, db: sqlite3.Connection) -> Any:
        db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def _begin_epoch(self, db: sqlite3.Connection, now: float) -> None:
        db.execute("UPDATE meta SET value = value + 1 WHERE key = 'epoch'")
        (self.epoch,) = db.execute("SELECT value FROM meta WHERE key = 'epoch'").fetchone()
        db.execute(
            "INSERT INTO epochs (epoch, opened_at, pid, host) VALUES (?, ?, ?, ?)",
            (self.epoch, now, os.getpid(), socket.gethostname()),
        )
        # What was on a worker (as many as the workers held): the rest is paged.
        self._recover(db, self._select(db, "WHERE status = 'Dispatched'", ()), now)

    def _recover(
        self, db: sqlite3.Connection, records: list[TaskRecord], now: float
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

    async def unfinished(
        self, after: object | None, limit: int
    ) -> tuple[list[TaskRecord], object | None]:
        return await self._read(self._unfinished, after, limit, time.time())

    def _unfinished(
        self, db: sqlite3.Connection, after: object | None, limit: int, now: float
    ) -> tuple[list[TaskRecord], object | None]:
        where, args = "status = 'Pending'", []
        if isinstance(after, tuple):  # keyset paging: (priority, seq) of the last row
            where += " AND (priority < ? OR (priority = ? AND seq > ?))"
            args = [after[0], after[0], after[1]]
        keys = db.execute(
            f"SELECT priority, seq FROM tasks WHERE {where} "
            "ORDER BY priority DESC, seq LIMIT ?",
            (*args, limit),
        ).fetchall()
        if not keys:
            return [], None
        seqs = [seq for _, seq in keys]
        records = self._select(
            db,
            f"WHERE seq IN ({', '.join('?' * len(seqs))}) ORDER BY priority DESC, seq",
            seqs,
        )
        if any(r.deadline <= now for r in records):  # some end here: write them
            with self._transaction(db):
                page = self._recover(db, records, now)
        else:
            page = records
        return page, (tuple(keys[-1]) if len(keys) == limit else None)

    def _write_record(
        self, db: sqlite3.Connection, before: TaskRecord, after: TaskRecord
    ) -> None:
        """Store what :func:`recover` changed: the last attempt, status and result."""
        if after.attempts != before.attempts:
            attempt = after.attempts[-1]
            self._end_attempt(
                db,
                after.id,
                attempt.number,
                attempt.ended_at,
                attempt.status,
                attempt.error,
            )
        db.execute(
            "UPDATE tasks SET status = ?, updated_at = ?, finished_at = ?, result = ? "
            "WHERE id = ?",
            (
                after.status.value,
                after.updated_at,
                after.finished_at,
                None if after.result is None else encode(TaskResultMessage(after.result)),
                str(after.id),
            ),
        )

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
                # The disk refused (full, read-only): try the changes again later.
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
        db = self._connection()
        stored = []
        # An attempt that starts and ends in this batch (a short task) is written
        # once, ended: two statements instead of four. (Its end, first after its
        # start, is the one :meth:`_end` would have applied.)
        ends: dict[tuple[uuid.UUID, int], tuple[int, _Change]] = {}
        for n, item in enumerate(batch):
            if not isinstance(item, _Add) and item[0] == _ENDED and item[2] is not None:
                ends.setdefault((item[1], item[2]), (n, item))
        folded: set[int] = set()
        with self._transaction(db):
            for n, item in enumerate(batch):
                if isinstance(item, _Add):
                    stored.append(self._insert(db, item.record, item.frame))
                elif item[0] == _DISPATCHED:
                    at, end = ends.pop((item[1], item[2]), (-1, ()))
                    if at < n:
                        self._dispatch(db, *item[1:])
                    else:
                        folded.add(at)
                        self._dispatch_ended(db, *item[1:], *end[3:])
                elif n not in folded:
                    self._end(db, *item[1:])
        self.commits += 1
        self.committed += len(batch)
        return stored

    def _insert(self, db: sqlite3.Connection, record: TaskRecord, frame: str) -> TaskRecord:
        task = record.task
        metadata = task.metadata
        cursor = db.execute(
            "INSERT INTO tasks (id, task_type, status, idempotency_key, submitted_at, "
            "deadline, updated_at, placement, counted_from, created_at, timeout_ms, "
            "priority, max_retries, trace_id, frame) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            (
                str(task.id),
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
        if cursor.rowcount == 1:
            return record
        # The id, or the idempotency key, is taken: the task that holds it.
        (existing,) = self._select(
            db,
            "WHERE id = ? OR idempotency_key = ? LIMIT 1",
            (str(task.id), metadata.idempotency_key),
        )
        return existing

    def _dispatch(
        self,
        db: sqlite3.Connection,
        task_id: uuid.UUID,
        attempt: int,
        worker_id: str,
        at: float,
    ) -> None:
        cursor = db.execute(
            "UPDATE tasks SET status = 'Dispatched', attempt = ?, updated_at = ? "
            "WHERE id = ? AND status = 'Pending' AND attempt < ?",
            (attempt, at, str(task_id), attempt),
        )
        if cursor.rowcount != 1:
            self.stale_writes += 1
            return
        db.execute(
            "INSERT INTO attempts (task_id, number, epoch, worker_id, started_at) "
            "VALUES (?, ?, ?, ?, ?)",
            (str(task_id), attempt, self.epoch, worker_id, at),
        )

    def _dispatch_ended(
        self,
        db: sqlite3.Connection,
        task_id: uuid.UUID,
        attempt: int,
        worker_id: str,
        started_at: float,
        result: TaskResult,
        at: float,
        final: bool,
    ) -> None:
        """:meth:`_dispatch` then :meth:`_end` of the same attempt, in two statements:
        the task's row moves straight to where the end leaves it (fenced as the
        dispatch is), and the attempt's row is written whole."""
        key = str(task_id)
        fence = "WHERE id = ? AND status = 'Pending' AND attempt < ?"
        if final:
            completed = result.status is TaskStatus.COMPLETED
            cursor = db.execute(
                "UPDATE tasks SET status = ?, attempt = ?, result = ?, finished_at = ?, "
                f"updated_at = ?{', frame = NULL' if completed else ''} {fence}",
                (
                    result.status.value,
                    attempt,
                    encode(TaskResultMessage(result)),
                    at,
                    at,
                    key,
                    attempt,
                ),
            )
        else:
            cursor = db.execute(
                f"UPDATE tasks SET status = 'Pending', attempt = ?, updated_at = ? {fence}",
                (attempt, at, key, attempt),
            )
        if cursor.rowcount != 1:
            self.stale_writes += 2  # the dispatch, and so the end
            return
        error = result.error
        db.execute(
            "INSERT INTO attempts (task_id, number, epoch, worker_id, started_at, "
            "ended_at, status, error_code, error_message, error_retryable) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                key,
                attempt,
                self.epoch,
                worker_id,
                started_at,
                at,
                result.status.value,
                None if error is None else error.code,
                None if error is None else error.message,
                None if error is None else error.retryable,
            ),
        )

    def _end(
        self,
        db: sqlite3.Connection,
        task_id: uuid.UUID,
        attempt: int | None,
        result: TaskResult,
        at: float,
        final: bool,
    ) -> None:
        key = str(task_id)
        # Fencing: only the live attempt may end, and only a task not yet finished.
        fence = (
            "status = 'Dispatched' AND attempt = ?"
            if attempt is not None
            else "status = 'Pending'"
        )
        if final:
            completed = result.status is TaskStatus.COMPLETED
            cursor = db.execute(
                "UPDATE tasks SET status = ?, result = ?, finished_at = ?, updated_at = ?"
                f"{', frame = NULL' if completed else ''} WHERE id = ? AND {fence}",
                (
                    result.status.value,
                    encode(TaskResultMessage(result)),
                    at,
                    at,
                    key,
                    *(() if attempt is None else (attempt,)),
                ),
            )
        else:
            cursor = db.execute(
                "UPDATE tasks SET status = 'Pending', updated_at = ? "
                f"WHERE id = ? AND {fence}",
                (at, key, *(() if attempt is None else (attempt,))),
            )
        if cursor.rowcount != 1:
            self.stale_writes += 1
            return
        if attempt is not None:
            self._end_attempt(db, task_id, attempt, at, result.status, result.error)

    def _end_attempt(
        self,
        db: sqlite3.Connection,
        task_id: uuid.UUID,
        number: int,
        at: float | None,
        status: TaskStatus | None,
        error: TaskError | None,
    ) -> None:
        db.execute(
            "UPDATE attempts SET ended_at = ?, status = ?, error_code = ?, "
            "error_message = ?, error_retryable = ? WHERE task_id = ? AND number = ?",
            (
                at,
                None if status is None else status.value,
                None if error is None else error.code,
                None if error is None else error.message,
                None if error is None else error.retryable,
                str(task_id),
                number,
            ),
        )

    async def _prune_loop(self) -> None:
        while True:
            await trio.sleep(self.prune_interval)
            pruned = await self.prune(time.time())
            if pruned:
                log.info(
                    "%s: pruned %d finished tasks and cached results", self.path, pruned
                )

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
        records = await self._read(self._select, "WHERE id = ?", (str(task_id),))
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
        where: list[str] = ["1"]
        args: list[Any] = []
        if status is not None:
            where.append("status = ?")
            args.append(status.value)
        if task_type is not None:
            where.append("task_type = ?")
            args.append(task_type)
        if submitted_after is not None:
            where.append("submitted_at >= ?")
            args.append(submitted_after)
        if submitted_before is not None:
            where.append("submitted_at < ?")
            args.append(submitted_before)
        if after is not None:
            where.append("seq > (SELECT seq FROM tasks WHERE id = ?)")
            args.append(str(after))
            if await self.get(after) is None:
                raise TaskNotFound(f"no task {after} to list after")
        clause = f"WHERE {' AND '.join(where)} ORDER BY seq LIMIT ?"
        return await self._read(self._select, clause, (*args, limit))

    async def count(self, *, status: TaskStatus | None = None) -> int:
        def count(db: sqlite3.Connection) -> int:
            if status is None:
                row = db.execute("SELECT COUNT(*) FROM tasks").fetchone()
            else:
                row = db.execute(
                    "SELECT COUNT(*) FROM tasks WHERE status = ?", (status.value,)
                ).fetchone()
            return int(row[0])

        return await self._read(count)

    async def requeue(self, task_id: uuid.UUID, at: float) -> TaskRecord:
        self._writable()
        return await self._read(self._requeue, task_id, at)

    def _requeue(self, db: sqlite3.Connection, task_id: uuid.UUID, at: float) -> TaskRecord:
        with self._transaction(db):
            found = self._select(db, "WHERE id = ?", (str(task_id),))
            if not found:
                raise TaskNotFound(f"no task {task_id}")
            record = requeued(found[0], at)
            db.execute(
                "UPDATE tasks SET status = ?, deadline = ?, counted_from = ?, "
                "result = NULL, finished_at = NULL, updated_at = ? WHERE id = ?",
                (
                    record.status.value,
                    record.deadline,
                    record.counted_from,
                    at,
                    str(task_id),
                ),
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
            where.append(f"id IN ({', '.join('?' * len(task_ids))})")
            args.extend(map(str, task_ids))
        if status is not None:
            where.append("status = ?")
            args.append(status.value)
        if finished_before is not None:
            where.append("finished_at < ?")
            args.append(finished_before)
        return await self._read(self._delete, " AND ".join(where), args)

    async def prune(self, now: float) -> int:
        self._writable()
        completed, failed = self.retention.cutoffs(now)
        where = []
        args: list[Any] = []
        if completed is not None:
            where.append("(status = 'Completed' AND finished_at < ?)")
            args.append(completed)
        if failed is not None:
            where.append("(status != 'Completed' AND finished_at < ?)")
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

    def _prune_cache(self, db: sqlite3.Connection, cutoff: float) -> int:
        with self._transaction(db):
            return db.execute("DELETE FROM cache WHERE stored_at < ?", (cutoff,)).rowcount

    async def cache_get(self, key: str) -> CachedResult | None:
        row = await self._read(
            lambda db: db.execute(
                "SELECT payload, worker_id, stored_at FROM cache WHERE key = ?", (key,)
            ).fetchone()
        )
        if row is None:
            return None
        return CachedResult(key, orjson.loads(row[0]), row[1], row[2])

    async def cache_put(self, entry: CachedResult) -> None:
        self._writable()
        payload = orjson.dumps(entry.payload)  # raises here if not JSON
        await self._read(self._cache_put, entry, payload)

    def _cache_put(
        self, db: sqlite3.Connection, entry: CachedResult, payload: bytes
    ) -> None:
        with self._transaction(db):
            db.execute(
                "INSERT OR REPLACE INTO cache (key, payload, worker_id, stored_at) "
                "VALUES (?, ?, ?, ?)",
                (entry.key, payload, entry.worker_id, entry.stored_at),
            )

    def _delete(self, db: sqlite3.Connection, where: str, args: Sequence[Any]) -> int:
        with self._transaction(db):
            return db.execute(f"DELETE FROM tasks WHERE {where}", args).rowcount

    # -- reading ---------------------------------------------------------------------

    def _select(
        self, db: sqlite3.Connection, clause: str, args: Sequence[Any]
    ) -> list[TaskRecord]:
        rows = db.execute(f"SELECT {_TASK_COLUMNS} FROM tasks {clause}", args).fetchall()
        if not rows:
            return []
        attempts: dict[str, list[AttemptRecord]] = {row[0]: [] for row in rows}
        for chunk in _chunks(list(attempts), 500):
            for a in db.execute(
                "SELECT task_id, number, epoch, worker_id, started_at, ended_at, status, "
                "error_code, error_message, error_retryable FROM attempts "
                f"WHERE task_id IN ({', '.join('?' * len(chunk))}) "
                "ORDER BY task_id, number",
                chunk,
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
        except sqlite3.Error as exc:
            raise StoreError(f"task store {self.path}: {_describe(exc)}") from exc
        except OSError as exc:  # the lock file: a missing directory, permissions
            raise StoreError(f"task store {self.path}: {exc}") from exc

    def _connection(self) -> sqlite3.Connection:
        if self._db is None:
            raise StoreError(f"task store {self.path} is not open")
        return self._db

    def _writable(self) -> None:
        if self.readonly:
            raise StoreError(f"task store {self.path} is open read-only")


def _record(row: Sequence[Any], attempts: tuple[AttemptRecord, ...]) -> TaskRecord:
    (
        task_id, task_type, status, key, submitted_at, deadline, updated_at, finished_at,
        placement, counted_from, created_at, timeout_ms, priority, max_retries, trace_id,
        frame, result,
    ) = row  # fmt: skip
    if frame is not None:
        message = decode(frame)
        assert isinstance(message, TaskDispatch)
        task = message.task
    else:  # completed: its payload is not kept
        task = Task(
            uuid.UUID(task_id),
            task_type,
            None,
            TaskMetadata(
                created_at=datetime.fromisoformat(created_at),
                timeout_ms=timeout_ms,
                priority=Priority(priority),
                max_retries=max_retries,
                trace_id=trace_id,
                idempotency_key=key,
            ),
        )
    outcome = None
    if result is not None:
        decoded = decode(result)
        assert isinstance(decoded, TaskResultMessage)
        outcome = decoded.result
    return TaskRecord(
        task,
        TaskStatus(status),
        submitted_at,
        deadline,
        updated_at,
        placement,
        attempts,
        counted_from,
        outcome,
        finished_at,
    )


def _statements(script: str) -> Iterable[str]:
    """The statements of a migration script (``executescript`` would commit)."""
    lines = [line.split("--", 1)[0] for line in script.splitlines()]
    return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]


def _chunks(items: list[str], size: int) -> Iterable[list[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _describe(exc: sqlite3.Error) -> str:
    """What went wrong, in the words an operator acts on."""
    code = getattr(exc, "sqlite_errorname", "")
    if code.startswith("SQLITE_FULL"):
        return f"the disk is full ({exc})"
    if code.startswith("SQLITE_READONLY") or code.startswith("SQLITE_CANTOPEN"):
        return f"the database cannot be written ({exc}): check the file's permissions"
    if code.startswith("SQLITE_NOTADB"):
        return f"the file is not a SQLite database ({exc})"
    return str(exc)
