"""The outbox between a connection's producers and its one writer task: frames
queued before the writer runs go out in one batch, and closing drains it; and the
writer itself (``write_batches``): a bound per write, and writes that a cancellation
from outside does not cut in half."""

from __future__ import annotations

from collections.abc import Sequence

import attrs
import trio
import trio.testing

from trio_pipe.transports import Outbox, write_batches


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


class _GatedChannel:
    """A channel whose writes wait for :attr:`gate` (a worker that reads slowly)."""

    lenient = False
    peer = "gated"

    def __init__(self) -> None:
        self.gate = trio.Event()
        self.writing = trio.Event()
        self.sent: list[str] = []

    async def send_all(self, frames: Sequence[str]) -> None:
        self.writing.set()
        await self.gate.wait()
        self.sent.extend(frames)


@attrs.define
class _State:
    writing: bool = False
    write_scope: trio.CancelScope | None = None


async def _write(channel: _GatedChannel, outbox: Outbox, state: _State | None) -> bool:
    return await write_batches(channel, outbox.take, 10, state=state)  # type: ignore[arg-type]


async def test_a_cancelled_writer_finishes_its_write_first(
    autojump_clock: trio.testing.MockClock,
) -> None:
    channel, outbox, state = _GatedChannel(), Outbox(), _State()
    outbox.put("dispatch")
    done = trio.Event()
    writer = trio.CancelScope()

    async def write() -> None:
        with writer:
            await _write(channel, outbox, state)
        done.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(write)
        await channel.writing.wait()
        writer.cancel()
        await trio.sleep(5)  # cancelled, but still writing: the write is shielded
        assert state.writing and channel.sent == [] and not done.is_set()
        channel.gate.set()
    assert writer.cancelled_caught and channel.sent == ["dispatch"]
    assert not state.writing  # whole frames only: the connection is still usable


async def test_a_shielded_write_still_ends_at_its_deadline_which_can_be_hurried(
    autojump_clock: trio.testing.MockClock,
) -> None:
    channel, outbox, state = _GatedChannel(), Outbox(), _State()
    outbox.put("dispatch")
    results: list[bool] = []

    async def write() -> None:
        results.append(await _write(channel, outbox, state))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(write)
        await channel.writing.wait()
        started = trio.current_time()
        nursery.cancel_scope.cancel()
        assert state.write_scope is not None
        state.write_scope.deadline = trio.current_time() + 1
    assert trio.current_time() - started == 1
    assert results == [False] and channel.sent == []
    assert state.writing  # cut short: the connection is not usable any more


async def test_a_write_longer_than_the_timeout_means_a_lost_connection(
    autojump_clock: trio.testing.MockClock,
) -> None:
    channel, outbox = _GatedChannel(), Outbox()
    outbox.put("dispatch")
    with trio.fail_after(11):
        assert await _write(channel, outbox, None) is False
    assert channel.sent == []


async def test_without_state_a_cancellation_cuts_the_write(
    autojump_clock: trio.testing.MockClock,
) -> None:
    channel, outbox = _GatedChannel(), Outbox()
    outbox.put("dispatch")
    with trio.move_on_after(1) as scope:
        await _write(channel, outbox, None)
    assert scope.cancelled_caught and channel.sent == []
