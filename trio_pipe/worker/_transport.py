"""What the worker core needs from a transport: send frames, receive frames, close.

The per-connection logic (:mod:`._core`) sees only :class:`Connection`; each transport
(WebSocket, newline-delimited stdio) is a small adapter that turns its own errors into
:class:`TransportClosed`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Protocol

__all__ = ["Connection", "Connector", "InputClosed", "TransportClosed"]


class TransportClosed(Exception):
    """The connection is gone: closed by the peer, broken, or never established."""


class InputClosed(TransportClosed):
    """No more frames will arrive, but sending may still work: the peer closed its
    half of a half-closable stream (stdin at end of file).

    Raised by :meth:`Connection.receive` only. Before ``Shutdown`` it means the same
    as :class:`TransportClosed`; after ``Shutdown`` the worker keeps draining and
    sending results."""


class Connection(Protocol):
    """One established connection to a dispatcher, carrying encoded frames.

    Implementations raise :class:`TransportClosed` from :meth:`send_all` and
    :meth:`receive` once the connection is closed or broken, and nothing else for
    transport failures.
    """

    async def send_all(self, frames: Sequence[str]) -> None:
        """Send *frames* in order (one JSON message each), as few writes as the
        transport allows. Cancellation may leave a frame half-sent: the caller then
        treats the connection as lost."""
        ...

    async def receive(self) -> str | bytes:
        """The next frame from the dispatcher."""
        ...

    async def aclose(self) -> None:
        """Close normally (idempotent). Unblocks pending :meth:`receive` calls."""
        ...


Connector = Callable[[], AbstractAsyncContextManager[Connection]]
"""Opens one connection per call; raises :class:`TransportClosed` if it cannot.
Leaving the context closes the connection."""
