"""What every transport turns a connection into."""

from __future__ import annotations

from typing import Protocol

from ..protocol import Message

__all__ = ["ChannelClosed", "WorkerChannel"]


class ChannelClosed(Exception):
    """The connection to the worker is gone (closed, reset, or the process exited)."""


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
