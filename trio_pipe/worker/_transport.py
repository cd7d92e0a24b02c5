"""What the worker needs from a transport: a :class:`~trio_pipe.transports.FrameChannel`,
the same abstraction the dispatcher's side uses, opened by a :data:`Connector`."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

from ..transports import FrameChannel

__all__ = ["Connector"]

Connector = Callable[[], AbstractAsyncContextManager[FrameChannel]]
"""Opens one connection per call; raises ``ChannelClosed`` if it cannot. Leaving the
context closes the connection."""
