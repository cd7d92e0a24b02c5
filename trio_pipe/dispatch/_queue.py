"""The wait queue: priority order, FIFO within a priority, aging against starvation.

A queued task's rank is ``queued_at - priority * aging_interval`` (smaller runs first),
fixed when it first enters the queue. So a task waits behind a task of higher priority
only if that one arrived less than ``aging_interval`` seconds per priority level later:
``Low`` cannot starve under a steady stream of ``High``, and within one priority order
is first in, first out. A retried task keeps its original rank.

Tasks are kept in one heap per (task type, constraint), where the constraint pins a
task to one worker or to workers with a tag, so a worker that frees a slot looks only
at the heads of the heaps it can serve -- or, when the queue holds fewer heaps than
that, at every heap: a worker that declared many task types costs no more than one
that declared few. Entries that left the queue (resolved while waiting) are dropped
lazily.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable, Iterator, Set

from ..protocol import Priority
from ._entry import Constraint, OnWorker, TaskEntry, WithTag

__all__ = ["TaskQueue"]

_Item = tuple[float, int, TaskEntry]


class TaskQueue:
    def __init__(self, *, max_queued: int, aging_interval: float) -> None:
        self.max_queued = max_queued
        self.aging_interval = aging_interval
        self._heaps: dict[tuple[str, Constraint], list[_Item]] = {}
        self._seq = itertools.count()
        self._depth = dict.fromkeys(Priority, 0)

    def __len__(self) -> int:
        return sum(self._depth.values())

    @property
    def full(self) -> bool:
        return len(self) >= self.max_queued

    def depth_by_priority(self) -> dict[Priority, int]:
        return dict(self._depth)

    def push(self, entry: TaskEntry, now: float) -> None:
        if entry.queued_at is None:
            entry.queued_at = now
        task = entry.handle.task
        priority = task.metadata.priority
        rank = entry.queued_at - priority * self.aging_interval
        key = (task.task_type, entry.constraint)
        heapq.heappush(self._heaps.setdefault(key, []), (rank, next(self._seq), entry))
        entry.queued = True
        self._depth[priority] += 1

    def discard(self, entry: TaskEntry) -> None:
        """Forget a queued task (resolved while waiting); its heap item goes lazily."""
        if entry.queued:
            entry.queued = False
            self._depth[entry.handle.task.metadata.priority] -= 1

    def pop_for(
        self,
        task_types: Set[str],
        worker_id: str,
        tags: tuple[str, ...],
        accepts: Callable[[str], bool],
    ) -> TaskEntry | None:
        """Take the best-ranked task a worker with these properties may run: of one of
        *task_types* that it *accepts* now, unconstrained, pinned to it, or for one of
        its *tags*."""
        if not self._heaps:
            return None
        constraints: list[Constraint] = [None, OnWorker(worker_id)]
        constraints += [WithTag(tag) for tag in tags]
        if len(self._heaps) <= len(task_types) * len(constraints):
            allowed = set(constraints)
            keys = [
                key for key in self._heaps if key[0] in task_types and key[1] in allowed
            ]
        else:
            keys = [(t, c) for t in task_types for c in constraints]
        best: list[_Item] | None = None
        for key in keys:
            heap = self._heaps.get(key)
            if heap is None or not accepts(key[0]):
                continue
            while heap and not heap[0][2].queued:
                heapq.heappop(heap)
            if not heap:
                del self._heaps[key]
            elif best is None or heap[0] < best[0]:
                best = heap
        if best is None:
            return None
        entry = heapq.heappop(best)[2]
        self.discard(entry)
        return entry

    def take_where(self, constraint: Constraint) -> list[TaskEntry]:
        """Remove and return every task queued under *constraint*."""
        taken = []
        for key in [k for k in self._heaps if k[1] == constraint]:
            for _, _, entry in self._heaps.pop(key):
                if entry.queued:
                    self.discard(entry)
                    taken.append(entry)
        return taken

    def take_all(self) -> list[TaskEntry]:
        taken = [entry for _, _, entry in self._iter_items() if entry.queued]
        for entry in taken:
            self.discard(entry)
        self._heaps.clear()
        return taken

    def _iter_items(self) -> Iterator[_Item]:
        for heap in self._heaps.values():
            yield from heap
