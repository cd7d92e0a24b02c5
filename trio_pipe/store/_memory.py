"""MemoryStore: the default store, in the dispatcher's memory and gone with it."""

from __future__ import annotations

import math
import time
import uuid
from collections import OrderedDict

import trio

from .._errors import TaskNotFound
from ..protocol import Task, TaskResult, TaskStatus
from ._base import Store
from ._records import (
    AttemptRecord,
    CachedResult,
    Placement,
    Retention,
    TaskRecord,
    recover,
    requeued,
)

__all__ = ["MemoryStore"]


class _Row:
    """A task as the memory store holds it: mutable, so that the scheduler's changes
    cost an attribute write each (a :class:`TaskRecord` is built only to be read)."""

    __slots__ = (
        "attempts",
        "counted_from",
        "deadline",
        "finished_at",
        "placement",
        "result",
        "status",
        "submitted_at",
        "task",
        "updated_at",
    )

    def __init__(self, record: TaskRecord) -> None:
        self.task: Task = record.task
        self.status: TaskStatus = record.status
        self.submitted_at = record.submitted_at
        self.deadline = record.deadline
        self.updated_at = record.updated_at
        self.placement: Placement = record.placement
        self.attempts: list[AttemptRecord] = list(record.attempts)
        self.counted_from = record.counted_from
        self.result: TaskResult | None = record.result
        self.finished_at: float | None = record.finished_at

    def record(self) -> TaskRecord:
        return TaskRecord(
            self.task,
            self.status,
            self.submitted_at,
            self.deadline,
            self.updated_at,
            self.placement,
            tuple(self.attempts),
            self.counted_from,
            self.result,
            self.finished_at,
        )


