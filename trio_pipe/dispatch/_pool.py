"""The pool: connected workers, their state, and least-loaded selection."""

from __future__ import annotations

import enum
import heapq
import itertools
import math
import uuid
from collections import OrderedDict
from collections.abc import Iterator, Mapping

import attrs
import trio

from .._errors import PoolFull
from ..auth import Claims
from ..protocol import Priority, WorkerSession
from ..transports import Outbox

__all__ = [
    "Pool",
    "PoolStats",
    "RegistrationDenied",
    "WorkerInfo",
    "WorkerRecord",
    "WorkerState",
]


class RegistrationDenied(Exception):
    """A registration the dispatcher refuses (close code 1008, with this reason): under
    the id of a live worker it may not replace, or outside its credentials."""


class WorkerState(enum.Enum):
    ACTIVE = "active"
    DRAINING = "draining"  # connected, finishing its tasks, takes no new ones
    DEAD = "dead"  # gone; kept for inspection until replaced or removed


@attrs.frozen
class WorkerInfo:
    """A snapshot of one worker, as :meth:`Dispatcher.workers` reports it."""

    worker_id: str
    state: WorkerState
    transport: str
    peer: str
    supported_tasks: tuple[str, ...]
    tags: tuple[str, ...]
    language: str
    max_concurrency: int
    active_tasks: int
    throttled: bool
    connected_at: float
    last_seen: float
    close_reason: str | None
    #: How many task types it supports: a dead worker's record keeps only the first
    #: ``SUMMARY_TASK_TYPES`` of them in ``supported_tasks`` (and of its tags).
    task_type_count: int = 0

    def summary(self) -> WorkerInfo:
        """This record as a dead worker's is kept: a bounded number of task types and
        tags, whatever the worker declared."""
        if (
            len(self.supported_tasks) <= SUMMARY_TASK_TYPES
            and len(self.tags) <= SUMMARY_TASK_TYPES
        ):
            return self
        return attrs.evolve(
            self,
            supported_tasks=self.supported_tasks[:SUMMARY_TASK_TYPES],
            tags=self.tags[:SUMMARY_TASK_TYPES],
        )


#: The most task types (and tags) a dead worker's record keeps.
SUMMARY_TASK_TYPES = 16


@attrs.frozen
class PoolStats:
    """Counts over the pool, as :meth:`Dispatcher.pool_stats` reports them."""

    total: int  # connected workers (active + draining)
    active: int  # taking tasks
    busy: int  # active but at capacity or throttled
    draining: int
    dead: int  # remembered dead workers
    total_capacity: int  # sum of max_concurrency over connected workers
    used_capacity: int  # capacity units held by dispatched tasks
    queued: int  # tasks waiting for a worker
    queued_by_priority: Mapping[Priority, int]
    in_flight: int  # tasks on workers that the dispatcher is waiting for
    completed: int  # tasks resolved Completed since the dispatcher opened
    failed: int  # tasks resolved any other way (Failed, TimedOut, Cancelled)
    retried: int  # retries scheduled (a task retried twice counts twice)
    stale_results: int = 0  # results of attempts given up on, discarded (fencing)
    #: Registrations and messages refused, each ending its connection with 1008: a
    #: registration outside its credentials or under a live worker's id, a message
    #: the protocol forbids (one naming another worker, a result for a task not
    #: dispatched on that connection, a malformed frame).
    rejected: int = 0


@attrs.define(eq=False)
class WorkerRecord:
    """The dispatcher's record of one connected worker (owned by the dispatcher)."""

    session: WorkerSession
    outbox: Outbox
    cancel_scope: trio.CancelScope
    transport: str
    peer: str
    connected_at: float
    last_seen: float
    state: WorkerState = WorkerState.ACTIVE
    close_reason: str | None = None
    removed: bool = False  # by Dispatcher.remove_worker, not by its own failure
    evicted: bool = False  # its session ended on purpose (removed, or replaced)
    watched: bool = True  # by the heartbeat watchdog
    claims: Claims | None = None  # what its credentials allow (authenticated workers)
    writing: bool = False  # its session's writer is in the middle of a write
    write_scope: trio.CancelScope | None = None  # bounds that write (write_batches)
    rank: int = 0  # bumped by Pool.changed: older entries in the pool's heaps are stale
    #: The task types it was indexed under (Pool._index), as a set.
    task_set: frozenset[str] = frozenset()
    #: Its tasks whose deadline passed in a row, with no result between them.
    consecutive_timeouts: int = 0

    @property
    def worker_id(self) -> str:
        return self.session.worker_id

    def evict(self, reason: str) -> None:
        """End its session on purpose: its connection is closed with *reason*."""
        self.evicted = True
        self.close_reason = reason
        self.cancel_scope.cancel()

    @property
    def supported_tasks(self) -> tuple[str, ...]:
        assert self.session.registration is not None
        return self.session.registration.supported_tasks

    @property
    def tags(self) -> tuple[str, ...]:
        assert self.session.registration is not None
        return self.session.registration.tags

    def can_accept(self, task_type: str | None = None) -> bool:
        """Whether a task (of *task_type*, if given: within its limit) may go here."""
        return (
            self.state is WorkerState.ACTIVE
            and not self.evicted
            and self.session.can_accept(task_type)
        )

    def info(self) -> WorkerInfo:
        registration = self.session.registration
        assert registration is not None
        return WorkerInfo(
            worker_id=registration.worker_id,
            state=self.state,
            transport=self.transport,
            peer=self.peer,
            supported_tasks=registration.supported_tasks,
            tags=registration.tags,
            language=registration.language,
            max_concurrency=registration.max_concurrency,
            active_tasks=self.session.load,
            throttled=self.session.throttled,
            connected_at=self.connected_at,
            last_seen=self.last_seen,
            close_reason=self.close_reason,
            task_type_count=len(registration.supported_tasks),
        )


