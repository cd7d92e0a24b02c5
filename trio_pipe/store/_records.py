"""What a store keeps of a task, and the rules every store applies alike.

A store never decides how a task is scheduled; it remembers what the scheduler did
(:class:`TaskRecord`: the task, where it is, every attempt, the outcome) and, when a
dispatcher opens it again, applies :func:`recover` to what the last one left behind.
Times here are wall-clock seconds since the epoch (``time.time()``): a store outlives
the process, and Trio's clock does not.
"""

from __future__ import annotations

import uuid
from typing import Any

import attrs

from .._errors import ErrorCode
from ..protocol import Task, TaskError, TaskResult, TaskStatus

__all__ = [
    "AttemptRecord",
    "CachedResult",
    "Placement",
    "Retention",
    "TaskRecord",
    "finish",
    "recover",
    "requeued",
]

Placement = str | None
"""Where a task may run, as stored: ``"worker:<id>"``, ``"tag:<tag>"``, or ``None``."""


@attrs.frozen
class AttemptRecord:
    """One try of a task on a worker. ``status`` is ``None`` while it runs."""

    number: int  # 1, 2, ... over the task's whole life: the fencing token, with epoch
    epoch: int  # the epoch of the dispatcher that made it
    worker_id: str
    started_at: float
    ended_at: float | None = None
    status: TaskStatus | None = None
    error: TaskError | None = None

    def ended(
        self, at: float, status: TaskStatus, error: TaskError | None
    ) -> AttemptRecord:
        # (Not attrs.evolve, which costs several times more: once per task.)
        return AttemptRecord(
            self.number, self.epoch, self.worker_id, self.started_at, at, status, error
        )


@attrs.frozen
class TaskRecord:
    """Everything a store keeps of one task.

    ``status`` is ``Pending`` (waiting for a worker or a retry), ``Dispatched`` (an
    attempt is live: the last of :attr:`attempts`), or the terminal status of
    :attr:`result`. A ``Failed`` task is a dead letter. :attr:`counted_from` is the
    index of the first attempt that counts against ``maxRetries``: the attempts before
    it were made before the task was last requeued.
    """

    task: Task
    status: TaskStatus
    submitted_at: float
    deadline: float
    updated_at: float
    placement: Placement = None
    attempts: tuple[AttemptRecord, ...] = ()
    counted_from: int = 0
    result: TaskResult | None = None
    finished_at: float | None = None

    @property
    def id(self) -> uuid.UUID:
        return self.task.id

    @property
    def idempotency_key(self) -> str | None:
        return self.task.metadata.idempotency_key

    @property
    def done(self) -> bool:
        return self.status.is_terminal

    @property
    def tries(self) -> int:
        """The attempts that count against the task's ``maxRetries``."""
        return len(self.attempts) - self.counted_from


@attrs.frozen
class CachedResult:
    """The result payload of a completed task, kept under a cache key so that a
    workflow step with ``cache=True`` whose key matches skips its dispatch. The key
    covers the task type, the canonical payload and the serving worker's version."""

    key: str
    payload: Any
    #: The worker that produced it.
    worker_id: str
    #: When it was stored (``time.time()``); retention counts from here.
    stored_at: float


@attrs.frozen
class Retention:
    """How long finished tasks are kept (seconds after they finished), and so how long
    an idempotency key keeps meaning its task. ``None`` keeps them until purged."""

    #: Tasks that ended ``Completed``.
    completed: float | None = 24 * 3600.0
    #: Tasks that ended otherwise: dead letters (``Failed``), ``TimedOut``, ``Cancelled``.
    failed: float | None = 7 * 24 * 3600.0
    #: Cached results of workflow steps (:class:`CachedResult`), after they were stored.
    cached: float | None = 7 * 24 * 3600.0

    def cutoffs(self, now: float) -> tuple[float | None, float | None]:
        """The finish times before which (completed, other) tasks are pruned."""
        return (
            None if self.completed is None else now - self.completed,
            None if self.failed is None else now - self.failed,
        )


def _failure(record: TaskRecord, status: TaskStatus, error: TaskError) -> TaskResult:
    worker_id = record.attempts[-1].worker_id if record.attempts else ""
    return TaskResult(record.id, status, error=error, worker_id=worker_id)


def recover(record: TaskRecord, now: float) -> TaskRecord:
    """*record* as a dispatcher opening the store finds it, the last one having died
    or closed with the task unfinished.

    - An attempt that was live ends ``Failed`` with ``DISPATCHER_RESTARTED`` (its worker
      was attached to the old process), and counts as a try: past ``maxRetries`` the
      task is a dead letter; otherwise it waits for a worker again.
    - A task whose deadline passed meanwhile ends ``TimedOut``.
    - A finished task is returned unchanged.
    """
    if record.done:
        return record
    if record.status is TaskStatus.DISPATCHED:
        error = TaskError(
            ErrorCode.DISPATCHER_RESTARTED,
            "the dispatcher stopped while the task was on a worker",
            retryable=True,
        )
        *earlier, live = record.attempts
        record = attrs.evolve(
            record,
            status=TaskStatus.PENDING,
            attempts=(*earlier, live.ended(now, TaskStatus.FAILED, error)),
            updated_at=now,
        )
        if record.tries > record.task.metadata.max_retries:
            return finish(record, _failure(record, TaskStatus.FAILED, error), now)
    if record.deadline <= now:
        timeout_ms = record.task.metadata.timeout_ms
        error = TaskError(
            ErrorCode.TIMEOUT,
            f"no result within its deadline ({timeout_ms} ms timeout; the dispatcher "
            "was not running)",
        )
        return finish(record, _failure(record, TaskStatus.TIMED_OUT, error), now)
    return record


def finish(record: TaskRecord, result: TaskResult, now: float) -> TaskRecord:
    """*record* ended with *result*; its payload stays (a dead letter may be requeued)."""
    return attrs.evolve(
        record, status=result.status, result=result, finished_at=now, updated_at=now
    )


def requeued(record: TaskRecord, now: float) -> TaskRecord:
    """*record*, finished without completing, sent round again: a fresh deadline and
    retry budget (the earlier attempts stay in its history)."""
    if not record.done or record.status is TaskStatus.COMPLETED:
        raise ValueError(
            f"task {record.id} is {record.status.value}: only a task that ended without "
            "completing can be requeued"
        )
    return attrs.evolve(
        record,
        status=TaskStatus.PENDING,
        deadline=now + record.task.metadata.timeout_ms / 1000,
        counted_from=len(record.attempts),
        result=None,
        finished_at=None,
        updated_at=now,
    )