class MemoryStore(Store):
    """Tasks in memory: nothing survives the process, and ``submit()`` never waits
    on it. The default of :func:`open_dispatcher`.

    It keeps unfinished tasks while they run, and finished ones by *retention*, at
    most *max_finished* of them (the oldest go first) -- and as many cached results
    at most, likewise, so that ``handle()``,
    ``tasks()`` and ``dead_letters()`` see recent outcomes without memory growing
    with every task ever run. A completed task's payload is dropped when it ends.
    """

    durable = False

    def __init__(
        self,
        *,
        retention: Retention = Retention(),  # noqa: B008 (frozen)
        max_finished: int = 10_000,
        prune_interval: float = 60.0,
    ) -> None:
        if max_finished < 0:
            raise ValueError(f"max_finished must be >= 0, not {max_finished!r}")
        self.retention = retention
        self.max_finished = max_finished
        self.prune_interval = prune_interval
        self.stale_writes = 0
        self._rows: dict[uuid.UUID, _Row] = {}
        self._keys: dict[str, uuid.UUID] = {}
        self._finished: OrderedDict[uuid.UUID, None] = OrderedDict()
        self._cache: OrderedDict[str, CachedResult] = OrderedDict()  # oldest put first

    def __repr__(self) -> str:
        return "MemoryStore()"

    async def run(self, *, task_status: trio.TaskStatus[None]) -> None:
        # Opened again (by a second dispatcher in this process): what the last one
        # left on workers is recovered, as a durable store would.
        self.epoch += 1
        now = time.time()
        for task_id, row in list(self._rows.items()):
            if row.status is TaskStatus.DISPATCHED:
                self._recover(task_id, row, now)
        self._resume_order: list[uuid.UUID] = []
        task_status.started()
        while True:
            await trio.sleep(self.prune_interval)
            await self.prune(time.time())

    def _recover(self, task_id: uuid.UUID, row: _Row, now: float) -> TaskRecord:
        before = row.record()
        record = recover(before, now)
        if record is not before:
            self._rows[task_id] = _Row(record)
            if record.done:
                self._finish(task_id)
        return record

    async def unfinished(
        self, after: object | None, limit: int
    ) -> tuple[list[TaskRecord], object | None]:
        await trio.lowlevel.checkpoint()
        if after is None:  # the order is fixed by the first page
            rows = self._rows.items()
            waiting = [(i, r) for i, r in rows if r.status is TaskStatus.PENDING]
            waiting.sort(key=lambda item: -item[1].task.metadata.priority)  # stable
            self._resume_order = [task_id for task_id, _ in waiting]
        start = after if isinstance(after, int) else 0
        now = time.time()
        page = []
        for task_id in self._resume_order[start : start + limit]:
            row = self._rows.get(task_id)
            if row is not None and row.status is TaskStatus.PENDING:
                record = self._recover(task_id, row, now)
                if not record.done:
                    page.append(record)
        end = start + limit
        return page, (end if end < len(self._resume_order) else None)

    # -- changes ---------------------------------------------------------------------

    def dispatched(
        self, task_id: uuid.UUID, attempt: int, worker_id: str, at: float
    ) -> None:
        row = self._rows.get(task_id)
        if row is None or row.status is not TaskStatus.PENDING:
            self.stale_writes += 1
            return
        row.status = TaskStatus.DISPATCHED
        row.attempts.append(AttemptRecord(attempt, self.epoch, worker_id, at))
        row.updated_at = at

    def ended(
        self,
        task_id: uuid.UUID,
        attempt: int | None,
        result: TaskResult,
        at: float,
        *,
        final: bool,
    ) -> None:
        row = self._rows.get(task_id)
        if row is None or row.status.is_terminal:
            self.stale_writes += 1
            return
        if attempt is not None:
            live = row.attempts[-1] if row.status is TaskStatus.DISPATCHED else None
            if live is None or live.number != attempt:
                self.stale_writes += 1
                return
            row.attempts[-1] = live.ended(at, result.status, result.error)
        row.updated_at = at
        if not final:
            row.status = TaskStatus.PENDING
            return
        row.status = result.status
        row.result = result
        row.finished_at = at
        self._finish(task_id)

    def _finish(self, task_id: uuid.UUID) -> None:
        """Remember a finished task (a completed one without its payload), within
        ``max_finished``."""
        row = self._rows[task_id]
        if row.status is TaskStatus.COMPLETED and row.task.payload is not None:
            task = row.task  # (not attrs.evolve, which costs several times more)
            row.task = Task(task.id, task.task_type, None, task.metadata)
        self._finished[task_id] = None
        while len(self._finished) > self.max_finished:
            self._forget(next(iter(self._finished)))

    def _forget(self, task_id: uuid.UUID) -> None:
        row = self._rows.pop(task_id)
        self._finished.pop(task_id, None)
        key = row.task.metadata.idempotency_key
        if key is not None and self._keys.get(key) == task_id:
            del self._keys[key]

    # -- waits -----------------------------------------------------------------------

    def add_nowait(self, record: TaskRecord) -> TaskRecord:
        key = record.idempotency_key
        if key is not None:
            existing = self._keys.get(key)
            if existing is not None:
                return self._rows[existing].record()
        if record.id in self._rows:
            return self._rows[record.id].record()
        self._rows[record.id] = _Row(record)
        if key is not None:
            self._keys[key] = record.id
        return record

    async def add(self, record: TaskRecord) -> TaskRecord:
        await trio.lowlevel.checkpoint()
        return self.add_nowait(record)

    async def get(self, task_id: uuid.UUID) -> TaskRecord | None:
        await trio.lowlevel.checkpoint()
        row = self._rows.get(task_id)
        return None if row is None else row.record()

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
        await trio.lowlevel.checkpoint()
        rows = iter(self._rows.items())  # in the order of first submission
        if after is not None:
            if after not in self._rows:
                raise TaskNotFound(f"no task {after} to list after")
            for task_id, _ in rows:
                if task_id == after:
                    break
        page: list[TaskRecord] = []
        for _, row in rows:
            if len(page) >= limit:
                break
            if (
                (status is None or row.status is status)
                and (task_type is None or row.task.task_type == task_type)
                and (submitted_after is None or row.submitted_at >= submitted_after)
                and (submitted_before is None or row.submitted_at < submitted_before)
            ):
                page.append(row.record())
        return page

    async def count(self, *, status: TaskStatus | None = None) -> int:
        await trio.lowlevel.checkpoint()
        if status is None:
            return len(self._rows)
        return sum(row.status is status for row in self._rows.values())

    async def requeue(self, task_id: uuid.UUID, at: float) -> TaskRecord:
        await trio.lowlevel.checkpoint()
        row = self._rows.get(task_id)
        if row is None:
            raise TaskNotFound(f"no task {task_id}")
        record = requeued(row.record(), at)
        self._finished.pop(task_id, None)
        self._rows[task_id] = _Row(record)
        return record

    async def purge(
        self,
        *,
        task_ids: frozenset[uuid.UUID] | None = None,
        status: TaskStatus | None = None,
        finished_before: float | None = None,
    ) -> int:
        await trio.lowlevel.checkpoint()
        doomed = [
            task_id
            for task_id in self._finished
            if (task_ids is None or task_id in task_ids)
            and (status is None or self._rows[task_id].status is status)
            and (
                finished_before is None
                or (self._rows[task_id].finished_at or math.inf) < finished_before
            )
        ]
        for task_id in doomed:
            self._forget(task_id)
        return len(doomed)

    async def prune(self, now: float) -> int:
        await trio.lowlevel.checkpoint()
        completed, failed = self.retention.cutoffs(now)
        doomed = []
        for task_id in self._finished:  # in the order they finished
            row = self._rows[task_id]
            cutoff = completed if row.status is TaskStatus.COMPLETED else failed
            if cutoff is not None and (row.finished_at or math.inf) < cutoff:
                doomed.append(task_id)
        for task_id in doomed:
            self._forget(task_id)
        return len(doomed) + self._prune_cache(now)

    def _prune_cache(self, now: float) -> int:
        if self.retention.cached is None:
            return 0
        cutoff = now - self.retention.cached
        doomed = [key for key, entry in self._cache.items() if entry.stored_at < cutoff]
        for key in doomed:
            del self._cache[key]
        return len(doomed)

    async def cache_get(self, key: str) -> CachedResult | None:
        await trio.lowlevel.checkpoint()
        return self._cache.get(key)

    async def cache_put(self, entry: CachedResult) -> None:
        await trio.lowlevel.checkpoint()
        self._cache.pop(entry.key, None)
        self._cache[entry.key] = entry
        while len(self._cache) > self.max_finished:
            self._cache.popitem(last=False)
