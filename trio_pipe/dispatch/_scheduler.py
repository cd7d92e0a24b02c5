"""The scheduler: the one owner of every task and worker record, and it never waits.

Every state change -- a submission, a worker's message, a worker's death, a deadline,
a cancellation -- is one synchronous method call here. Trio runs one task at a time,
so a method without a checkpoint is atomic: no lock, and no state observed half
changed. The tasks of the dispatcher's nursery tree (sessions, the deadline heaps,
callers of ``submit``) only wait -- for frames, for time, for room -- and then call in.

It owns the task entries (:class:`TaskEntry`: where each task is), the queue, the pool,
the deadline and retry heaps, the lifecycle events and the counters; it is the only
code that changes a :class:`TaskHandle`. What it sends to a worker goes into that
worker's outbox, which the worker's session writes out.
"""

from __future__ import annotations

import logging
import math
import time
import uuid
from collections.abc import Callable
from typing import Any

import trio

from .._backoff import backoff_delay
from .._deadlines import Deadlines
from .._errors import DispatcherClosed, ErrorCode, NoWorkerAvailable, QueueFull
from .._typed import TaskSpec
from ..protocol import (
    Backpressure,
    DispatcherMessage,
    Heartbeat,
    HeartbeatAck,
    Kill,
    Message,
    SessionState,
    Shutdown,
    Task,
    TaskDispatch,
    TaskError,
    TaskProgress,
    TaskResult,
    TaskResultMessage,
    TaskStatus,
    WorkerRegister,
    WorkerRegistered,
    encode,
    encode_dispatch,
)
from ..store import Store, TaskRecord
from ._config import DispatcherConfig
from ._entry import Constraint, OnWorker, TaskEntry, WithTag
from ._events import (
    Event,
    EventStream,
    TaskEvent,
    TaskEventKind,
    WorkerEvent,
    WorkerEventKind,
)
from ._handle import Attempt, TaskHandle
from ._pool import Pool, PoolStats, WorkerRecord, WorkerState
from ._queue import TaskQueue

__all__ = ["Scheduler"]

log = logging.getLogger("trio_pipe.dispatcher")

_NO_WORKERS: frozenset[str] = frozenset()


def _identity(payload: Any) -> Any:
    return payload


def placement_of(constraint: Constraint) -> str | None:
    """*constraint* as the store keeps it."""
    if isinstance(constraint, OnWorker):
        return f"worker:{constraint.worker_id}"
    if isinstance(constraint, WithTag):
        return f"tag:{constraint.tag}"
    return None


def constraint_of(placement: str | None) -> Constraint:
    if placement is None:
        return None
    kind, _, value = placement.partition(":")
    return OnWorker(value) if kind == "worker" else WithTag(value)