# A worker's place in its task types' heaps: (load ratio, -capacity, sequence, rank).
_Entry = tuple[float, int, int, int, WorkerRecord]


class Pool:
    """Connected workers indexed by id and by task type, plus remembered dead ones.

    Least-loaded selection does not scan the workers: per task type, a heap holds an
    entry for each worker that could take a task when it last changed (its load,
    throttle or state, as the dispatcher reports with :meth:`changed`). Entries older
    than their worker's last change are dropped when they surface; a heap grown much
    larger than the pool is rebuilt. There is a heap only for a task type that has been
    asked for (by :meth:`select`): a change costs a push per type asked for and
    supported, however many types the worker declared -- once, when a selection next
    needs the heaps, however many times the worker changed since (a slot freed, then
    filled: one push, not two).
    """

    def __init__(self, *, max_size: int | None, remembered_dead: int = 1024) -> None:
        self.max_size = max_size
        self._workers: dict[str, WorkerRecord] = {}
        self._by_type: dict[str, list[WorkerRecord]] = {}
        self._free: dict[str, list[_Entry]] = {}
        # Workers changed since the heaps were last brought up to date (an ordered set):
        self._changed: dict[WorkerRecord, None] = {}
        self._seq = itertools.count()
        self._dead: OrderedDict[str, WorkerInfo] = OrderedDict()
        self._remembered_dead = remembered_dead

    def __iter__(self) -> Iterator[WorkerRecord]:
        return iter(list(self._workers.values()))

    def __len__(self) -> int:
        return len(self._workers)

    def get(self, worker_id: str) -> WorkerRecord | None:
        return self._workers.get(worker_id)

    def supports(self, task_type: str) -> bool:
        return bool(self._by_type.get(task_type))

    def add(self, record: WorkerRecord) -> WorkerRecord | None:
        """Add *record*; return the connected record it replaces (same id), if any.

        An authenticated worker (with claims) replaces a connected one only if that
        one came with the same credentials (token id): a reconnect, its old session
        stale. Otherwise the id is taken: :class:`RegistrationDenied`. (Without
        authentication nothing tells an impostor from a reconnect, and any process
        that can connect may register anyway: the newer connection wins.)"""
        replaced = self._workers.get(record.worker_id)
        if replaced is not None and record.claims is not None:
            held = replaced.claims
            if held is None or held.token_id != record.claims.token_id:
                raise RegistrationDenied(
                    f"worker id {record.worker_id!r} is held by a live connection "
                    f"({replaced.peer})"
                )
        if replaced is None and self.max_size is not None and len(self) >= self.max_size:
            raise PoolFull(f"the pool is full ({self.max_size} workers)")
        if replaced is not None:
            self._unindex(replaced)
        self._workers[record.worker_id] = record
        self._dead.pop(record.worker_id, None)
        self._index(record)
        self.changed(record)
        return replaced

    def reindex(self, record: WorkerRecord) -> None:
        """The worker changed what it supports."""
        self._unindex(record)
        self._index(record)
        self.changed(record)

    def changed(self, record: WorkerRecord) -> None:
        """*record*'s load, throttle or state may have changed: rank it anew (its heap
        entries are stale now; its new one is pushed when a selection needs it)."""
        record.rank += 1
        self._changed[record] = None

    def _rank_changed(self) -> None:
        """A heap entry for each worker changed since the last selection that can
        take a task now."""
        changed, self._changed = self._changed, {}
        for record in changed:
            self._push(record)

    def _push(self, record: WorkerRecord) -> None:
        if not record.can_accept() or self._workers.get(record.worker_id) is not record:
            return
        session = record.session
        entry = (
            session.load / session.capacity,
            -session.capacity,
            next(self._seq),
            record.rank,
            record,
        )
        supported, asked_for = record.task_set, self._free
        if len(asked_for) <= len(supported):
            task_types = [t for t in asked_for if t in supported]
        else:
            task_types = [t for t in supported if t in asked_for]
        for task_type in task_types:
            heap = asked_for[task_type]
            heapq.heappush(heap, entry)
            if len(heap) > 4 * len(self._by_type.get(task_type, ())) + 64:
                self._rebuild(task_type)

    def remove(self, record: WorkerRecord, *, dead: bool) -> None:
        if self._workers.get(record.worker_id) is not record:
            return  # already replaced by a newer connection with this id
        del self._workers[record.worker_id]
        self._unindex(record)
        if dead:
            record.state = WorkerState.DEAD
            self._dead[record.worker_id] = record.info().summary()
            while len(self._dead) > self._remembered_dead:
                self._dead.popitem(last=False)

    def forget_dead(self, worker_id: str) -> bool:
        return self._dead.pop(worker_id, None) is not None

    def select(
        self,
        task_type: str,
        *,
        worker_id: str | None = None,
        tag: str | None = None,
        avoid: frozenset[str] = frozenset(),
        task_id: uuid.UUID | None = None,
    ) -> WorkerRecord | None:
        """The least-loaded worker that can take a task now, preferring ones not in
        *avoid*, and never one that still holds *task_id* (a try it was given up on,
        whose slot it has not let go); ``None`` if there is none. A task retried has
        tried workers to *avoid*, so only the first try of a task takes the fast
        path, and it cannot be held anywhere."""
        if worker_id is not None:
            record = self._workers.get(worker_id)
            ok = (
                record
                and record.can_accept(task_type)
                and task_type in record.task_set
                and not (task_id is not None and record.session.holds(task_id))
            )
            return record if ok else None
        if tag is None and not avoid:
            return self._least_loaded(task_type)
        return self._scan(task_type, tag, avoid, task_id)

    def _least_loaded(self, task_type: str) -> WorkerRecord | None:
        if self._changed:
            self._rank_changed()
        heap = self._free.get(task_type)
        if heap is None:  # first asked for: every worker that could take one now
            workers = self._by_type.get(task_type)
            if not workers:
                return None
            heap = self._free[task_type] = []
            for record in workers:
                if record.can_accept():
                    session = record.session
                    key = (session.load / session.capacity, -session.capacity)
                    heap.append((*key, next(self._seq), record.rank, record))
            heapq.heapify(heap)
        while heap:
            *_, rank, record = heap[0]
            if rank == record.rank and record.can_accept(task_type):
                return record
            # Stale, or at its limit for this type: ranked anew when that changes.
            heapq.heappop(heap)
        return None

    def _scan(
        self,
        task_type: str,
        tag: str | None,
        avoid: frozenset[str],
        task_id: uuid.UUID | None,
    ) -> WorkerRecord | None:
        """Least-loaded selection by looking at every worker (with a tag or workers to
        avoid: retries and tagged tasks)."""
        best: WorkerRecord | None = None
        best_key = (True, math.inf, 0)
        for record in self._by_type.get(task_type, ()):
            if (
                not record.can_accept(task_type)
                or (tag is not None and tag not in record.tags)
                or (task_id is not None and record.session.holds(task_id))
            ):
                continue
            session = record.session
            key = (
                record.worker_id in avoid,
                session.load / session.capacity,
                -session.capacity,
            )
            if key < best_key:
                best, best_key = record, key
        return best

    def has_other(self, task_type: str, avoid: frozenset[str], tag: str | None) -> bool:
        """Whether a connected worker not in *avoid* (with *tag*, if given) takes
        tasks of *task_type*, busy or not."""
        return any(
            record.state is WorkerState.ACTIVE
            and not record.evicted
            and record.worker_id not in avoid
            and (tag is None or tag in record.tags)
            for record in self._by_type.get(task_type, ())
        )

    def infos(self) -> list[WorkerInfo]:
        return [r.info() for r in self._workers.values()] + list(self._dead.values())

    def stats(
        self,
        *,
        queued_by_priority: Mapping[Priority, int],
        completed: int,
        failed: int,
        retried: int,
        stale_results: int,
        rejected: int,
    ) -> PoolStats:
        connected = list(self._workers.values())
        active = [r for r in connected if r.state is WorkerState.ACTIVE]
        return PoolStats(
            total=len(connected),
            active=len(active),
            busy=sum(not r.session.can_accept() for r in active),
            draining=sum(r.state is WorkerState.DRAINING for r in connected),
            dead=len(self._dead),
            total_capacity=sum(r.session.capacity for r in connected),
            used_capacity=sum(r.session.load for r in connected),
            queued=sum(queued_by_priority.values()),
            queued_by_priority=queued_by_priority,
            in_flight=sum(len(r.session.in_flight()) for r in connected),
            completed=completed,
            failed=failed,
            retried=retried,
            stale_results=stale_results,
            rejected=rejected,
        )

    def _index(self, record: WorkerRecord) -> None:
        record.task_set = frozenset(record.supported_tasks)
        for task_type in record.task_set:
            self._by_type.setdefault(task_type, []).append(record)

    def _unindex(self, record: WorkerRecord) -> None:
        record.rank += 1  # its heap entries are stale
        self._changed.pop(record, None)
        for task_type in record.task_set:
            workers = self._by_type[task_type]
            workers.remove(record)
            if not workers:
                del self._by_type[task_type]
                self._free.pop(task_type, None)
        record.task_set = frozenset()

    def _rebuild(self, task_type: str) -> None:
        """The heap of *task_type* without its stale entries."""
        heap = self._free[task_type]
        heap[:] = [entry for entry in heap if entry[3] == entry[4].rank]
        heapq.heapify(heap)
