"""Deadlines (trio_pipe/_deadlines.py): one task expiring many items at their
deadlines, under autojump_clock. Each test runs the clock past its last deadline and
then compares what expired, and when, with what should have: a runner that wakes late,
never, or for the wrong item fails the comparison instead of hanging the test."""

from __future__ import annotations

import gc
import math
import weakref
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import attrs
import trio
import trio.testing

from trio_pipe._deadlines import Deadlines


@attrs.define(eq=False)
class Item:
    name: str
    done: bool = False


@attrs.define
class Runner:
    """A Deadlines whose expiries are recorded as (name, time), with its run() task in
    *nursery* once started."""

    deadlines: Deadlines[Item]
    expired: list[tuple[str, float]]
    nursery: trio.Nursery
    start: float

    def watch(self, item: Item, after: float) -> None:
        self.deadlines.watch(item, self.start + after)

    async def run(self) -> None:
        """Start run() and wait until it sleeps, on whatever the heap holds now."""
        self.nursery.start_soon(self.deadlines.run)
        await trio.testing.wait_all_tasks_blocked()

    def at(self, *names_and_offsets: tuple[str, float]) -> list[tuple[str, float]]:
        return [(name, self.start + offset) for name, offset in names_and_offsets]


@asynccontextmanager
async def deadlines(live: Callable[[], int] = lambda: 0) -> AsyncIterator[Runner]:
    expired: list[tuple[str, float]] = []
    recorded = Deadlines[Item](
        lambda item: expired.append((item.name, trio.current_time())), live=live
    )
    async with trio.open_nursery() as nursery:
        yield Runner(recorded, expired, nursery, trio.current_time())
        nursery.cancel_scope.cancel()


async def test_an_earlier_deadline_added_later_wakes_the_runner_at_it(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with deadlines() as runner:
        runner.watch(Item("late"), 50)
        await runner.run()  # asleep until the late deadline
        runner.watch(Item("early"), 10)  # must move that sleep's deadline
        await trio.sleep_until(runner.start + 60)
        assert runner.expired == runner.at(("early", 10), ("late", 50))


async def test_a_deadline_added_while_the_heap_is_empty_wakes_the_runner(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with deadlines() as runner:
        await runner.run()  # asleep with no deadline at all
        runner.watch(Item("only"), 5)
        runner.watch(Item("never"), math.inf)  # not watched at all
        await trio.sleep_until(runner.start + 60)
        assert runner.expired == runner.at(("only", 5))


async def test_items_that_are_done_are_never_expired(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with deadlines() as runner:
        before_start = Item("done before the runner starts")
        at_top = Item("done while its deadline is the one slept on")
        behind = Item("done while other deadlines come first")
        runner.watch(before_start, 1)
        runner.watch(Item("a"), 2)
        runner.watch(at_top, 5)
        runner.watch(behind, 8)
        runner.watch(Item("b"), 8)
        runner.watch(Item("c"), 12)
        before_start.done = True
        await runner.run()
        await trio.sleep_until(runner.start + 3)  # "a" has expired: asleep until 5
        at_top.done = True
        behind.done = True
        await trio.sleep_until(runner.start + 60)
        assert runner.expired == runner.at(("a", 2), ("b", 8), ("c", 12))


async def test_compaction_keeps_every_live_entry_and_their_times(
    autojump_clock: trio.testing.MockClock,
) -> None:
    items: list[Item] = []
    async with deadlines(live=lambda: sum(not item.done for item in items)) as runner:
        # 40 live items among 200 (item n due at n/4 s): 200 entries > 2 * 40 + 64, so
        # the next watch drops the 160 finished ones. Watched out of order, so that
        # what is left of the heap's list is no heap until it is made one again.
        items += [Item(f"item {n}") for n in range(1, 201)]
        for k in range(200):
            n = k * 37 % 200 + 1
            runner.watch(items[n - 1], n / 4)
        finished = [item for n, item in enumerate(items, start=1) if n % 5]
        for item in finished:
            item.done = True
        gone = [weakref.ref(item) for item in finished]
        items[:] = [item for item in items if not item.done]
        del finished, item
        runner.watch(Item("after compaction"), 25.1)
        gc.collect()
        assert [ref() for ref in gone] == [None] * 160  # no longer held by the heap
        await runner.run()
        await trio.sleep_until(runner.start + 60)
        expected = [(f"item {n}", n / 4) for n in range(5, 201, 5)]
        expected.append(("after compaction", 25.1))
        assert runner.expired == runner.at(*sorted(expected, key=lambda pair: pair[1]))


async def test_expiry_is_by_deadline_then_by_insertion(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with deadlines() as runner:
        for name, after in [("a", 5), ("b", 3), ("c", 5), ("d", 1), ("e", 3), ("f", 5)]:
            runner.watch(Item(name), after)
        await runner.run()
        # Added while asleep, with the deadlines already in the heap: still after them.
        runner.watch(Item("g"), 3)
        runner.watch(Item("h"), 1)
        await trio.sleep_until(runner.start + 60)
        assert runner.expired == runner.at(
            ("d", 1), ("h", 1), ("b", 3), ("e", 3), ("g", 3), ("a", 5), ("c", 5), ("f", 5)
        )
