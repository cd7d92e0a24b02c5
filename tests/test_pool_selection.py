"""Least-loaded selection from the pool's heaps agrees with a scan of every worker,
whatever happens to the workers in between (limits per task type included), and costs
the same at 1,000 workers as at one."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from trio_pipe.dispatch._pool import Pool, WorkerRecord, WorkerState
from trio_pipe.protocol import (
    Backpressure,
    BackpressureSignal,
    Task,
    TaskDispatch,
    TaskResult,
    TaskResultMessage,
    TaskStatus,
    WorkerRegistration,
    WorkerSession,
)
from trio_pipe.transports import Outbox

TYPES = ("t", "u")


def record(
    name: str, capacity: int, tasks: tuple[str, ...] = TYPES, t_limit: int | None = None
) -> WorkerRecord:
    limits = {} if t_limit is None else {"t": min(t_limit, capacity)}
    registration = WorkerRegistration(name, tasks, capacity, max_concurrency_by_type=limits)
    session = WorkerSession(registration)
    return WorkerRecord(session, Outbox(), trio.CancelScope(), "memory", name, 0.0, 0.0)


def key(chosen: WorkerRecord | None) -> tuple[float, int] | None:
    if chosen is None:
        return None
    return chosen.session.load / chosen.session.capacity, -chosen.session.capacity


class Workers:
    """A pool and the tasks on each worker, changed as the dispatcher changes them."""

    def __init__(self, capacities: list[int], t_limits: Sequence[int | None] = ()) -> None:
        self.pool = Pool(max_size=None)
        limits = [*t_limits, *[None] * len(capacities)]
        self.records = [
            record(f"w{i}", c, t_limit=limit)
            for i, (c, limit) in enumerate(zip(capacities, limits, strict=False))
        ]
        self.running: dict[str, list[uuid.UUID]] = {r.worker_id: [] for r in self.records}
        for each in self.records:
            self.pool.add(each)

    def dispatch(self, task_type: str = "t") -> None:
        chosen = self.pool.select(task_type)
        if chosen is not None:
            task = Task.new(task_type)
            chosen.session.send(TaskDispatch(task))
            self.running[chosen.worker_id].append(task.id)
            self.pool.changed(chosen)

    def finish(self, index: int) -> None:
        chosen = self.records[index % len(self.records)]
        if self.running[chosen.worker_id]:
            task_id = self.running[chosen.worker_id].pop(0)
            result = TaskResult(task_id, TaskStatus.COMPLETED, worker_id=chosen.worker_id)
            chosen.session.receive(TaskResultMessage(result))
            self.pool.changed(chosen)

    def throttle(self, index: int, on: bool) -> None:
        chosen = self.records[index % len(self.records)]
        chosen.session.receive(Backpressure(BackpressureSignal(chosen.worker_id, 1.0, on)))
        self.pool.changed(chosen)

    def drain(self, index: int) -> None:
        chosen = self.records[index % len(self.records)]
        chosen.state = WorkerState.DRAINING
        self.pool.changed(chosen)

    def remove(self, index: int) -> None:
        chosen = self.records[index % len(self.records)]
        self.pool.remove(chosen, dead=True)


actions = st.lists(
    st.one_of(
        st.tuples(st.just("dispatch"), st.sampled_from(TYPES)),
        st.tuples(st.just("finish"), st.integers(0, 20)),
        st.tuples(st.just("throttle"), st.integers(0, 20), st.booleans()),
        st.tuples(st.just("drain"), st.integers(0, 20)),
        st.tuples(st.just("remove"), st.integers(0, 20)),
    ),
    max_size=120,
)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.integers(1, 5), min_size=1, max_size=8),
    st.lists(st.none() | st.integers(1, 3), max_size=8),
    actions,
)
def test_the_heaps_pick_what_a_scan_of_every_worker_picks(
    capacities: list[int], t_limits: list[int | None], steps: list[tuple[object, ...]]
) -> None:
    workers = Workers(capacities, t_limits)
    for name, *args in steps:
        getattr(workers, str(name))(*args)
        for task_type in TYPES:
            chosen = workers.pool.select(task_type)
            assert key(chosen) == key(
                workers.pool._scan(task_type, None, frozenset(), None)
            )
            if chosen is not None:
                limit = chosen.session.registration.max_concurrency_by_type.get(task_type)  # type: ignore[union-attr]
                assert limit is None or chosen.session.load_of(task_type) < limit


def test_selection_looks_at_one_worker_whatever_the_size_of_the_pool(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    workers = Workers([8] * 1000)
    for _ in range(3000):
        workers.dispatch()
    looked_at = []
    can_accept = WorkerRecord.can_accept
    monkeypatch.setattr(
        WorkerRecord,
        "can_accept",
        lambda self, task_type=None: looked_at.append(self) or can_accept(self, task_type),
    )
    chosen = workers.pool.select("t")
    assert chosen is not None and chosen.session.load == 3
    # The worker the last dispatch changed (ranked now, lazily), and the top of the heap.
    assert len(looked_at) <= 2
