"""Lifecycle events: what happened to tasks and workers, for whoever listens.

Each listener has its own bounded buffer. Delivery never slows the dispatcher: when a
listener falls ``buffer`` events behind, newer events are dropped *for that listener*
and counted, and the next event it receives is an :class:`EventsDropped` saying how
many it missed. A dispatcher with no listener pays one attribute test per event.
"""

from __future__ import annotations

import collections
import enum
import uuid
from types import TracebackType
from typing import Final

import attrs
import trio

from ..protocol import TaskError, TaskProgress, TaskStatus

__all__ = [
    "LEGAL_TASK_TRANSITIONS",
    "Event",
    "EventStream",
    "EventsDropped",
    "StepEvent",
    "StepEventKind",
    "TaskEvent",
    "TaskEventKind",
    "WorkerEvent",
    "WorkerEventKind",
]


class TaskEventKind(enum.Enum):
    PENDING = "Pending"  # admitted: queued, or about to be sent
    DISPATCHED = "Dispatched"  # sent to a worker
    RUNNING = "Running"  # the worker said it started (only if it says so)
    PROGRESS = "Progress"  # the worker said how far it has come (``progress``)
    RETRYING = "Retrying"  # a try failed retryably; waiting out the backoff
    COMPLETED = "Completed"
    FAILED = "Failed"
    TIMED_OUT = "TimedOut"
    CANCELLED = "Cancelled"

    @classmethod
    def for_status(cls, status: TaskStatus) -> TaskEventKind:
        return cls(status.value)


_TERMINAL = frozenset(
    {
        TaskEventKind.COMPLETED,
        TaskEventKind.FAILED,
        TaskEventKind.TIMED_OUT,
        TaskEventKind.CANCELLED,
    }
)

LEGAL_TASK_TRANSITIONS: Final[dict[TaskEventKind | None, frozenset[TaskEventKind]]] = {
    None: frozenset({TaskEventKind.PENDING}),
    TaskEventKind.PENDING: frozenset({TaskEventKind.DISPATCHED}) | _TERMINAL,
    TaskEventKind.DISPATCHED: frozenset({TaskEventKind.RUNNING, TaskEventKind.RETRYING})
    | _TERMINAL,
    TaskEventKind.RUNNING: frozenset({TaskEventKind.PROGRESS, TaskEventKind.RETRYING})
    | _TERMINAL,
    TaskEventKind.PROGRESS: frozenset({TaskEventKind.PROGRESS, TaskEventKind.RETRYING})
    | _TERMINAL,
    TaskEventKind.RETRYING: frozenset({TaskEventKind.PENDING, TaskEventKind.DISPATCHED})
    | _TERMINAL,
    **{kind: frozenset() for kind in _TERMINAL},
}
"""The order task events arrive in, per task: each kind maps to the kinds that may
follow it (``None``: the first event). A retried task re-enters through ``Retrying``;
``Progress`` events come in the order the worker sent its reports."""


class WorkerEventKind(enum.Enum):
    REGISTERED = "registered"
    DRAINING = "draining"
    THROTTLED = "throttled"
    UNTHROTTLED = "unthrottled"
    REMOVED = "removed"
    DEAD = "dead"
    RESTARTING = "restarting"  # a spawned worker's process exited; restart scheduled
    GAVE_UP = "gave up"  # a spawned worker's supervisor stopped restarting it


@attrs.frozen
class TaskEvent:
    kind: TaskEventKind
    task_id: uuid.UUID
    task_type: str
    time: float  # trio.current_time()
    worker_id: str | None = None
    retry_count: int = 0
    error: TaskError | None = None
    progress: TaskProgress | None = None  # kind PROGRESS: the worker's report


@attrs.frozen
class WorkerEvent:
    kind: WorkerEventKind
    worker_id: str
    time: float
    reason: str | None = None


class StepEventKind(enum.Enum):
    """What happened to one step of a workflow (``Dispatcher.run_workflow``)."""

    STARTED = "started"  # the steps it depends on ended; it runs now
    COMPLETED = "completed"
    FAILED = "failed"
    SKIPPED = "skipped"  # a decision did not choose its branch, or a dependency skipped
    BLOCKED = "blocked"  # ``fail_fast=False``: a step it depends on failed
    CANCELLED = "cancelled"  # ran when another step failed (fail-fast) or the run was
    # cancelled


@attrs.frozen
class StepEvent:
    """A step of a workflow run changed state. ``step`` is its path: its name,
    after the names of the nested-workflow steps it is in (``"build/compile"``);
    ``error`` says why a step failed, was blocked or cancelled; ``cached`` (on
    ``completed``) that every task of the step was served from the result cache
    instead of being dispatched (``Workflow.step(..., cache=True)``)."""

    kind: StepEventKind
    workflow: str
    run_id: str
    step: str
    time: float  # trio.current_time()
    error: str | None = None
    cached: bool = False


@attrs.frozen
class EventsDropped:
    """This listener fell behind and missed ``count`` events just before this one."""

    count: int


Event = TaskEvent | WorkerEvent | StepEvent | EventsDropped


class EventStream:
    """One listener's events: an async iterator that ends when the dispatcher closes
    or the stream is closed. Use it as ``async with dispatcher.events() as events:``
    so that it stops listening when the block ends."""

    def __init__(self, buffer: int, unsubscribe: list[EventStream]) -> None:
        if buffer < 1:
            raise ValueError("buffer must be >= 1")
        self._buffer = buffer
        self._events: collections.deque[Event] = collections.deque()
        self._dropped = 0
        self._closed = False
        self._waiting = trio.lowlevel.ParkingLot()
        self._listeners = unsubscribe

    def _deliver(self, event: Event) -> None:
        if len(self._events) >= self._buffer:
            self._dropped += 1
            return
        if self._dropped:
            self._events.append(EventsDropped(self._dropped))
            self._dropped = 0
        self._events.append(event)
        self._waiting.unpark()

    def close(self) -> None:
        """Stop listening; iteration ends once buffered events are consumed."""
        self._closed = True
        if self in self._listeners:
            self._listeners.remove(self)
        self._waiting.unpark_all()

    def __aiter__(self) -> EventStream:
        return self

    async def __anext__(self) -> Event:
        while not self._events:
            if self._closed:
                raise StopAsyncIteration
            await self._waiting.park()
        await trio.lowlevel.cancel_shielded_checkpoint()
        return self._events.popleft()

    async def __aenter__(self) -> EventStream:
        await trio.lowlevel.checkpoint()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
