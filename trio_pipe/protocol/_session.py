"""The dispatcher's view of one worker connection, as an explicit state machine.

In the manner of h11: :class:`WorkerSession` is fed every message that crosses the
connection (``receive`` for the worker's, ``send`` for ours) and says whether it is
legal now. It owns the bookkeeping that legality depends on -- which tasks are in
flight on this worker, and so how much capacity is free -- and nothing else. It never
performs I/O.
"""

from __future__ import annotations

import enum
import uuid
from collections import OrderedDict

import attrs

from ._codec import ProtocolError
from ._messages import (
    Backpressure,
    DispatcherMessage,
    Heartbeat,
    HeartbeatAck,
    Kill,
    Message,
    Shutdown,
    TaskDispatch,
    TaskResultMessage,
    WorkerRegister,
    WorkerRegistered,
)
from ._types import TaskResult, TaskStatus, WorkerRegistration

__all__ = ["LocalProtocolError", "SessionState", "WorkerSession"]


class LocalProtocolError(ProtocolError):
    """*We* tried to send something the protocol does not allow now (a bug)."""


class SessionState(enum.Enum):
    AWAITING_REGISTRATION = "awaiting registration"
    ACTIVE = "active"
    CLOSING = "closing"  # Shutdown sent: results still flow, no new tasks
    CLOSED = "closed"


class _Slot(enum.Enum):
    DISPATCHED = "dispatched"
    RUNNING = "running"
    ABANDONED = "abandoned"  # resolved on our side (timeout, kill); worker not yet done


