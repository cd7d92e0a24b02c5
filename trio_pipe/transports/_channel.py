"""What every transport turns a connection into, on both sides: a :class:`FrameChannel`.

The dispatcher's connection to a worker and a worker's connection to its dispatcher
are the same thing -- encoded frames in, encoded frames out -- so one abstraction
serves both, and each transport (WebSocket, lines on a pair of streams, WASM, memory)
is written once. Decoding is not a transport's business: the session layer on each
side decodes what :meth:`FrameChannel.receive` returns and decides what a bad frame
means.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

import trio

from .._errors import ChannelClosed

__all__ = [
    "ChannelClosed",
    "FrameChannel",
    "InputClosed",
    "Outbox",
    "WriteState",
    "write_batches",
]


class InputClosed(ChannelClosed):
    """No more frames will arrive, but sending may still work: the peer closed its half
    of a half-closable stream (a worker's stdin at end of file). Raised by
    :meth:`FrameChannel.receive` only."""


class FrameChannel(Protocol):
    """One connection carrying protocol frames (one JSON message each).

    Error handling: every transport failure surfaces as :class:`ChannelClosed`, from
    :meth:`receive` and :meth:`send_all`, and nothing else does, but a frame that
    breaks the transport's own framing rules (a binary WebSocket frame), which raises
    :class:`~trio_pipe.protocol.RemoteProtocolError`.
    """

    @property
    def peer(self) -> str:
        """A human-readable description of the other end, for logs."""
        ...

    @property
    def lenient(self) -> bool:
        """Whether a frame that does not decode is the peer's own output to log and
        skip (lines on a process's stdout: the stdio contract), rather than a protocol
        error that ends the connection."""
        ...

    async def receive(self) -> str | bytes:
        """The next frame. Raises :class:`ChannelClosed` (:class:`InputClosed` if only
        the input ended) once the connection is gone. Cancellation loses no frame."""
        ...

    async def send_all(self, frames: Sequence[str]) -> None:
        """Send *frames* in order, in as few writes as the transport allows.
        Cancellation may leave a frame half sent: the caller must then treat the
        connection as lost."""
        ...

    async def aclose(self, reason: str = "", *, protocol_error: bool = False) -> None:
        """Close the connection, idempotently, telling the peer *reason* where the
        transport can (a WebSocket close frame: code 1008 if *protocol_error*, else
        1000). A line channel closes only the peer's input, and reads its output until
        it ends."""
        ...


class Outbox:
    """Frames waiting for a connection's one writer task.

    :meth:`put` never blocks, and wakes the writer only if it is waiting: frames
    queued while the writer is busy, or not yet scheduled, go out together in its next
    write. One wake-up per batch, not one task switch per frame.
    """

    def __init__(self) -> None:
        self._frames: list[str] = []
        self._writer = trio.lowlevel.ParkingLot()
        self._woken = False
        self.closed = False
        #: Characters queued and not yet taken by the writer.
        self.size = 0

    def put(self, frame: str) -> None:
        """Queue *frame* for the writer (dropped once the outbox is closed)."""
        if not self.closed:
            self._frames.append(frame)
            self.size += len(frame)
            self.wake()

    def wake(self) -> None:
        """Make the writer's :meth:`take` return, even with nothing queued."""
        self._woken = True
        if self._writer:
            self._writer.unpark()

    def close(self) -> None:
        """No more frames: :meth:`take` returns what is queued, then ``[]``."""
        self.closed = True
        self.wake()

    async def take(self) -> list[str]:
        """Every queued frame, waiting until there is one, or until :meth:`wake`
        or :meth:`close` (then possibly ``[]``)."""
        while not (self._woken or self.closed):
            await self._writer.park()
        return self.take_nowait()

    def take_nowait(self) -> list[str]:
        """Every queued frame (perhaps none), without waiting."""
        self._woken = False
        frames, self._frames = self._frames, []
        self.size = 0
        return frames


class WriteState(Protocol):
    """Where :func:`write_batches` keeps the state of one connection's writes."""

    #: A write was under way (it was cut short if it still is when the writer ends).
    writing: bool
    #: The cancel scope bounding the current write: bring its deadline forward to
    #: hurry a shielded write.
    write_scope: trio.CancelScope | None


async def write_batches(
    channel: FrameChannel,
    next_batch: Callable[[], Awaitable[list[str]]],
    write_timeout: float,
    *,
    state: WriteState | None = None,
) -> bool:
    """The one writer of a connection, on either side: send each batch *next_batch*
    gives, until it gives ``[]`` (return True), or until one write takes longer than
    *write_timeout* seconds (return False: the connection must be treated as lost).
    ``ChannelClosed`` from the channel propagates. (A bound per write, not on the
    whole: no caller's cancel scope can say that.)

    With *state*, a write is shielded: a cancellation from outside waits for it
    instead of cutting a frame in half, so the connection stays usable for a last
    frame (the dispatcher's ``Shutdown``). Only the write's own deadline ends it, and
    ``state.write_scope`` lets the owner bring that forward. ``state.writing`` stays
    true after a write that was cut short."""
    while True:
        # One cancel scope for many writes, its deadline pushed before each: much
        # cheaper than a scope per write. Expiring while idle just opens a new one.
        writing = False
        with trio.CancelScope() as scope:
            if state is not None:
                state.write_scope = scope
            while frames := await next_batch():
                writing = True
                scope.deadline = trio.current_time() + write_timeout
                if state is not None:
                    state.writing = scope.shield = True
                await channel.send_all(frames)
                writing = False
                if state is not None:
                    state.writing = scope.shield = False
            return True
        if writing:
            return False
