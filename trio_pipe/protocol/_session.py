"""The dispatcher's view of one worker connection.

In the manner of h11: :class:`WorkerSession` is fed every message that crosses the
connection (``receive`` for the worker's, ``send`` for ours) and says whether it is
legal now, by the session rules of :mod:`._state` (role ``DISPATCHER``). It owns the
bookkeeping that legality depends on besides -- which tasks are in flight on this
worker, and so how much capacity is free, in all and per task type -- and nothing
else. It never performs I/O.
"""

from __future__ import annotations

import enum
import uuid
from collections import OrderedDict
from collections.abc import Mapping

import attrs

from ._errors import LocalProtocolError, RemoteProtocolError
from ._messages import (
    Backpressure,
    Heartbeat,
    Kill,
    Message,
    TaskDispatch,
    TaskResultMessage,
    WorkerRegister,
)
from ._state import Role, Session, SessionState
from ._types import TaskResult, TaskStatus, WorkerRegistration

__all__ = ["SessionState", "WorkerSession"]


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
    worker that ignores ``Kill`` or loses tasks does not stay "full" forever. A task
    also holds a unit of its type's limit, if the registration sets one
    (``max_concurrency_by_type``). A worker that said it is draining takes no task
    again on this connection.
    """

    def __init__(
        self,
        registration: WorkerRegistration | None = None,
        *,
        remembered_results: int = 4096,
    ) -> None:
        self.registration = registration
        self.throttled = False
        self.duplicate_results = 0
        self._rules = Session(Role.DISPATCHER, registered=registration is not None)
        # A worker that chose its id (registered itself) must name no other: a
        # spawned one was given its id, and may call itself something else.
        self._named_by_peer = registration is None
        self._slots: dict[uuid.UUID, _Slot] = {}
        self._abandoned = 0  # slots ABANDONED
        # Limits per task type, and for the tasks of a limited type: each one's type,
        # and their count per type (nothing is tracked for a worker without limits).
        self._limits: Mapping[str, int] = (
            registration.max_concurrency_by_type if registration else {}
        )
        self._type_of: dict[uuid.UUID, str] = {}
        self._load_by_type: dict[str, int] = {}
        self._finished: OrderedDict[uuid.UUID, None] = OrderedDict()
        self._remembered = remembered_results

    # -- views -------------------------------------------------------------

    @property
    def state(self) -> SessionState:
        return self._rules.state

    @property
    def worker_id(self) -> str:
        """The worker's id; raises :class:`LocalProtocolError` before it registered."""
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
        return self._rules.worker_registered

    @property
    def draining(self) -> bool:
        """The worker said it is draining: it takes no new task on this connection."""
        return self._rules.state is SessionState.DRAINING

    def can_accept(self, task_type: str | None = None) -> bool:
        """Whether a task (of *task_type*, if given) may be sent now."""
        return (
            self._rules.state is SessionState.ACTIVE
            and not self.throttled
            and self.load < self.capacity
            and (task_type is None or self.below_limit(task_type))
        )

    def load_of(self, task_type: str) -> int:
        """Capacity units held by tasks of *task_type* (counted for a type with a
        limit only)."""
        return self._load_by_type.get(task_type, 0)

    def below_limit(self, task_type: str) -> bool:
        """Whether *task_type* is below its limit on this worker (if it has one)."""
        if not self._limits:
            return True
        limit = self._limits.get(task_type)
        return limit is None or self._load_by_type.get(task_type, 0) < limit

    def in_flight(self) -> list[uuid.UUID]:
        """Tasks this worker holds that the dispatcher still waits for."""
        return [t for t, slot in self._slots.items() if slot is not _Slot.ABANDONED]

    def holds(self, task_id: uuid.UUID) -> bool:
        """Whether *task_id* holds a slot here, waited for or abandoned: it cannot be
        sent to this worker again until the worker lets it go."""
        return task_id in self._slots

    def is_running(self, task_id: uuid.UUID) -> bool:
        return self._slots.get(task_id) is _Slot.RUNNING

    # -- the worker's messages -----------------------------------------------

    def receive(self, message: Message) -> Message | None:
        """Check a message from the worker; return it (normalised) to be acted on,
        or ``None`` if it is a harmless repeat to ignore.

        Raises :class:`RemoteProtocolError`, and changes nothing, if the worker may
        not send it now: a message before ``WorkerRegister``, a second
        ``WorkerRegister``, a dispatcher's message, anything after :meth:`close`, a
        result for a task never dispatched on this connection, a ``Pending`` result,
        a ``Heartbeat``, ``Backpressure`` or result naming another worker than the
        one that registered on this connection.
        """
        # A result moves nothing in the rules: _receive_result may still refuse it.
        self._rules.receive(message)
        if isinstance(message, TaskResultMessage):
            return self._receive_result(message)
        if isinstance(message, Heartbeat):
            self._check_named(message, message.payload.worker_id)
            self._reconcile(message.payload.active_tasks)
            if message.payload.active_tasks < self.capacity:
                self.throttled = False
        elif isinstance(message, Backpressure):
            self._check_named(message, message.signal.worker_id)
            self.throttled = message.signal.should_throttle
        elif isinstance(message, WorkerRegister):
            if self.registration is None:
                self.registration = message.registration
            else:
                # A spawned worker describing itself: keep the id the dispatcher gave.
                # (Tasks it already runs of a type it now limits are not counted.)
                self.registration = attrs.evolve(
                    message.registration, worker_id=self.registration.worker_id
                )
            self._limits = self.registration.max_concurrency_by_type
        return message

    def _check_named(self, message: Message, worker_id: str) -> None:
        """A message that names a worker must name this connection's (once the worker
        chose its id): no worker speaks for another."""
        if self._named_by_peer and worker_id != self.worker_id:
            raise RemoteProtocolError(
                f"{message.TYPE} names worker {worker_id!r}, but this connection is "
                f"worker {self.worker_id!r}"
            )

    def _receive_result(self, message: TaskResultMessage) -> Message | None:
        result = message.result
        if result.worker_id:  # optional in a result; when given, it must be ours
            self._check_named(message, result.worker_id)
        slot = self._slots.get(result.task_id)
        if slot is None:
            if result.task_id in self._finished:
                self.duplicate_results += 1
                return None
            raise RemoteProtocolError(
                f"TaskResult for task {result.task_id} never dispatched to this worker"
            )
        if result.status is TaskStatus.PENDING:
            raise RemoteProtocolError(f"TaskResult for task {result.task_id} says Pending")
        if not result.status.is_terminal:
            if slot is _Slot.DISPATCHED:
                self._slots[result.task_id] = _Slot.RUNNING
            return message
        self._finish(result.task_id)
        if result.worker_id != self.worker_id:
            message = TaskResultMessage(_with_worker_id(result, self.worker_id))
        return message

    def _finish(self, task_id: uuid.UUID) -> None:
        if self._slots.pop(task_id) is _Slot.ABANDONED:
            self._abandoned -= 1
        if self._type_of:
            self._release_type(task_id)
        self._finished[task_id] = None
        self._finished.move_to_end(task_id)  # a retried id may already be remembered
        if len(self._finished) > self._remembered:
            self._finished.popitem(last=False)

    def _reconcile(self, reported_active: int) -> None:
        excess = self.load - reported_active
        if excess <= 0 or not self._abandoned:  # (most heartbeats: no walk)
            return
        for task_id in [t for t, s in self._slots.items() if s is _Slot.ABANDONED][:excess]:
            self._finish(task_id)

    # -- our messages ------------------------------------------------------

    def send(self, message: Message) -> None:
        """Record a message we are about to send.

        Raises :class:`LocalProtocolError`, and records nothing, if it is not legal
        now: a worker's message, anything before the worker registered or after
        :meth:`close`, ``TaskDispatch`` after ``Shutdown``, beyond the worker's
        capacity (or its task type's limit) or of a task already on it, ``Kill`` of a
        task not on it, a ``WorkerRegistered`` that answers no ``WorkerRegister``.
        """
        # TaskDispatch and Kill move nothing in the rules, so a refusal of their
        # content below still leaves the session as it was.
        self._rules.send(message)
        if isinstance(message, TaskDispatch):
            task_id = message.task.id
            if task_id in self._slots:
                raise LocalProtocolError(f"task {task_id} is already on this worker")
            if self.load >= self.capacity:
                raise LocalProtocolError(f"worker {self.worker_id} is at capacity")
            task_type = message.task.task_type
            if self._limits and task_type in self._limits:
                if not self.below_limit(task_type):
                    raise LocalProtocolError(
                        f"worker {self.worker_id} is at its limit for task type "
                        f"{task_type!r}"
                    )
                self._type_of[task_id] = task_type
                self._load_by_type[task_type] = self._load_by_type.get(task_type, 0) + 1
            self._slots[task_id] = _Slot.DISPATCHED
        elif isinstance(message, Kill) and message.task_id not in self._slots:
            raise LocalProtocolError(f"task {message.task_id} is not on this worker")

    def abandon(self, task_id: uuid.UUID) -> None:
        """The dispatcher has resolved *task_id* without the worker (timeout, kill).
        Its slot stays held until the worker reports or a heartbeat frees it."""
        if self._slots.get(task_id, _Slot.ABANDONED) is not _Slot.ABANDONED:
            self._slots[task_id] = _Slot.ABANDONED
            self._abandoned += 1

    def close(self) -> list[uuid.UUID]:
        """The connection is gone; return the tasks that were still in flight."""
        lost = self.in_flight()
        self._rules.close()
        self._slots.clear()
        self._abandoned = 0
        self._type_of.clear()
        self._load_by_type.clear()
        return lost

    def _release_type(self, task_id: uuid.UUID) -> None:
        task_type = self._type_of.pop(task_id, None)
        if task_type is None:
            return  # of a type without a limit
        left = self._load_by_type[task_type] - 1
        if left:
            self._load_by_type[task_type] = left
        else:
            del self._load_by_type[task_type]


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
