"""What every transport turns a connection into."""

from __future__ import annotations

from typing import Protocol

import trio

from .._errors import ChannelClosed
from ..protocol import Message

__all__ = ["ChannelClosed", "Outbox", "WorkerChannel"]


class WorkerChannel(Protocol):
    """A message-level connection to one worker.

    ``receive`` decodes at the edge: it returns a message, raises
    :class:`~trio_pipe.protocol.ProtocolError` for a malformed frame, or
    :class:`ChannelClosed` when the connection is gone. ``send_all`` writes a batch of
    encoded frames in as few writes as the transport allows.
    """

    @property
    def peer(self) -> str:
        """A human-readable description of the other end, for logs."""
        ...

    async def receive(self) -> Message: ...

    async def send_all(self, frames: list[str]) -> None: ...

    async def aclose(self, reason: str = "", *, protocol_error: bool = False) -> None: ...


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

    def put(self, frame: str) -> None:
        """Queue *frame* for the writer (dropped once the outbox is closed)."""
        if not self.closed:
            self._frames.append(frame)
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
        self._woken = False
        frames, self._frames = self._frames, []
        return frames
