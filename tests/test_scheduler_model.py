"""The scheduler against a model of its rules (docs/scheduling.md), step by step.

Hypothesis drives a :class:`Scheduler` directly -- no sessions, no transports -- with
submissions (any priority, timeout and ``max_retries``; free, pinned to a worker or
to a tag), workers that join, answer (``Completed``, ``Failed`` retryable or not,
``Running``), heartbeat, throttle, drain, die, are removed or reconnect under the
same id, callers that cancel, and time that passes. A small model says what each
step must do, and every step is checked against it:

* the task events, in order: each one the model expects, each transition one that
  ``LEGAL_TASK_TRANSITIONS`` allows; where routing leaves a choice (workers equally
  loaded), any worker the rules allow is accepted and the model follows it;
* the frames each worker is sent (``TaskDispatch`` with the ``retryCount`` and the
  ``timeoutMs`` left, ``Kill``, ``HeartbeatAck``), read from its outbox;
* then the invariants below: every handle resolves exactly once, with the status
  and code the model says; no worker holds more than its capacity; no task is on two
  workers; no slot stays idle while a task it may run waits; a queued task keeps the
  rank it first got; no retry is overdue or beyond ``max_retries``; ``pool_stats``
  agrees with the model.

Routing is checked as the rule says: the least-loaded worker that may take the task,
and for a retry one that has not failed it whenever such a worker has a free slot.
The queue is checked exactly: a worker that frees a slot takes the waiting task of
best rank (``queued_at - priority * aging_interval``, then arrival), a retried task
keeping the rank it got when it first waited. At the end of each run a worker that
can take anything joins and every task is answered: everything resolves, and what
cannot run (pinned to a worker that is draining or throttled, or that does not run
its type) times out.

The scheduler never waits, so the machine drives it synchronously: each call into it
is made inside a Trio run (it reads ``trio.current_time()`` and parks callers on
ParkingLots), a run of the example's own on a ``MockClock``, so that every example
starts at the same virtual time and replays exactly. Time is moved by hand
(``MockClock.jump``): each move stops at every deadline and retry on the way, where
the two heaps are expired (``Deadlines.expire_due``), as their tasks would be woken.
"""

from __future__ import annotations

import collections
import functools
import itertools
import math
import os
import threading
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

import attrs
import hypothesis
import trio
import trio.testing
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from trio_pipe import ErrorCode, _backoff
from trio_pipe.dispatch import (
    LEGAL_TASK_TRANSITIONS,
    DispatcherConfig,
    Event,
    EventStream,
    PoolStats,
    TaskEvent,
    TaskEventKind,
    TaskHandle,
    WorkerState,
)
from trio_pipe.dispatch._entry import Constraint, OnWorker, TaskEntry, WithTag
from trio_pipe.dispatch._pool import WorkerRecord
from trio_pipe.dispatch._scheduler import Scheduler
from trio_pipe.protocol import (
    Backpressure,
    BackpressureSignal,
    Heartbeat,
    HeartbeatAck,
    HeartbeatPayload,
    Kill,
    Priority,
    Task,
    TaskDispatch,
    TaskError,
    TaskResult,
    TaskResultMessage,
    TaskStatus,
    WorkerRegistration,
    WorkerSession,
    decode,
)
from trio_pipe.store import MemoryStore
from trio_pipe.transports import Outbox

TYPES = ("a", "b")
TAGS = ("gpu", "ssd")
AGING = 2.0  # seconds per priority level: small, so that aging matters within a run
BACKOFF = 0.5
BACKOFF_MAX = 2.0
MAX_WORKERS = 4  # connected at once, while the rules run
TIMEOUTS_MS = (1_000, 4_000, 10_000, 30_000, 30_000)
EPS = 1e-6  # float slack on backoff bounds only; everything else is compared exactly

LIMIT_TIMEOUTS = 2  # a worker's tasks timing out in a row: it is drained
CONFIG = DispatcherConfig(
    aging_interval=AGING,
    retry_backoff=BACKOFF,
    retry_backoff_max=BACKOFF_MAX,
    max_consecutive_timeouts=LIMIT_TIMEOUTS,
)

# Workers run both types more often than one, and have few slots: tasks compete for
# workers, and wait for them.
WORKER_TYPES = st.sampled_from([("a",), ("b",), ("a", "b"), ("a", "b"), ("b", "a")])
CAPACITY = st.sampled_from([1, 1, 2, 3])

# A failing run is reported as found, with the seed that replays it: shrinking a run
# of fifty steps can take Hypothesis its full five minutes, past the suite's time
# bounds. To shrink one, replay it with TRIO_PIPE_SHRINK=1 and --hypothesis-seed=SEED.
# No example database: the targeted search would fill it with runs that replaying
# then costs more than finding anew.
SHRINK = bool(os.environ.get("TRIO_PIPE_SHRINK"))

SETTINGS = settings(
    max_examples=150,
    stateful_step_count=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    phases=[p for p in Phase if SHRINK or p not in (Phase.shrink, Phase.explain)],
    report_multiple_bugs=False,
    database=None,
)

