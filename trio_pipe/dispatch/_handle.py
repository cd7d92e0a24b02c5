"""TaskHandle: the caller's view of one submitted task."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any, Generic, TypeVar

import attrs
import trio

from .._errors import TaskFailed
from ..protocol import Task, TaskError, TaskProgress, TaskResult, TaskStatus
from ..store import AttemptRecord

__all__ = ["Attempt", "BatchResult", "TaskHandle"]

R = TypeVar("R")


@attrs.frozen
class Attempt:
    """One try of a task on a worker, and how it ended. ``number`` counts the task's
    tries over its whole life (across dispatcher restarts); the times are wall-clock
    seconds since the epoch."""

    worker_id: str
    status: TaskStatus
    error: TaskError | None
    number: int = 0
    started_at: float = 0.0
    ended_at: float = 0.0

    @classmethod
    def of(cls, record: AttemptRecord) -> Attempt:
        """The attempt a store recorded (one that has ended)."""
        assert record.status is not None and record.ended_at is not None
        return cls(
            record.worker_id,
            record.status,
            record.error,
            record.number,
            record.started_at,
            record.ended_at,
        )


class TaskHandle(Generic[R]):
    """A submitted task. Outlives the scope that submitted it; resolves exactly once.

    :meth:`result` never hangs: a worker's death, a timeout, a kill or the
    dispatcher's close all resolve the handle with a terminal status and an error code.
    """

    __slots__ = (
        "_cancel",
        "_done",
        "_on_done",
        "_result",
        "_structure",
        "attempts",
        "progress",
        "status",
        "task",
        "worker_id",
    )

    def __init__(
        self,
        task: Task,
        *,
        structure: Callable[[Any], R],
        cancel: Callable[[TaskHandle[Any], str], None],
        on_done: Callable[[TaskHandle[Any]], object] | None = None,
    ) -> None:
        self.task = task
        #: Current lifecycle status (terminal once the handle is resolved).
        self.status = TaskStatus.PENDING
        #: The worker the task is on now, or finished on; ``None`` while it waits.
        self.worker_id: str | None = None
        #: Every try that ended on a worker, oldest first (the last one included).
        self.attempts: list[Attempt] = []
        #: The worker's latest progress report, if it sent one (``None`` until then).
        self.progress: TaskProgress | None = None
        self._structure = structure
        self._cancel = cancel
        self._on_done = on_done  # called once the handle resolves (Dispatcher.map)
        self._result: TaskResult | None = None
        self._done = trio.Event()

    def __repr__(self) -> str:
        return f"<TaskHandle {self.task.task_type} {self.task.id} {self.status.value}>"

    @property
    def id(self) -> uuid.UUID:
        return self.task.id

    @property
    def done(self) -> bool:
        return self._result is not None

    @property
    def retry_count(self) -> int:
        return len(self.attempts)

    async def result(self) -> TaskResult:
        """Wait for the task to end and return its :class:`TaskResult`, whatever the
        status. Cancelling the wait leaves the task running (see :meth:`cancel`)."""
        await self._done.wait()
        assert self._result is not None
        return self._result

    async def value(self) -> R:
        """Wait for the task and return its result payload (structured to the result
        type for typed tasks). Raises :class:`TaskFailed` unless it completed."""
        await self.result()
        return self.value_nowait()

    def result_nowait(self) -> TaskResult:
        """The :class:`TaskResult` of a resolved task; raises ``trio.WouldBlock`` if
        it has not ended yet."""
        if self._result is None:
            raise trio.WouldBlock
        return self._result

    def value_nowait(self) -> R:
        """The result payload of a resolved task, as :meth:`value` returns it; raises
        ``trio.WouldBlock`` if it has not ended yet."""
        result = self.result_nowait()
        if result.status is not TaskStatus.COMPLETED:
            raise TaskFailed(result)
        return self._structure(result.payload)

    async def cancel(self, reason: str = "cancelled by the caller") -> None:
        """Stop the task wherever it is: dequeue it, or send ``Kill`` to its worker.
        The handle resolves ``Cancelled`` at once (no-op if already resolved)."""
        await trio.lowlevel.checkpoint()
        self.cancel_nowait(reason)

    def cancel_nowait(self, reason: str = "cancelled by the caller") -> None:
        """Synchronous :meth:`cancel`, for use where no checkpoint is allowed."""
        if not self.done:
            self._cancel(self, reason)

    def _resolve(self, result: TaskResult) -> None:
        if self._result is not None:
            return
        self._result = result
        self.status = result.status
        self._done.set()
        if self._on_done is not None:
            self._on_done(self)


@attrs.frozen
class BatchResult:
    """One item of :meth:`Dispatcher.map`: which payload, and how its task ended."""

    index: int
    payload: Any
    result: TaskResult

    @property
    def ok(self) -> bool:
        return self.result.status is TaskStatus.COMPLETED

    @property
    def value(self) -> Any:
        """The result payload; raises :class:`TaskFailed` unless the task completed."""
        if not self.ok:
            raise TaskFailed(self.result)
        return self.result.payload