class Scheduler:
    """Tasks, workers and the rules that join them; see the module docstring.

    The dispatcher runs :attr:`deadlines` and :attr:`retries` (one task each) and
    waits on :attr:`queue_space` and :attr:`pool_changed`; everything else is called.
    """

    def __init__(self, config: DispatcherConfig, store: Store) -> None:
        self.config = config
        #: Told every change (``dispatched``, ``ended``); it never makes us wait.
        self.store = store
        self.pool = Pool(max_size=config.max_pool_size)
        self.queue = TaskQueue(
            max_queued=config.max_queued, aging_interval=config.aging_interval
        )
        #: Parked on by submissions waiting for room in a full queue.
        self.queue_space = trio.lowlevel.ParkingLot()
        #: Parked on by ``wait_for_workers``: unparked whenever the pool changes.
        self.pool_changed = trio.lowlevel.ParkingLot()
        self._entries: dict[uuid.UUID, TaskEntry] = {}
        #: Task deadlines (timeouts) and retry backoffs, each a heap run by one task.
        self.deadlines = Deadlines[TaskEntry](self._expire, live=self._live)
        self.retries = Deadlines[TaskEntry](self._retry_due, live=self._live)
        self.listeners: list[EventStream] = []
        self.closing = False
        self.drained = trio.Event()  # closing, and no task left unresolved
        self.all_gone = trio.Event()  # closing, and no worker left connected
        self.completed = 0
        self.failed = 0
        self.retried = 0
        self.stale_results = 0
        self.rejected = 0

    def _live(self) -> int:
        return len(self._entries)

    # ------------------------------------------------------------- reading

    def stats(self) -> PoolStats:
        return self.pool.stats(
            queued_by_priority=self.queue.depth_by_priority(),
            completed=self.completed,
            failed=self.failed,
            retried=self.retried,
            stale_results=self.stale_results,
            rejected=self.rejected,
        )

    def count_active(self, task_type: str | None) -> int:
        return sum(
            r.state is WorkerState.ACTIVE and (task_type is None or task_type in r.task_set)
            for r in self.pool
        )

    def entry(self, task_id: uuid.UUID) -> TaskEntry | None:
        """The entry of an unfinished task, if it is here."""
        return self._entries.get(task_id)

    def check_open(self) -> None:
        if self.closing:
            raise DispatcherClosed("the dispatcher is shutting down")

    # -------------------------------------------------------------- events

    def _emit(self, event: Event) -> None:
        for listener in self.listeners:
            listener._deliver(event)

    def _task_event(
        self,
        handle: TaskHandle[Any],
        kind: TaskEventKind,
        error: TaskError | None = None,
        progress: TaskProgress | None = None,
    ) -> None:
        if self.listeners:
            self._emit(
                TaskEvent(
                    kind,
                    handle.id,
                    handle.task.task_type,
                    trio.current_time(),
                    handle.worker_id,
                    handle.retry_count,
                    error,
                    progress,
                )
            )

    def worker_event(
        self, worker_id: str, kind: WorkerEventKind, reason: str | None = None
    ) -> None:
        if self.listeners:
            self._emit(WorkerEvent(kind, worker_id, trio.current_time(), reason))

    # ---------------------------------------------------------- admission

    def new_entry(
        self,
        task: Task | TaskSpec[Any],
        options: dict[str, Any],
        *,
        caller_deadline: float = math.inf,
        constraint: Constraint = None,
        on_done: Callable[[TaskHandle[Any]], object] | None = None,
    ) -> TaskEntry:
        """The entry (and handle) for *task* with typed-task *options*, not admitted
        yet. Raises
        ``DispatcherClosed``, and ``TypeError``/``ValueError`` if the payload is not
        JSON: that fails here, not later, and a task sent at once goes out as the very
        frame encoded now."""
        self.check_open()
        structure: Callable[[Any], Any] = _identity
        if isinstance(task, TaskSpec):
            structure = task.structure_result
            task = task.to_task(**{k: v for k, v in options.items() if v is not None})
        elif options:
            raise TypeError("options apply to typed tasks; give a Task its own metadata")
        frame = encode_dispatch(task, attempt=1, epoch=self.store.epoch)
        handle = TaskHandle(task, structure=structure, cancel=self.cancel, on_done=on_done)
        now = trio.current_time()
        return TaskEntry(
            handle,
            deadline=now + task.metadata.timeout_ms / 1000,
            caller_deadline=caller_deadline,
            constraint=constraint,
            frame=frame,
            submitted_at=now,
        )

    def record_of(self, entry: TaskEntry) -> TaskRecord:
        """What the store keeps of a new task *entry*."""
        now = time.time()
        task = entry.handle.task
        return TaskRecord(
            task,
            TaskStatus.PENDING,
            submitted_at=now,
            deadline=now + task.metadata.timeout_ms / 1000,
            updated_at=now,
            placement=placement_of(entry.constraint),
        )

    def resumed_entry(self, record: TaskRecord) -> TaskEntry:
        """The entry (and a new handle) of a task the store gives back, not admitted
        yet: its tries so far, its deadline, its placement."""
        handle = TaskHandle(record.task, structure=_identity, cancel=self.cancel)
        handle.attempts.extend(map(Attempt.of, record.attempts[record.counted_from :]))
        to_trio_time = trio.current_time() - time.time()  # wall clock -> Trio's
        entry = TaskEntry(
            handle,
            deadline=record.deadline + to_trio_time,
            constraint=constraint_of(record.placement),
            submitted_at=record.submitted_at + to_trio_time,
        )
        entry.attempt = record.attempts[-1].number if record.attempts else 0
        return entry

    def has_room(self, entry: TaskEntry) -> bool:
        """Whether *entry* may be admitted now without overfilling the queue: the
        queue has room, or a worker can take the task at once."""
        if not self.queue.full:
            return True
        constraint = entry.constraint
        worker_id = constraint.worker_id if isinstance(constraint, OnWorker) else None
        tag = constraint.tag if isinstance(constraint, WithTag) else None
        task_type = entry.handle.task.task_type
        return self.pool.select(task_type, worker_id=worker_id, tag=tag) is not None

    def check_admissible(self, entry: TaskEntry) -> None:
        """Raise ``NoWorkerAvailable`` when no registered worker supports the task's
        type, ``QueueFull`` when it would have to wait for room."""
        task_type = entry.handle.task.task_type
        if not self.pool.supports(task_type):
            raise NoWorkerAvailable(f"no worker supports task type {task_type!r}")
        if not self.has_room(entry):
            raise QueueFull(f"the queue holds {self.queue.max_queued} tasks")

    def admit(self, entry: TaskEntry) -> None:
        """Send the task to the best worker now, or queue it. Never refused: callers
        wait for :meth:`has_room` first, before the store takes the task (a task the
        store holds -- resumed, requeued, or admitted while others were being
        written -- may take the queue past ``max_queued``)."""
        self._place(entry)

    # ----------------------------------------------------------- placement

    def _place(self, entry: TaskEntry) -> None:
        """Send the task to the best worker, or queue it."""
        handle = entry.handle
        constraint = entry.constraint
        attempts = handle.attempts
        avoid = frozenset([a.worker_id for a in attempts]) if attempts else _NO_WORKERS
        record = self.pool.select(
            handle.task.task_type,
            worker_id=constraint.worker_id if isinstance(constraint, OnWorker) else None,
            tag=constraint.tag if isinstance(constraint, WithTag) else None,
            avoid=avoid,
            task_id=handle.id if attempts else None,
        )
        admitted = handle.id not in self._entries
        if admitted:
            self._entries[handle.id] = entry
            self.deadlines.watch(entry, entry.deadline)
        if admitted or record is None:
            self._task_event(handle, TaskEventKind.PENDING)
        if record is not None:
            self._send_task(entry, record)
        else:
            handle.status = TaskStatus.PENDING
            entry.frame = None  # it will have waited: its timeout will differ
            self.queue.push(entry, trio.current_time())

    def _send_task(
        self, entry: TaskEntry, record: WorkerRecord, *, rank: bool = True
    ) -> None:
        """Dispatch the task to *record*; ``rank=False`` leaves ranking the worker
        anew in the pool to the caller (once for several tasks)."""
        handle = entry.handle
        task = handle.task
        metadata = task.metadata
        time_left_ms = math.ceil((entry.effective_deadline - trio.current_time()) * 1000)
        frame, entry.frame = entry.frame, None
        entry.attempt += 1
        if (
            frame is None
            or time_left_ms < metadata.timeout_ms
            or handle.retry_count != metadata.retry_count
            or entry.attempt != 1
        ):
            frame = encode_dispatch(
                task,
                timeout_ms=max(min(time_left_ms, metadata.timeout_ms), 1),
                retry_count=handle.retry_count,
                attempt=entry.attempt,
                epoch=self.store.epoch,
            )
        self._post(record, TaskDispatch(task), frame)
        entry.started_at = now = time.time()
        self.store.dispatched(handle.id, entry.attempt, record.worker_id, now)
        if rank:
            self.pool.changed(record)
        entry.worker = record
        handle.worker_id = record.worker_id
        handle.status = TaskStatus.DISPATCHED
        self._task_event(handle, TaskEventKind.DISPATCHED)

    def _post(
        self, record: WorkerRecord, message: DispatcherMessage, frame: str | None = None
    ) -> None:
        """Queue *message* (already encoded as *frame*, if given) for the worker's
        writer, recording it in its session (which raises ``LocalProtocolError`` if
        the protocol does not allow it now: a bug of ours)."""
        if frame is None:
            frame = encode(message)
        record.session.send(message)
        # Dropped if the outbox is closed: the session is ending and accounts for it.
        outbox = record.outbox
        outbox.put(frame)
        if outbox.size > self.config.max_outbox_size and not record.evicted:
            limit = self.config.max_outbox_size
            log.warning(
                "worker %s at %s does not read: %d characters wait for it (the limit "
                "is %d): disconnected",
                record.worker_id,
                record.peer,
                outbox.size,
                limit,
            )
            record.evict(f"more than {limit} characters queued for it, unread")

    def _fill(self, record: WorkerRecord) -> None:
        """Give a worker with free slots the best-ranked queued tasks it can run, then
        rank it anew in the pool (once, whatever changed before and here)."""
        taken = False
        session = record.session
        held: list[TaskEntry] = []  # given up on here, still in a slot: not again
        while record.can_accept():
            entry = self.queue.pop_for(
                record.task_set, record.worker_id, record.tags, session.below_limit
            )
            if entry is None:
                break
            if session.holds(entry.handle.id):
                held.append(entry)
                continue
            taken = True
            try:
                self._send_task(entry, record, rank=False)
            except (TypeError, ValueError) as exc:  # payload mutated after submit
                self._resolve_error(
                    entry, TaskStatus.FAILED, ErrorCode.INVALID_PAYLOAD, str(exc)
                )
        now = trio.current_time()
        for entry in held:  # (their rank is kept: see TaskQueue)
            self.queue.push(entry, now)
        self.pool.changed(record)
        if taken:
            self.queue_space.unpark(count=max(self.queue.max_queued - len(self.queue), 0))

    # ---------------------------------------------------------- resolution

    def _resolve(
        self, entry: TaskEntry, result: TaskResult, *, attempt: int | None = None
    ) -> None:
        """End the task with *result* (which ended *attempt*, if it came from a try
        that is over already)."""
        handle = entry.handle
        if handle.done:
            return
        if entry.queued:
            self.queue.discard(entry)
            self.queue_space.unpark()
        elif entry.worker is not None:  # the live attempt ends with the task
            entry.worker.session.abandon(handle.id)
            attempt = entry.attempt
        entry.worker = None
        error = result.error
        if error is None or error.code != ErrorCode.DISPATCHER_CLOSED:
            # (Closing is not an outcome: the store keeps the task for the next opening.)
            self.store.ended(handle.id, attempt, result, time.time(), final=True)
        self._entries.pop(handle.id, None)
        if result.status is TaskStatus.COMPLETED:
            self.completed += 1
        else:
            self.failed += 1
        handle._resolve(result)
        self._task_event(handle, TaskEventKind.for_status(result.status), result.error)
        if self.closing and not self._entries:
            self.drained.set()

    def _resolve_error(
        self,
        entry: TaskEntry,
        status: TaskStatus,
        code: str,
        message: str,
        *,
        retryable: bool = False,
    ) -> None:
        self._resolve(
            entry,
            TaskResult(
                task_id=entry.handle.id,
                status=status,
                error=TaskError(code=code, message=message, retryable=retryable),
                worker_id=entry.handle.worker_id or "",
            ),
        )

    def _kill(self, entry: TaskEntry, reason: str) -> None:
        record = entry.worker
        if record is not None and record.session.state in (
            SessionState.ACTIVE,
            SessionState.CLOSING,
        ):
            self._post(record, Kill(task_id=entry.handle.id, reason=reason))

    def cancel(self, handle: TaskHandle[Any], reason: str) -> None:
        """Stop *handle*'s task wherever it is (``Kill`` to its worker) and resolve it
        ``Cancelled``: what ``TaskHandle.cancel`` does."""
        entry = self._entries.get(handle.id)
        if entry is None or entry.handle is not handle:  # never admitted
            entry = TaskEntry(handle, deadline=math.inf)
        self._kill(entry, reason)
        self._resolve_error(entry, TaskStatus.CANCELLED, ErrorCode.CANCELLED, reason)

    def _on_task_ended(
        self, entry: TaskEntry, result: TaskResult, *, expired: bool = False
    ) -> None:
        """A try ended on a worker: retry it if it may be retried, else resolve.

        A retryable ``Failed`` is retried after a backoff. A retryable ``Cancelled``
        is one the dispatcher did not ask for (after its ``Kill`` the task is resolved
        already, and its result never comes here): a worker that drained stopped it,
        and it is retried at once. So is a try whose deadline passed on its worker
        (*expired*: see :meth:`_expire`)."""
        handle = entry.handle
        entry.worker = None
        now = time.time()
        handle.attempts.append(
            Attempt(
                result.worker_id,
                result.status,
                result.error,
                entry.attempt,
                entry.started_at,
                now,
            )
        )
        status = result.status
        if (
            (expired or status is TaskStatus.FAILED or status is TaskStatus.CANCELLED)
            and result.error is not None
            and result.error.retryable
            and self._may_retry(entry)
        ):
            self.retried += 1
            handle.status = TaskStatus.PENDING
            self._task_event(handle, TaskEventKind.RETRYING, result.error)
            handle.worker_id = None  # until it is on a worker again
            delay = 0.0
            if status is TaskStatus.FAILED:
                delay = backoff_delay(
                    handle.retry_count - 1,
                    self.config.retry_backoff,
                    self.config.retry_backoff_max,
                )
            self.retries.watch(entry, trio.current_time() + delay)
            self.store.ended(handle.id, entry.attempt, result, now, final=False)
        else:
            self._resolve(entry, result, attempt=entry.attempt)

    def _may_retry(self, entry: TaskEntry) -> bool:
        handle = entry.handle
        if self.closing or handle.retry_count > handle.task.metadata.max_retries:
            return False
        if trio.current_time() >= entry.effective_deadline:
            return False
        constraint = entry.constraint
        return not (
            isinstance(constraint, OnWorker) and self.pool.get(constraint.worker_id) is None
        )

    def _retry_due(self, entry: TaskEntry) -> None:
        constraint = entry.constraint
        if isinstance(constraint, OnWorker) and self.pool.get(constraint.worker_id) is None:
            # Its worker left during the backoff: nowhere to retry (as in worker_gone).
            message = f"worker {constraint.worker_id} is gone"
            code = ErrorCode.WORKER_DISCONNECTED
            self._resolve_error(entry, TaskStatus.FAILED, code, message)
        else:
            self._place(entry)

    def _expire(self, entry: TaskEntry) -> None:
        """The task's deadline passed. Waiting, it resolves ``TimedOut``. On a worker,
        which is sent ``Kill``, it is retried on another worker if it has retries
        left and another connected worker could run it, with its timeout anew (within
        the caller's own deadline); otherwise it resolves ``TimedOut``. A worker on
        which ``max_consecutive_timeouts`` tasks in a row time out is drained: one
        silent worker cannot swallow the queue."""
        now = trio.current_time()
        if now < entry.deadline:
            return  # a worker extended it since this deadline was watched
        timeout_ms = entry.handle.task.metadata.timeout_ms
        record = entry.worker
        where = "waiting" if record is None else f"on worker {record.worker_id}"
        message = f"no result within its deadline ({timeout_ms} ms timeout; {where})"
        self._kill(entry, "timed out")
        if record is not None:
            self._count_timeout(record)
            if self._may_retry_elsewhere(entry, record):
                record.session.abandon(entry.handle.id)
                entry.deadline = now + timeout_ms / 1000
                self.deadlines.watch(entry, entry.deadline)
                error = TaskError(code=ErrorCode.TIMEOUT, message=message, retryable=True)
                result = TaskResult(
                    entry.handle.id,
                    TaskStatus.TIMED_OUT,
                    error=error,
                    worker_id=record.worker_id,
                )
                self._on_task_ended(entry, result, expired=True)
                return
        self._resolve_error(entry, TaskStatus.TIMED_OUT, ErrorCode.TIMEOUT, message)

    def _may_retry_elsewhere(self, entry: TaskEntry, record: WorkerRecord) -> bool:
        handle = entry.handle
        constraint = entry.constraint
        if (
            self.closing
            or handle.retry_count >= handle.task.metadata.max_retries
            or trio.current_time() >= entry.caller_deadline
            or isinstance(constraint, OnWorker)
        ):
            return False
        avoid = frozenset([record.worker_id, *(a.worker_id for a in handle.attempts)])
        tag = constraint.tag if isinstance(constraint, WithTag) else None
        return self.pool.has_other(handle.task.task_type, avoid, tag)

    def _count_timeout(self, record: WorkerRecord) -> None:
        """One more of *record*'s tasks timed out on it: drain it at the limit."""
        record.consecutive_timeouts += 1
        limit = self.config.max_consecutive_timeouts
        if (
            limit is not None
            and record.consecutive_timeouts >= limit
            and record.state is WorkerState.ACTIVE
        ):
            reason = f"{record.consecutive_timeouts} tasks in a row timed out on it"
            log.warning(
                "worker %s at %s: %s: drained", record.worker_id, record.peer, reason
            )
            self.drain(record, reason)

    # -------------------------------------------------------------- workers

    def worker_joined(self, record: WorkerRecord) -> WorkerRecord | None:
        """Add a registered worker to the pool and give it work; return the record of
        an older connection with the same id, which it replaces (the caller ends
        that one's session). Raises ``DispatcherClosed``, ``PoolFull`` or
        ``RegistrationDenied``."""
        self.check_open()
        replaced = self.pool.add(record)
        log.info("worker %s registered from %s", record.worker_id, record.peer)
        self.worker_event(record.worker_id, WorkerEventKind.REGISTERED, record.peer)
        self.pool_changed.unpark_all()
        if record.session.registered_by_peer:
            self._post(record, WorkerRegistered(worker_id=record.worker_id))
        self._fill(record)
        return replaced

    def on_message(self, record: WorkerRecord, message: Message) -> None:
        """Act on one message from the worker. Raises ``RemoteProtocolError`` if the
        protocol does not allow it now (the session layer then closes the worker)."""
        session = record.session
        was_throttled = session.throttled
        load = session.load
        accepted = session.receive(message)
        if session.throttled != was_throttled and not session.draining:
            kind = (
                WorkerEventKind.THROTTLED
                if session.throttled
                else WorkerEventKind.UNTHROTTLED
            )
            self.worker_event(record.worker_id, kind)
        if isinstance(accepted, TaskResultMessage):
            result = accepted.result
            entry = self._entries.get(result.task_id)
            if entry is None or entry.worker is not record:
                # From an attempt we gave up on (its deadline passed, it was
                # cancelled, another attempt took over): never an outcome. Its worker
                # was sent Kill then; a progress report says it still runs the task.
                self.stale_results += 1
                if not result.status.is_terminal and record.session.state in (
                    SessionState.ACTIVE,
                    SessionState.CLOSING,
                ):
                    self._post(record, Kill(task_id=result.task_id, reason="superseded"))
            elif not result.status.is_terminal:
                self._on_progress_report(entry, result)
            else:
                record.consecutive_timeouts = 0
                self._on_task_ended(entry, result)
        elif isinstance(accepted, Heartbeat):
            self._post(record, HeartbeatAck())
        elif isinstance(accepted, Backpressure):
            log.debug("worker %s backpressure %s", record.worker_id, accepted.signal)
            if session.draining and record.state is WorkerState.ACTIVE:
                log.info("worker %s is draining", record.worker_id)
                self.drain(record)
        elif isinstance(accepted, WorkerRegister):
            self.pool.reindex(record)
            self.pool_changed.unpark_all()
            if session.registered_by_peer:
                self._post(record, WorkerRegistered(worker_id=record.worker_id))
        elif session.load == load and session.throttled == was_throttled:
            # Nothing it could take changed (a heartbeat, a progress report...): the
            # message costs constant work, however many task types the worker has.
            return
        self._fill(record)  # and ranks the worker anew: its load may have changed

    def _on_progress_report(self, entry: TaskEntry, result: TaskResult) -> None:
        """A ``Running`` report: the task runs; pass its progress on, in order, and
        grant its deadline extension if its type allows one."""
        handle = entry.handle
        if handle.status is not TaskStatus.RUNNING:
            handle.status = TaskStatus.RUNNING
            self._task_event(handle, TaskEventKind.RUNNING)
        if result.progress is not None:
            handle.progress = result.progress
            self._task_event(handle, TaskEventKind.PROGRESS, progress=result.progress)
        if result.extend_ms is not None:
            self._extend(entry, result.extend_ms)

    def _extend(self, entry: TaskEntry, extend_ms: int) -> None:
        """Move the task's deadline to now + *extend_ms*, within the longest life its
        type allows (``max_lifetime_by_type``); never nearer than it was."""
        task = entry.handle.task
        lifetime = self.config.max_lifetime_by_type.get(task.task_type)
        if lifetime is None:
            log.info(
                "task %s (%s) asked for %d ms more: its type may not extend its deadline",
                task.id,
                task.task_type,
                extend_ms,
            )
            return
        deadline = min(
            trio.current_time() + extend_ms / 1000, entry.submitted_at + lifetime
        )
        if deadline > entry.deadline:
            entry.deadline = deadline
            self.deadlines.watch(entry, deadline)

    def drain(self, record: WorkerRecord, reason: str | None = None) -> None:
        """Send *record* no new tasks; its running tasks finish normally."""
        record.state = WorkerState.DRAINING
        self.pool.changed(record)
        self.worker_event(record.worker_id, WorkerEventKind.DRAINING, reason)

    def worker_gone(self, record: WorkerRecord, reason: str) -> None:
        """The worker's session ended: retry or resolve what it held, then update the
        pool (and warn if it fell below its minimum)."""
        lost = record.session.close()
        record.close_reason = reason
        self.pool.remove(record, dead=not record.removed)
        log.info("worker %s gone: %s", record.worker_id, reason)
        kind = WorkerEventKind.REMOVED if record.removed else WorkerEventKind.DEAD
        self.worker_event(record.worker_id, kind, reason)
        if self.closing:
            code, status = ErrorCode.DISPATCHER_CLOSED, TaskStatus.CANCELLED
        elif record.removed:
            code, status = ErrorCode.WORKER_REMOVED, TaskStatus.FAILED
        else:
            code, status = ErrorCode.WORKER_DISCONNECTED, TaskStatus.FAILED
        message = f"worker {record.worker_id}: {reason}"
        for task_id in lost:
            entry = self._entries.get(task_id)
            if entry is not None and entry.worker is record:
                error = TaskError(code=code, message=message, retryable=not self.closing)
                self._on_task_ended(
                    entry,
                    TaskResult(task_id, status, error=error, worker_id=record.worker_id),
                )
        if self.pool.get(record.worker_id) is None:
            for entry in self.queue.take_where(OnWorker(record.worker_id)):
                self._resolve_error(entry, TaskStatus.FAILED, code, message)
        if self.closing and not len(self.pool):
            self.all_gone.set()
        on_below_minimum = self.config.on_below_minimum
        if on_below_minimum is not None:  # the stats walk every worker: only if wanted
            stats = self.stats()
            if stats.active < self.config.min_pool_size:
                on_below_minimum(stats)

    # ------------------------------------------------------------ shutdown

    def begin_shutdown(self) -> None:
        """Graceful close, first step: take nothing new, resolve what never reached a
        worker (``DISPATCHER_CLOSED``), tell every worker ``Shutdown{graceful}``."""
        self.closing = True
        self.queue_space.unpark_all()
        self.pool_changed.unpark_all()
        for entry in self.queue.take_all():
            self._resolve_error(
                entry, TaskStatus.CANCELLED, ErrorCode.DISPATCHER_CLOSED, "never dispatched"
            )
        for entry in list(self._entries.values()):
            if entry.worker is None:  # waiting to be retried
                self._resolve_error(
                    entry, TaskStatus.CANCELLED, ErrorCode.DISPATCHER_CLOSED, "not retried"
                )
        for record in self.pool:
            if record.session.state is SessionState.ACTIVE:
                self._post(record, Shutdown(graceful=True))
        if not self._entries:
            self.drained.set()
        if not len(self.pool):
            self.all_gone.set()

    def close_connections(self) -> None:
        """Graceful close, last step: each writer sends what is pending, then closes."""
        for record in self.pool:
            record.outbox.close()

    def close_everything(self) -> None:
        """The end, however it came: every handle resolved (``DISPATCHER_CLOSED``),
        every event stream ended."""
        self.closing = True
        self.queue_space.unpark_all()
        self.pool_changed.unpark_all()
        for entry in list(self._entries.values()):
            self._resolve_error(
                entry,
                TaskStatus.CANCELLED,
                ErrorCode.DISPATCHER_CLOSED,
                "dispatcher closed",
            )
        for listener in list(self.listeners):
            listener.close()
