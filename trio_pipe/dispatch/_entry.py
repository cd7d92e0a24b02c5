"""The scheduler's record of one admitted task, and where a task may be placed.

A :class:`TaskHandle` is the caller's view of a task; a :class:`TaskEntry` is the
scheduler's. Only the scheduler (and the queue it owns) reads or writes an entry.
"""

from __future__ import annotations

import math
from typing import Any

import attrs

from ._handle import TaskHandle
from ._pool import WorkerRecord

__all__ = ["Constraint", "OnWorker", "TaskEntry", "WithTag"]


@attrs.frozen
class OnWorker:
    """Placement: this one worker only (``Dispatcher.dispatch_to``)."""

    worker_id: str


@attrs.frozen
class WithTag:
    """Placement: any worker registered with this tag (``dispatch_with_tag``)."""

    tag: str


Constraint = OnWorker | WithTag | None


class TaskEntry:
    """Where one task is and what the scheduler needs to place it again.

    ``worker`` is the worker it is on (or ``None``); ``queued`` says whether it waits in
    the queue. Neither: it is being admitted, waits out a retry backoff, or has ended.
    """

    __slots__ = (
        "attempt",
        "caller_deadline",
        "constraint",
        "deadline",
        "frame",
        "handle",
        "queued",
        "queued_at",
        "started_at",
        "submitted_at",
        "worker",
    )

    def __init__(
        self,
        handle: TaskHandle[Any],
        *,
        deadline: float,
        caller_deadline: float = math.inf,
        constraint: Constraint = None,
        frame: str | None = None,
        submitted_at: float = -math.inf,
    ) -> None:
        self.handle = handle
        #: When the task was submitted (``-inf``: an entry for a task never admitted).
        self.submitted_at = submitted_at
        #: When the task times out (its own ``timeoutMs`` from submission, or later if
        #: a worker extended it).
        self.deadline = deadline
        #: The deadline of the scope waiting in ``Dispatcher.run`` (its expiry cancels
        #: the task through that scope); it shortens the timeout the worker is given.
        self.caller_deadline = caller_deadline
        self.constraint = constraint
        #: The encoded TaskDispatch, while it may still be sent as it is.
        self.frame = frame
        self.worker: WorkerRecord | None = None
        self.queued = False
        #: When the task first entered the queue: its rank, kept across retries.
        self.queued_at: float | None = None
        #: The number of its latest attempt (0: none yet), and when that one started
        #: (wall-clock seconds): with the store's epoch, the fencing token.
        self.attempt = 0
        self.started_at = 0.0

    @property
    def done(self) -> bool:
        return self.handle.done

    @property
    def effective_deadline(self) -> float:
        return min(self.deadline, self.caller_deadline)
