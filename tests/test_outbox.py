"""The outbox between a connection's producers and its one writer task: frames
queued before the writer runs go out in one batch, and closing drains it."""

from __future__ import annotations

import trio
import trio.testing

from trio_pipe.transports import Outbox


async def test_frames_queued_while_the_writer_waits_come_out_in_one_batch() -> None:
    outbox = Outbox()
    batches: list[list[str]] = []

    async def writer() -> None:
        while frames := await outbox.take():
            batches.append(frames)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(writer)
        await trio.testing.wait_all_tasks_blocked()
        for frame in ("a", "b", "c"):
            outbox.put(frame)
        await trio.testing.wait_all_tasks_blocked()
        outbox.put("d")
        outbox.close()
        outbox.put("dropped")
    assert batches == [["a", "b", "c"], ["d"]]


async def test_wake_returns_an_empty_batch_and_close_ends_the_takes(
    autojump_clock: trio.testing.MockClock,
) -> None:
    outbox = Outbox()
    outbox.wake()
    assert await outbox.take() == []
    with trio.move_on_after(1) as waiting:
        await outbox.take()
    assert waiting.cancelled_caught  # nothing queued: it waits
    outbox.close()
    assert await outbox.take() == []
    assert await outbox.take() == []