# The retry jitter's generator: seeded by Hypothesis, so that a failure replays.
hypothesis.register_random(_backoff._RANDOM)

TERMINAL = {status for status in TaskStatus if status.is_terminal}
TERMINAL_EVENTS = {TaskEventKind.for_status(status) for status in TERMINAL}
DISPATCHED = TaskEventKind.DISPATCHED
PENDING = TaskEventKind.PENDING


R = TypeVar("R")


class TrioRun:
    """A Trio run of its own, on a MockClock, in a thread: one per example, so that
    every example starts at the same virtual time (a failure replays exactly, float
    rounding of times included) and owns its time. The machine calls into the
    scheduler through :meth:`call`, which runs a function in the run and waits."""

    def __init__(self) -> None:
        self.clock = trio.testing.MockClock()
        self._started = threading.Event()
        self._thread = threading.Thread(
            target=trio.run, args=(self._main,), kwargs={"clock": self.clock}, daemon=True
        )
        self._thread.start()
        assert self._started.wait(10), "the Trio run did not start"

    async def _main(self) -> None:
        self._token = trio.lowlevel.current_trio_token()
        self._stop = trio.Event()
        self._started.set()
        await self._stop.wait()

    def call(self, function: Callable[..., R], *args: Any) -> R:
        return trio.from_thread.run_sync(function, *args, trio_token=self._token)

    def close(self) -> None:
        self.call(self._stop.set)
        self._thread.join()


class EventLog(EventStream):
    """A listener that keeps every task event, in order, for the model to consume."""

    def __init__(self, listeners: list[EventStream]) -> None:
        super().__init__(1, listeners)
        self.events: collections.deque[TaskEvent] = collections.deque()

    def _deliver(self, event: Event) -> None:
        if isinstance(event, TaskEvent):
            self.events.append(event)


@attrs.define(eq=False, repr=False)
class ModelWorker:
    record: WorkerRecord
    types: tuple[str, ...]
    tags: tuple[str, ...]
    capacity: int
    connected: bool = True  # the pool's record for its id (not gone, not replaced)
    draining: bool = False
    throttled: bool = False
    timeouts: int = 0  # its tasks timed out in a row (drained at the config's limit)
    #: Tasks holding a slot, in dispatch order: True while the dispatcher waits for
    #: the result, False once it gave up on it (timed out, cancelled).
    slots: dict[uuid.UUID, bool] = attrs.Factory(dict)
    #: Frames it must have been sent since the outbox was last read.
    frames: list[tuple[Any, ...]] = attrs.Factory(list)

    def __repr__(self) -> str:
        return self.id

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(repr(self))  # in Hypothesis' report of a failing run

    @property
    def id(self) -> str:
        return self.record.worker_id

    @property
    def load(self) -> int:
        return len(self.slots)

    def live(self) -> list[uuid.UUID]:
        return [task_id for task_id, waited_for in self.slots.items() if waited_for]

    def free(self) -> bool:
        """May take a task now (as ``WorkerRecord.can_accept``)."""
        return (
            self.connected
            and not self.draining
            and not self.throttled
            and self.load < self.capacity
        )


@attrs.define(eq=False, repr=False)
class ModelTask:
    name: str
    entry: TaskEntry  # the scheduler's record of it
    constraint: Constraint
    deadline: float
    admitted: int  # the order of admission: ties between equal deadlines
    where: str = "new"  # queued | worker | backoff | done
    worker: ModelWorker | None = None
    worker_id: str | None = None  # what handle.worker_id says
    status: TaskStatus = TaskStatus.PENDING
    code: str | None = None  # the error code it resolved with
    running: bool = False
    queued_at: float | None = None  # when it first waited in the queue
    arrival: int = 0  # its place among pushes into the queue
    pushes: int = 0  # how often it was queued
    backoff: tuple[float, float] = (0.0, 0.0)  # its retry is due within this
    attempts: list[tuple[str, TaskStatus, str | None]] = attrs.Factory(list)
    events: list[TaskEventKind] = attrs.Factory(list)
    resolutions: int = 0  # calls of on_done

    def __repr__(self) -> str:
        return self.name

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(repr(self))

    @property
    def handle(self) -> TaskHandle[Any]:
        return self.entry.handle

    @property
    def id(self) -> uuid.UUID:
        return self.handle.id

    @property
    def task(self) -> Task:
        return self.handle.task

    @property
    def rank(self) -> float:
        assert self.queued_at is not None
        return self.queued_at - self.task.metadata.priority * AGING

    def order(self) -> tuple[float, int]:
        return (self.rank, self.arrival)


def checked(method: Callable[[SchedulerModel], None]) -> Callable[[SchedulerModel], None]:
    """An invariant that, while it runs, marks the run as failed (see ``teardown``)."""

    @functools.wraps(method)
    def check(self: SchedulerModel) -> None:
        self.ok = False
        method(self)
        self.ok = True

    return check


def allows(constraint: Constraint, worker: ModelWorker) -> bool:
    if isinstance(constraint, OnWorker):
        return constraint.worker_id == worker.id
    if isinstance(constraint, WithTag):
        return constraint.tag in worker.tags
    return True


class SchedulerModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.run = TrioRun()
        self.clock = self.run.clock
        self.trio = self.run.call
        self.scheduler = Scheduler(CONFIG, MemoryStore())
        self.log = EventLog(self.scheduler.listeners)
        self.scheduler.listeners.append(self.log)
        self.tasks: dict[uuid.UUID, ModelTask] = {}
        self.workers: list[ModelWorker] = []  # every record, in the order they joined
        self.worker_names = itertools.count()
        self.arrivals = itertools.count()
        self.completed = self.failed = self.retried = self.stale_results = 0
        self.dead: set[str] = set()  # ids of workers that died (not removed)
        self.ok = True  # no step has failed: the end-of-run checks may run
        self.requeued_retries_served = 0  # fills that met a retry queued once before
        self.avoidances = 0  # retries placed where avoiding a worker changed the choice

    # ------------------------------------------------------------- views

    def now(self) -> float:
        return self.clock.current_time()  # trio.current_time() in the run

    def connected(self) -> list[ModelWorker]:
        return [w for w in self.workers if w.connected]

    def current(self, worker_id: str) -> ModelWorker | None:
        return next((w for w in self.connected() if w.id == worker_id), None)

    def open_tasks(self) -> list[ModelTask]:
        return [t for t in self.tasks.values() if t.where != "done"]

    def queued(self) -> list[ModelTask]:
        return [t for t in self.tasks.values() if t.where == "queued"]

    def can_take(self, worker: ModelWorker, task: ModelTask) -> bool:
        return (
            worker.free()
            and task.task.task_type in worker.types
            and allows(task.constraint, worker)
            and task.id not in worker.slots  # (a try given up on, not yet let go)
        )

    def name_of(self, task_id: uuid.UUID) -> str:
        task = self.tasks.get(task_id)
        return task.name if task else str(task_id)

    # ------------------------------------------------- consuming events

    def expect(self, kind: TaskEventKind, task: ModelTask) -> TaskEvent:
        """The next task event must be *kind* for *task*."""
        events = self.log.events
        assert events, f"expected {kind.value} of {task}; nothing happened"
        event = events[0]
        assert (event.kind, event.task_id) == (kind, task.id), (
            f"expected {kind.value} of {task}, "
            f"got {event.kind.value} of {self.name_of(event.task_id)}"
        )
        events.popleft()
        previous = task.events[-1] if task.events else None
        assert kind in LEGAL_TASK_TRANSITIONS[previous], (task, previous, kind)
        task.events.append(kind)
        assert event.time == self.now()
        assert event.task_type == task.task.task_type
        assert event.retry_count == len(task.attempts), (task, event)
        return event

    def end_of_step(self) -> None:
        """Nothing happened that the model did not expect, and each worker was sent
        exactly the frames it expects."""
        assert not self.log.events, "unexpected events: " + ", ".join(
            f"{e.kind.value} of {self.name_of(e.task_id)}" for e in self.log.events
        )
        for worker in self.workers:
            sent = [self.read(frame) for frame in worker.record.outbox.take_nowait()]
            assert sent == worker.frames, f"frames sent to {worker}"
            worker.frames.clear()

    def read(self, frame: str) -> tuple[Any, ...]:
        message = decode(frame)
        if isinstance(message, TaskDispatch):
            sent = message.task
            task = self.tasks[sent.id]
            original = task.task
            assert (sent.task_type, sent.payload) == (original.task_type, original.payload)
            metadata, asked = sent.metadata, original.metadata
            assert (metadata.priority, metadata.max_retries) == (
                asked.priority,
                asked.max_retries,
            )
            return ("TaskDispatch", task, metadata.retry_count, metadata.timeout_ms)
        if isinstance(message, Kill):
            return ("Kill", self.tasks[message.task_id], message.reason)
        if isinstance(message, HeartbeatAck):
            return ("HeartbeatAck",)
        return (type(message).__name__,)

    # ----------------------------------------- the model of each decision

    def place(self, task: ModelTask, *, admitted_now: bool) -> None:
        """Scheduler._place: to the least-loaded worker that may take it, preferring
        one it has not failed on; else into the queue."""
        options = [w for w in self.connected() if self.can_take(w, task)]
        if admitted_now or not options:
            self.expect(PENDING, task)
        if not options:
            task.where, task.status = "queued", TaskStatus.PENDING
            if task.queued_at is None:
                task.queued_at = self.now()
            task.arrival = next(self.arrivals)
            task.pushes += 1
            return
        event = self.expect(DISPATCHED, task)
        chosen = self.current(event.worker_id or "")
        assert chosen in options, f"{task} sent to {event.worker_id}, not in {options}"
        failed_on = {worker_id for worker_id, _, _ in task.attempts}
        if chosen.id in failed_on:
            others = [w for w in options if w.id not in failed_on]
            assert not others, (
                f"the retry of {task} went back to {chosen}, which failed it, "
                f"while {others} had a free slot"
            )

        def load(w: ModelWorker) -> tuple[bool, float, int]:
            return (w.id in failed_on, w.load / w.capacity, -w.capacity)

        best = min(map(load, options))
        if min(options, key=lambda w: load(w)[1:]).id in failed_on and not best[0]:
            self.avoidances += 1  # a less loaded worker failed it; another is free
        assert load(chosen) == best, (
            f"{task} went to {chosen} {load(chosen)}, not to the least loaded {best}: "
            + ", ".join(f"{w} {load(w)}" for w in options)
        )
        self.dispatch(task, chosen)

    def dispatch(self, task: ModelTask, worker: ModelWorker) -> None:
        metadata = task.task.metadata
        left_ms = math.ceil((task.deadline - self.now()) * 1000)
        timeout_ms = metadata.timeout_ms if left_ms >= metadata.timeout_ms else left_ms
        worker.frames.append(("TaskDispatch", task, len(task.attempts), max(timeout_ms, 1)))
        assert len(task.attempts) <= metadata.max_retries, f"{task} tried too often"
        worker.slots[task.id] = True
        task.where, task.worker, task.worker_id = "worker", worker, worker.id
        task.status, task.running = TaskStatus.DISPATCHED, False

    def fill(self, worker: ModelWorker) -> None:
        """Scheduler._fill: while it has a free slot, the worker takes the queued task
        of best rank among those it may run."""
        while worker.free():
            mine = [t for t in self.queued() if self.can_take(worker, t)]
            if not mine:
                return
            best = min(mine, key=ModelTask.order)
            if any(t.pushes > 1 for t in mine):
                self.requeued_retries_served += 1
            event = self.log.events[0] if self.log.events else None
            assert event is not None and event.kind is DISPATCHED, (
                f"{worker} has a free slot, and {best} waits for it"
            )
            taken = self.tasks[event.task_id]
            assert (taken, event.worker_id) == (best, worker.id), (
                f"queue order: {event.worker_id} took {taken} "
                f"(rank {taken.rank if taken.queued_at is not None else None}) "
                f"while {best} (rank {best.rank}, {worker} free) waited"
            )
            self.expect(DISPATCHED, best)
            self.dispatch(best, worker)

    def ended(
        self,
        task: ModelTask,
        worker_id: str,
        status: TaskStatus,
        code: str | None,
        *,
        retryable: bool,
    ) -> None:
        """Scheduler._on_task_ended: a try ended on a worker (its slot is already
        free); retried if it may be, else resolved."""
        task.worker = None
        task.attempts.append((worker_id, status, code))
        constraint = task.constraint
        may_retry = (
            status is TaskStatus.FAILED
            and retryable
            and len(task.attempts) <= task.task.metadata.max_retries
            and self.now() < task.deadline
            and not (
                isinstance(constraint, OnWorker)
                and self.current(constraint.worker_id) is None
            )
        )
        if not may_retry:
            self.resolve(task, status, code)
            return
        self.retried += 1
        self.expect(TaskEventKind.RETRYING, task)
        ceiling = min(BACKOFF_MAX, BACKOFF * 2 ** (len(task.attempts) - 1))
        now = self.now()
        task.where, task.status, task.worker_id = "backoff", TaskStatus.PENDING, None
        task.backoff = (now + ceiling / 2, now + ceiling)

    def resolve(self, task: ModelTask, status: TaskStatus, code: str | None) -> None:
        self.expect(TaskEventKind.for_status(status), task)
        if task.worker is not None and task.id in task.worker.slots:
            task.worker.slots[task.id] = False  # abandoned: held until the worker says
        task.where, task.worker, task.status, task.code = "done", None, status, code
        if status is TaskStatus.COMPLETED:
            self.completed += 1
        else:
            self.failed += 1

    def gone(self, worker: ModelWorker, *, removed: bool) -> None:
        """Scheduler.worker_gone: what the worker held is retried or resolved; tasks
        queued for it alone fail, unless a new connection has its id."""
        lost = worker.live()
        if worker.connected and not removed:
            self.dead.add(worker.id)
        worker.connected = False
        worker.slots.clear()
        code = ErrorCode.WORKER_REMOVED if removed else ErrorCode.WORKER_DISCONNECTED
        for task_id in lost:
            self.ended(
                self.tasks[task_id], worker.id, TaskStatus.FAILED, code, retryable=True
            )
        if self.current(worker.id) is None:
            pinned = [t for t in self.queued() if t.constraint == OnWorker(worker.id)]
            for _ in pinned:  # in any order
                assert self.log.events, f"{pinned} still queued for {worker}, gone"
                task = self.tasks[self.log.events[0].task_id]
                assert task in pinned, f"{task} failed with {worker}"
                self.resolve(task, TaskStatus.FAILED, code)

    # ---------------------------------------------------------------- time

    def jump_to(self, when: float) -> None:
        # From this thread: the run is idle, waiting with no deadline, and the clock is
        # read only by what the machine calls in it.
        while self.now() < when:
            self.clock.jump(max(when - self.now(), 1e-9))

    def expire_heaps(self) -> float:
        """In the run: what each heap's task does when woken now, the deadlines' first
        (the order the model expects); the next time either has something due."""
        scheduler = self.scheduler
        return min(scheduler.deadlines.expire_due(), scheduler.retries.expire_due())

    def expire(self) -> float:
        """Both heaps, as their tasks would be woken now: deadlines, then retries.
        Return the next time either has something due."""
        upcoming = self.trio(self.expire_heaps)
        now = self.now()
        due = [t for t in self.open_tasks() if t.deadline <= now]
        for task in sorted(due, key=lambda t: (t.deadline, t.admitted)):
            worker = task.worker if task.where == "worker" else None
            if worker is None:
                self.resolve(task, TaskStatus.TIMED_OUT, ErrorCode.TIMEOUT)
                continue
            worker.frames.append(("Kill", task, "timed out"))
            worker.timeouts += 1
            if worker.timeouts >= LIMIT_TIMEOUTS and not worker.draining:
                worker.draining = True
            if self.may_retry_elsewhere(task, worker):
                # That try counts; the task is retried at once, its timeout anew.
                worker.slots[task.id] = False
                task.deadline = now + task.task.metadata.timeout_ms / 1000
                task.attempts.append((worker.id, TaskStatus.TIMED_OUT, ErrorCode.TIMEOUT))
                task.worker = None
                self.retried += 1
                self.expect(TaskEventKind.RETRYING, task)
                task.where, task.status, task.worker_id = (
                    "backoff",
                    TaskStatus.PENDING,
                    None,
                )
                task.backoff = (now, now)
            else:
                self.resolve(task, TaskStatus.TIMED_OUT, ErrorCode.TIMEOUT)
        while self.log.events:
            task = self.tasks[self.log.events[0].task_id]
            assert task.where == "backoff", (
                f"{self.log.events[0].kind.value} of {task}, which was {task.where}"
            )
            assert now >= task.backoff[0] - EPS, f"{task} retried before its backoff"
            pinned = task.constraint
            if isinstance(pinned, OnWorker) and self.current(pinned.worker_id) is None:
                # Its worker left during the backoff: it fails, as if it had been queued.
                self.resolve(task, TaskStatus.FAILED, ErrorCode.WORKER_DISCONNECTED)
            else:
                self.place(task, admitted_now=False)
        return upcoming

    def may_retry_elsewhere(self, task: ModelTask, worker: ModelWorker) -> bool:
        """Scheduler._may_retry_elsewhere: retries left, not pinned, and another
        connected, undrained worker it has not been on runs its type (with its tag)."""
        if len(task.attempts) >= task.task.metadata.max_retries:
            return False
        constraint = task.constraint
        if isinstance(constraint, OnWorker):
            return False
        tag = constraint.tag if isinstance(constraint, WithTag) else None
        avoid = {worker.id, *(worker_id for worker_id, _, _ in task.attempts)}
        return any(
            other.connected
            and not other.draining
            and other.id not in avoid
            and task.task.task_type in other.types
            and (tag is None or tag in other.tags)
            for other in self.workers
        )

    def advance(self, seconds: float) -> None:
        target = self.now() + seconds
        while True:
            upcoming = self.expire()
            if self.now() >= target:
                return
            assert upcoming > self.now(), "a heap kept an item that is due"
            self.jump_to(min(upcoming, target))

    # ---------------------------------------------------------------- rules

    def join(
        self, worker_id: str, types: tuple[str, ...], tags: tuple[str, ...], capacity: int
    ) -> ModelWorker:
        registration = WorkerRegistration(
            worker_id, types, max_concurrency=capacity, language="Python", tags=tags
        )
        now = self.now()
        record = WorkerRecord(
            WorkerSession(registration),
            Outbox(),
            trio.CancelScope(),
            "memory",
            f"memory:{worker_id}",
            now,
            now,
        )
        old = self.current(worker_id)
        replaced = self.trio(self.scheduler.worker_joined, record)
        assert replaced is (old.record if old else None)
        if old is not None:
            old.connected = False  # replaced: the pool no longer has it
        worker = ModelWorker(record, types, tags, capacity)
        self.workers.append(worker)
        self.dead.discard(worker_id)
        self.fill(worker)
        return worker

    def step(self) -> None:
        self.end_of_step()
        self.ok = True

    @initialize(
        workers=st.lists(
            st.tuples(WORKER_TYPES, st.sampled_from([(), ("gpu",)]), CAPACITY),
            min_size=1,
            max_size=3,
        )
    )
    def workers_join_first(
        self, workers: list[tuple[tuple[str, ...], tuple[str, ...], int]]
    ) -> None:
        self.ok = False
        for types, tags, capacity in workers:
            self.join(f"w{next(self.worker_names)}", types, tags, capacity)
        self.step()

    @precondition(lambda self: len(self.connected()) < MAX_WORKERS)
    @rule(
        types=WORKER_TYPES,
        tags=st.lists(st.sampled_from(TAGS), unique=True),
        capacity=CAPACITY,
    )
    def worker_joins(self, types: tuple[str, ...], tags: list[str], capacity: int) -> None:
        self.ok = False
        self.join(f"w{next(self.worker_names)}", types, tuple(tags), capacity)
        self.step()

    @precondition(lambda self: self.connected())
    @rule(
        data=st.data(),
        types=WORKER_TYPES,
        capacity=CAPACITY,
    )
    def worker_reconnects(
        self, data: st.DataObject, types: tuple[str, ...], capacity: int
    ) -> None:
        """A new connection with the id of a connected worker replaces it; the old
        session then ends (as serve_worker evicts it)."""
        self.ok = False
        old = data.draw(st.sampled_from(self.connected()), label="worker")
        self.join(old.id, types, old.tags, capacity)
        self.trio(self.scheduler.worker_gone, old.record, "replaced by a new connection")
        self.gone(old, removed=False)
        self.step()

    @rule(
        data=st.data(),
        task_type=st.sampled_from(TYPES),
        priority=st.sampled_from(Priority),
        timeout_ms=st.sampled_from(TIMEOUTS_MS),
        max_retries=st.integers(0, 3),
        placement=st.sampled_from(["any", "any", "any", "pinned", "tagged"]),
    )
    def submit(
        self,
        data: st.DataObject,
        task_type: str,
        priority: Priority,
        timeout_ms: int,
        max_retries: int,
        placement: str,
    ) -> None:
        self.ok = False
        constraint: Constraint = None
        if placement == "pinned" and self.connected():  # as dispatch_to: connected
            pinned = data.draw(st.sampled_from(self.connected()), label="pinned to")
            constraint = OnWorker(pinned.id)
        elif placement == "tagged":
            constraint = WithTag(data.draw(st.sampled_from(TAGS), label="tag"))
        number = len(self.tasks)
        task = Task.new(
            task_type,
            number,
            timeout_ms=timeout_ms,
            priority=priority,
            max_retries=max_retries,
        )
        entry = self.trio(
            functools.partial(
                self.scheduler.new_entry,
                task,
                {},
                constraint=constraint,
                on_done=self.on_done,
            )
        )
        model = ModelTask(
            f"t{number}",
            entry,
            constraint,
            deadline=self.now() + timeout_ms / 1000,
            admitted=number,
        )
        self.tasks[task.id] = model
        assert self.trio(self.scheduler.has_room, entry)
        self.trio(self.scheduler.admit, entry)
        self.place(model, admitted_now=True)
        self.step()

    def on_done(self, handle: TaskHandle[Any]) -> None:
        self.tasks[handle.id].resolutions += 1

    def held(self) -> list[tuple[ModelWorker, ModelTask]]:
        return [(w, self.tasks[t]) for w in self.connected() for t in w.slots]

    def answer(
        self, data: st.DataObject, status: TaskStatus, *, retryable: bool = False
    ) -> None:
        """A worker reports on a task it holds (perhaps one the dispatcher gave up on:
        a stale result, counted, which only frees the slot -- or, for a progress
        report, is answered with another Kill)."""
        self.ok = False
        worker, task = data.draw(st.sampled_from(self.held()), label="worker, task")
        error = None
        if status is TaskStatus.FAILED:
            error = TaskError(ErrorCode.HANDLER_ERROR, "boom", retryable=retryable)
        result = TaskResult(task.id, status, "ok", error=error, worker_id=worker.id)
        self.trio(self.scheduler.on_message, worker.record, TaskResultMessage(result))
        waited_for = worker.slots[task.id]
        if not waited_for:
            self.stale_results += 1
        if status is TaskStatus.RUNNING:
            if not waited_for:
                worker.frames.append(("Kill", task, "superseded"))
            elif not task.running:
                task.running, task.status = True, TaskStatus.RUNNING
                self.expect(TaskEventKind.RUNNING, task)
        else:
            del worker.slots[task.id]
            if waited_for:
                worker.timeouts = 0
                code = error.code if error else None
                self.ended(task, worker.id, status, code, retryable=retryable)
        self.fill(worker)
        self.step()

    @precondition(lambda self: self.held())
    @rule(data=st.data())
    def worker_completes(self, data: st.DataObject) -> None:
        self.answer(data, TaskStatus.COMPLETED)

    @precondition(lambda self: self.held())
    @rule(data=st.data())
    def worker_fails_retryably(self, data: st.DataObject) -> None:
        self.answer(data, TaskStatus.FAILED, retryable=True)

    @precondition(lambda self: self.held())
    @rule(data=st.data())
    def worker_fails_for_good(self, data: st.DataObject) -> None:
        self.answer(data, TaskStatus.FAILED, retryable=False)

    @precondition(lambda self: self.held())
    @rule(data=st.data())
    def worker_reports_running(self, data: st.DataObject) -> None:
        self.answer(data, TaskStatus.RUNNING)

    @precondition(lambda self: self.connected())
    @rule(data=st.data())
    def worker_heartbeats(self, data: st.DataObject) -> None:
        """With the number of tasks it says it runs: fewer than it holds frees the
        slots of tasks the dispatcher gave up on."""
        self.ok = False
        worker = data.draw(st.sampled_from(self.connected()), label="worker")
        active = data.draw(st.integers(0, worker.load), label="active tasks")
        payload = HeartbeatPayload(worker.id, active, worker.capacity)
        self.trio(self.scheduler.on_message, worker.record, Heartbeat(payload))
        excess = worker.load - active
        abandoned = [t for t, waited_for in worker.slots.items() if not waited_for]
        for task_id in abandoned[: max(excess, 0)]:
            del worker.slots[task_id]
        if active < worker.capacity:
            worker.throttled = False
        worker.frames.append(("HeartbeatAck",))
        self.fill(worker)
        self.step()

    @precondition(lambda self: self.connected())
    @rule(data=st.data(), throttle=st.booleans())
    def worker_signals_backpressure(self, data: st.DataObject, throttle: bool) -> None:
        self.ok = False
        worker = data.draw(st.sampled_from(self.connected()), label="worker")
        signal = BackpressureSignal(worker.id, 0.5, should_throttle=throttle)
        self.trio(self.scheduler.on_message, worker.record, Backpressure(signal))
        worker.throttled = throttle
        self.fill(worker)
        self.step()

    @precondition(lambda self: self.connected())
    @rule(data=st.data())
    def worker_drains(self, data: st.DataObject) -> None:
        self.ok = False
        worker = data.draw(st.sampled_from(self.connected()), label="worker")
        self.trio(self.scheduler.drain, worker.record)
        worker.draining = True
        self.step()

    @precondition(lambda self: self.connected())
    @rule(data=st.data(), removed=st.booleans())
    def worker_dies(self, data: st.DataObject, removed: bool) -> None:
        """Its session ends (connection lost), or it is removed (remove_worker)."""
        self.ok = False
        worker = data.draw(st.sampled_from(self.connected()), label="worker")
        worker.record.removed = removed
        self.trio(self.scheduler.worker_gone, worker.record, "connection closed")
        self.gone(worker, removed=removed)
        self.step()

    @precondition(lambda self: self.open_tasks())
    @rule(data=st.data(), again=st.booleans())
    def caller_cancels(self, data: st.DataObject, again: bool) -> None:
        """Wherever the task is (cancelling it again is a no-op)."""
        self.ok = False
        task = data.draw(st.sampled_from(self.open_tasks()), label="task")
        for _ in range(2 if again else 1):
            self.trio(task.handle.cancel_nowait, "cancelled by the test")
        if task.where == "worker":
            assert task.worker is not None
            task.worker.frames.append(("Kill", task, "cancelled by the test"))
        self.resolve(task, TaskStatus.CANCELLED, ErrorCode.CANCELLED)
        self.step()

    @rule(seconds=st.sampled_from([0.1, 0.3, 0.7, 1.5, 3.0, 12.0]))
    def time_passes(self, seconds: float) -> None:
        self.ok = False
        self.advance(seconds)
        self.step()

    # ----------------------------------------------------------- invariants

    @invariant()
    @checked
    def every_handle_resolves_once_as_the_model_says(self) -> None:
        for task in self.tasks.values():
            handle = task.handle
            assert (handle.status, handle.worker_id) == (task.status, task.worker_id), task
            attempts = [
                (a.worker_id, a.status, a.error.code if a.error else None)
                for a in handle.attempts
            ]
            assert attempts == task.attempts, task
            terminal = [kind for kind in task.events if kind in TERMINAL_EVENTS]
            if task.where != "done":
                assert not handle.done and not terminal and task.resolutions == 0, task
                continue
            assert handle.done and task.resolutions == 1, task
            result = handle.result_nowait()
            assert result.status in TERMINAL and result.status is task.status, task
            assert (result.error.code if result.error else None) == task.code, task
            assert result.worker_id == (handle.worker_id or ""), task
            assert terminal == [task.events[-1]] == [TaskEventKind.for_status(task.status)]

    @invariant()
    @checked
    def a_queued_task_keeps_the_rank_it_first_got(self) -> None:
        # What the order of dispatch shows only when a queued retry meets a rival: the
        # scheduler's own record of where each task is, and of its rank.
        for task in self.tasks.values():
            entry = task.entry
            assert entry.queued == (task.where == "queued"), task
            assert entry.worker is (task.worker.record if task.worker else None), task
            if task.where == "queued":
                assert entry.queued_at == task.queued_at, (
                    f"{task} waits ranked as queued at {entry.queued_at}, not at "
                    f"{task.queued_at}, when it first waited"
                )

    @invariant()
    @checked
    def retries_never_exceed_max_retries(self) -> None:
        for task in self.tasks.values():
            tries = task.task.metadata.max_retries + 1
            assert task.events.count(DISPATCHED) <= tries, task
            assert len(task.attempts) <= tries, task

    @invariant()
    @checked
    def no_worker_holds_more_than_its_capacity(self) -> None:
        for worker in self.connected():
            record, session = worker.record, worker.record.session
            assert session.load == worker.load <= worker.capacity, worker
            assert session.in_flight() == worker.live(), worker
            assert record.can_accept() == worker.free(), worker
            assert session.throttled == worker.throttled, worker
            state = WorkerState.DRAINING if worker.draining else WorkerState.ACTIVE
            assert record.state is state, worker

    @invariant()
    @checked
    def no_task_is_on_two_workers(self) -> None:
        holders = collections.Counter(
            task_id for w in self.connected() for task_id in w.record.session.in_flight()
        )
        assert all(count == 1 for count in holders.values()), holders
        for task in self.tasks.values():
            if task.where == "worker":
                assert task.worker is not None and task.worker.connected, task
                assert holders[task.id] == 1, task
                assert task.id in task.worker.record.session.in_flight(), task

    @invariant()
    @checked
    def no_slot_stays_idle_while_a_task_it_may_run_waits(self) -> None:
        for task in self.queued():
            idle = [w for w in self.connected() if self.can_take(w, task)]
            assert not idle, f"{task} waits in the queue while {idle} could take it"

    @invariant()
    @checked
    def no_retry_is_overdue(self) -> None:
        now = self.now()
        for task in self.tasks.values():
            if task.where == "backoff":
                assert now <= task.backoff[1] + EPS, f"the retry of {task} is overdue"

    @invariant()
    @checked
    def pool_stats_agree_with_the_model(self) -> None:
        connected = self.connected()
        active = [w for w in connected if not w.draining]
        queued = self.queued()
        by_priority = dict.fromkeys(Priority, 0)
        for task in queued:
            by_priority[task.task.metadata.priority] += 1
        assert self.scheduler.stats() == PoolStats(
            total=len(connected),
            active=len(active),
            busy=sum(w.throttled or w.load >= w.capacity for w in active),
            draining=len(connected) - len(active),
            dead=len(self.dead),
            total_capacity=sum(w.capacity for w in connected),
            used_capacity=sum(w.load for w in connected),
            queued=len(queued),
            queued_by_priority=by_priority,
            in_flight=sum(len(w.live()) for w in connected),
            completed=self.completed,
            failed=self.failed,
            retried=self.retried,
            stale_results=self.stale_results,
        )
        assert len(self.scheduler.queue) == len(queued)

    # ------------------------------------------------------------ the end

    def check_every_invariant(self) -> None:
        self.every_handle_resolves_once_as_the_model_says()
        self.a_queued_task_keeps_the_rank_it_first_got()
        self.retries_never_exceed_max_retries()
        self.no_worker_holds_more_than_its_capacity()
        self.no_task_is_on_two_workers()
        self.no_slot_stays_idle_while_a_task_it_may_run_waits()
        self.no_retry_is_overdue()
        self.pool_stats_agree_with_the_model()

    def answer_everything(self) -> None:
        for worker, task in self.held():
            result = TaskResult(task.id, TaskStatus.COMPLETED, "ok", worker_id=worker.id)
            self.trio(self.scheduler.on_message, worker.record, TaskResultMessage(result))
            waited_for = worker.slots.pop(task.id)
            if waited_for:
                worker.timeouts = 0
                self.ended(task, worker.id, TaskStatus.COMPLETED, None, retryable=False)
            else:
                self.stale_results += 1
            self.fill(worker)
        self.end_of_step()

    def may_never_run(self, task: ModelTask) -> bool:
        """Pinned to a worker that takes no task (draining, throttled) or does not run
        its type: it waits for its timeout."""
        pinned = task.constraint
        if not isinstance(pinned, OnWorker):
            return False
        worker = self.current(pinned.worker_id)
        assert worker is not None, f"{task} waits for {pinned.worker_id}, which is gone"
        return (
            worker.draining or worker.throttled or task.task.task_type not in worker.types
        )

    def teardown(self) -> None:
        try:
            if self.ok:  # else a step failed: that is the failure to report
                # Steer the search towards runs where keeping a rank matters (workers
                # meet retries that had waited before) and where avoiding a worker does.
                hypothesis.target(self.requeued_retries_served, label="re-queued retries")
                hypothesis.target(self.avoidances, label="retries avoiding a worker")
                self.everything_resolves()
        finally:
            self.run.close()

    def everything_resolves(self) -> None:
        """With a worker free for every type and tag, and every task sent answered,
        everything resolves: what was lost with a worker is retried and runs, and
        what cannot run (pinned to a worker that is draining or throttled, or of a type
        its worker does not run) times out."""
        self.ok = False
        self.join(f"w{next(self.worker_names)}", TYPES, TAGS, 64)
        self.end_of_step()
        for _ in range(10):
            self.answer_everything()
            if not any(t.where in ("worker", "backoff") for t in self.tasks.values()):
                break
            self.advance(BACKOFF_MAX)
            self.end_of_step()
        self.check_every_invariant()
        left = [t for t in self.open_tasks() if not self.may_never_run(t)]
        assert not left, f"{left} never ran, with a worker free for them"
        last = max((t.deadline for t in self.tasks.values()), default=self.now())
        self.advance(max(last - self.now(), 0) + 1)
        self.end_of_step()
        self.check_every_invariant()
        assert not self.open_tasks(), f"{self.open_tasks()} never resolved"
        stats = self.scheduler.stats()
        assert (stats.queued, stats.in_flight) == (0, 0)
        self.ok = True


def test_the_scheduler_keeps_the_rules_of_its_model() -> None:
    run_state_machine_as_test(SchedulerModel, settings=SETTINGS)
