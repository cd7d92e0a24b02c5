"""Whose fault a broken protocol rule is.

As in h11: :class:`ProtocolError` is the base that one ``except`` can catch, and it is
never raised itself. What is raised says whose fault it is --
:class:`RemoteProtocolError` when the peer sent something invalid (a malformed frame, a
message that is not legal now), :class:`LocalProtocolError` when this side tried to send
or do something the protocol does not allow now (a bug here) -- so that code which
ends a connection for the peer's fault never ends it for its own bug. All three are
:class:`~trio_pipe.TrioPipeError` s, as every public exception of trio_pipe is.
"""

from __future__ import annotations

from .._errors import TrioPipeError

__all__ = ["LocalProtocolError", "NotAMessage", "ProtocolError", "RemoteProtocolError"]


class ProtocolError(TrioPipeError):
    """The protocol was broken; ``reason`` says precisely how.

    Not raised itself: what is raised is a :class:`RemoteProtocolError` or a
    :class:`LocalProtocolError`. Catch this base only where both are handled alike.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class LocalProtocolError(ProtocolError):
    """*We* tried to send or do something the protocol does not allow now: a bug on
    this side, never a reason to blame the peer."""


class RemoteProtocolError(ProtocolError):
    """The peer sent something invalid: a frame that is not a well-formed message, or
    a message that is not legal in the connection's state."""


class NotAMessage(RemoteProtocolError):
    """The frame is no protocol message at all: not JSON, not a JSON object, or an
    object without a ``"type"``. On a line-based transport such a line is the
    worker's own output, to be logged (the stdio contract); elsewhere it is as fatal
    as any other :class:`RemoteProtocolError`."""