class WorkerSession:
    """Legality and capacity bookkeeping for one worker connection.

    A WebSocket worker must register first (``registration=None``); a spawned worker
    (stdio, Docker, SSH) is registered by the dispatcher and starts ``ACTIVE``, though
    it may still send one ``WorkerRegister`` of its own to refine what it supports.

    A task holds one unit of the worker's capacity from ``TaskDispatch`` until the
    worker reports a terminal result for it -- even after the dispatcher has given up
    on it (:meth:`abandon`), because the worker may still be running it. A heartbeat
    reporting fewer active tasks than are held frees abandoned slots first, so a
    worker that ignores ``Kill`` or loses tasks does not stay "full" forever.
    """

    def __init__(
        self,
        registration: WorkerRegistration | None = None,
        *,
        remembered_results: int = 4096,
    ) -> None:
        self.registration = registration
        self.state = (
            SessionState.ACTIVE if registration else SessionState.AWAITING_REGISTRATION
        )
        self.throttled = False
        self.duplicate_results = 0
        self._peer_registered = False
        self._acked = False
        self._slots: dict[uuid.UUID, _Slot] = {}
        self._finished: OrderedDict[uuid.UUID, None] = OrderedDict()
        self._remembered = remembered_results

    # -- views -------------------------------------------------------------

    @property
    def worker_id(self) -> str:
        if self.registration is None:
            raise LocalProtocolError("the worker has not registered yet")
        return self.registration.worker_id

    @property
    def capacity(self) -> int:
        return self.registration.max_concurrency if self.registration else 0

    @property
    def load(self) -> int:
        """Capacity units held: dispatched tasks the worker has not finished."""
        return len(self._slots)

    @property
    def free_slots(self) -> int:
        return max(self.capacity - self.load, 0)

    @property
    def registered_by_peer(self) -> bool:
        """The worker sent ``WorkerRegister`` (and so expects ``WorkerRegistered``)."""
        return self._peer_registered

    def can_accept(self) -> bool:
        return (
            self.state is SessionState.ACTIVE
            and not self.throttled
            and self.load < self.capacity
        )

    def in_flight(self) -> list[uuid.UUID]:
        """Tasks this worker holds that the dispatcher still waits for."""
        return [t for t, slot in self._slots.items() if slot is not _Slot.ABANDONED]

    def is_running(self, task_id: uuid.UUID) -> bool:
        return self._slots.get(task_id) is _Slot.RUNNING

    # -- the worker's messages -----------------------------------------------

    def receive(self, message: Message) -> Message | None:
        """Check a message from the worker; return it (normalised) to be acted on,
        or ``None`` if it is a harmless repeat to ignore. Raises ProtocolError."""
        if self.state is SessionState.CLOSED:
            raise ProtocolError("session is closed")
        if isinstance(message, WorkerRegister):
            return self._receive_register(message)
        if self.state is SessionState.AWAITING_REGISTRATION:
            raise ProtocolError(
                f"expected WorkerRegister before anything else, got {message.TYPE}"
            )
        if isinstance(message, TaskResultMessage):
            return self._receive_result(message)
        if isinstance(message, Heartbeat):
            self._reconcile(message.payload.active_tasks)
            if message.payload.active_tasks < self.capacity:
                self.throttled = False
            return message
        if isinstance(message, Backpressure):
            self.throttled = message.signal.should_throttle
            return message
        raise ProtocolError(f"{message.TYPE} is sent by a dispatcher, not by a worker")

    def _receive_register(self, message: WorkerRegister) -> Message:
        if self._peer_registered:
            raise ProtocolError("worker registered twice on one connection")
        self._peer_registered = True
        if self.registration is None:
            self.registration = message.registration
            self.state = SessionState.ACTIVE
        else:
            # A spawned worker describing itself: keep the id the dispatcher gave it.
            self.registration = attrs.evolve(
                message.registration, worker_id=self.registration.worker_id
            )
        return message

    def _receive_result(self, message: TaskResultMessage) -> Message | None:
        result = message.result
        slot = self._slots.get(result.task_id)
        if slot is None:
            if result.task_id in self._finished:
                self.duplicate_results += 1
                return None
            raise ProtocolError(
                f"TaskResult for task {result.task_id} never dispatched to this worker"
            )
        if result.status is TaskStatus.PENDING:
            raise ProtocolError(f"TaskResult for task {result.task_id} says Pending")
        if not result.status.is_terminal:
            if slot is _Slot.DISPATCHED:
                self._slots[result.task_id] = _Slot.RUNNING
            return message
        self._finish(result.task_id)
        if result.worker_id != self.worker_id:
            message = TaskResultMessage(_with_worker_id(result, self.worker_id))
        return message

    def _finish(self, task_id: uuid.UUID) -> None:
        del self._slots[task_id]
        self._finished[task_id] = None
        self._finished.move_to_end(task_id)  # a retried id may already be remembered
        if len(self._finished) > self._remembered:
            self._finished.popitem(last=False)

    def _reconcile(self, reported_active: int) -> None:
        excess = self.load - reported_active
        if excess <= 0:
            return
        for task_id in [t for t, s in self._slots.items() if s is _Slot.ABANDONED][:excess]:
            self._finish(task_id)

    # -- our messages ------------------------------------------------------

    def send(self, message: DispatcherMessage) -> None:
        """Record a message we are about to send; raise LocalProtocolError if it is
        not legal now."""
        if isinstance(message, HeartbeatAck):
            self._require(SessionState.ACTIVE, SessionState.CLOSING, message=message)
        elif isinstance(message, TaskDispatch):
            self._require(SessionState.ACTIVE, message=message)
            task_id = message.task.id
            if task_id in self._slots:
                raise LocalProtocolError(f"task {task_id} is already on this worker")
            if self.load >= self.capacity:
                raise LocalProtocolError(f"worker {self.worker_id} is at capacity")
            self._slots[task_id] = _Slot.DISPATCHED
        elif isinstance(message, Kill):
            self._require(SessionState.ACTIVE, SessionState.CLOSING, message=message)
            if message.task_id not in self._slots:
                raise LocalProtocolError(f"task {message.task_id} is not on this worker")
        elif isinstance(message, Shutdown):
            self._require(SessionState.ACTIVE, SessionState.CLOSING, message=message)
            self.state = SessionState.CLOSING
        elif isinstance(message, WorkerRegistered):
            self._require(SessionState.ACTIVE, SessionState.CLOSING, message=message)
            if not self._peer_registered or self._acked:
                raise LocalProtocolError("WorkerRegistered answers one WorkerRegister")
            self._acked = True
        else:
            raise LocalProtocolError(f"{message.TYPE} is not sent by a dispatcher")

    def _require(self, *states: SessionState, message: Message) -> None:
        if self.state not in states:
            raise LocalProtocolError(f"cannot send {message.TYPE} while {self.state.value}")

    def abandon(self, task_id: uuid.UUID) -> None:
        """The dispatcher has resolved *task_id* without the worker (timeout, kill).
        Its slot stays held until the worker reports or a heartbeat frees it."""
        if task_id in self._slots:
            self._slots[task_id] = _Slot.ABANDONED

    def close(self) -> list[uuid.UUID]:
        """The connection is gone; return the tasks that were still in flight."""
        lost = self.in_flight()
        self.state = SessionState.CLOSED
        self._slots.clear()
        return lost


def _with_worker_id(result: TaskResult, worker_id: str) -> TaskResult:
    """*result* from *worker_id* (as ``attrs.evolve`` would, at a third of the cost:
    a stdio worker labels every result with an id of its own)."""
    return TaskResult(
        result.task_id,
        result.status,
        result.payload,
        result.error,
        result.duration_ms,
        worker_id,
    )
