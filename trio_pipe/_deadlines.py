"""Many deadlines, one task: what the dispatcher (task timeouts) and the Python worker
(handler timeouts) both need, with no task and no cancel scope deadline per item."""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Callable
from typing import Generic, NoReturn, Protocol, TypeVar

import trio

__all__ = ["Deadlines"]


class _Finishable(Protocol):
    @property
    def done(self) -> bool: ...


T = TypeVar("T", bound=_Finishable)


class Deadlines(Generic[T]):
    """Items with a deadline, in a heap; :meth:`run` sleeps in a cancel scope whose
    deadline is the earliest one, and calls *expire* with each item whose deadline has
    passed and that is not ``done`` yet.

    A finished item's entry is dropped when it surfaces; so that entries (and what
    they hold) do not pile up for a whole timeout under a steady load, they are all
    dropped now and then, when the heap holds more than twice *live()* of them.
    """

    def __init__(self, expire: Callable[[T], None], live: Callable[[], int]) -> None:
        self._expire = expire
        self._live = live
        self._heap: list[tuple[float, int, T]] = []
        self._order = itertools.count()
        self._sleep = trio.CancelScope()

    def watch(self, item: T, deadline: float) -> None:
        if deadline == math.inf:
            return
        heap = self._heap
        if len(heap) > 2 * self._live() + 64:
            heap[:] = [entry for entry in heap if not entry[2].done]
            heapq.heapify(heap)
        heapq.heappush(heap, (deadline, next(self._order), item))
        if deadline < self._sleep.deadline:
            self._sleep.deadline = deadline

    def expire_due(self) -> float:
        """Expire every item whose deadline has passed and that is not ``done``, in
        order of deadline (then of :meth:`watch`); return the earliest deadline left
        (``inf`` if none). :meth:`run` does this at each wake-up; a test that moves a
        ``MockClock`` by hand may call it instead of running :meth:`run`."""
        heap = self._heap
        now = trio.current_time()
        while heap and (heap[0][0] <= now or heap[0][2].done):
            item = heapq.heappop(heap)[2]
            if not item.done:
                self._expire(item)
        return heap[0][0] if heap else math.inf

    async def run(self) -> NoReturn:
        while True:
            with trio.CancelScope() as self._sleep:
                self._sleep.deadline = self.expire_due()
                await trio.sleep_forever()
