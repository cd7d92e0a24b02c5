"""The session rules: which messages each side may send in each state, as one table.

In the manner of h11's ``_state.py``: :data:`_SENDS` says, for each *sender* role
and each state of the connection, which message types that role may send, and the
state each one leads to. Both ends of a connection follow the same table: a
:class:`Session` of role ``DISPATCHER`` checks what it sends against the dispatcher's
rows and what it receives against the worker's, a session of role ``WORKER`` the
other way round. A message that breaks the table is a :class:`LocalProtocolError`
when we were about to send it and a :class:`RemoteProtocolError` when it came in.

```
                     WorkerRegister (from the worker)
awaiting registration ------------------------------> active
  (a spawned worker, registered by the dispatcher,      |  |
   starts active)                                       |  | Backpressure with draining
                                                        |  v (from the worker)
                                  Shutdown (from the    |  draining
                                  dispatcher)           |  |
                                                        v  v Shutdown
                          closed <-------------------- closing
                          (close(): the connection is gone, from any state)
```

*draining* and *closing* allow the same messages -- results still flow, new tasks do
not -- and differ in who stopped the work: the worker (draining), or the dispatcher's
``Shutdown`` (closing), which may still follow a drain.

Two rules hold per connection rather than per state, and are checked beside the
table: ``WorkerRegister`` crosses at most once, and ``WorkerRegistered`` answers it,
once. The registration counts as accepted at that answer, or at a ``TaskDispatch``
that crosses first: rust-pipe 0.1's dispatcher never answers, and dispatches at
once. One move depends on a message's content rather than its type: a
``Backpressure`` whose ``draining`` is true leads from *active* to *draining*. What
else depends on content (which tasks a worker holds, its capacity) is left to each
side: :class:`~trio_pipe.protocol.WorkerSession` adds it on the dispatcher's; a worker
answers a task it cannot take with a result (``WORKER_SATURATED``, docs/protocol.md),
so on its side that is no protocol error.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Final

from ._errors import LocalProtocolError, ProtocolError, RemoteProtocolError
from ._messages import (
    DISPATCHER_MESSAGES,
    WORKER_MESSAGES,
    Backpressure,
    Heartbeat,
    HeartbeatAck,
    Kill,
    Message,
    Shutdown,
    TaskDispatch,
    TaskResultMessage,
    WorkerRegister,
    WorkerRegistered,
)

__all__ = ["Role", "Session", "SessionState"]


class Role(enum.Enum):
    """A side of a connection."""

    DISPATCHER = "dispatcher"
    WORKER = "worker"

    @property
    def peer(self) -> Role:
        return Role.WORKER if self is Role.DISPATCHER else Role.DISPATCHER


class SessionState(enum.Enum):
    AWAITING_REGISTRATION = "awaiting registration"
    ACTIVE = "active"
    DRAINING = "draining"  # the worker said so: results still flow, no new tasks
    CLOSING = "closing"  # Shutdown crossed: results still flow, no new tasks
    CLOSED = "closed"


_AWAITING: Final = SessionState.AWAITING_REGISTRATION
_ACTIVE: Final = SessionState.ACTIVE
_DRAINING: Final = SessionState.DRAINING
_CLOSING: Final = SessionState.CLOSING
_CLOSED: Final = SessionState.CLOSED

_Moves = Mapping[type[Message], SessionState]

_SENDS: Final[Mapping[Role, Mapping[SessionState, _Moves]]] = {
    Role.WORKER: {
        _AWAITING: {WorkerRegister: _ACTIVE},
        _ACTIVE: {
            WorkerRegister: _ACTIVE,  # a spawned worker describing itself
            Heartbeat: _ACTIVE,
            TaskResultMessage: _ACTIVE,
            Backpressure: _ACTIVE,
        },
        _DRAINING: {
            WorkerRegister: _DRAINING,
            Heartbeat: _DRAINING,
            TaskResultMessage: _DRAINING,
            Backpressure: _DRAINING,
        },
        _CLOSING: {
            WorkerRegister: _CLOSING,
            Heartbeat: _CLOSING,
            TaskResultMessage: _CLOSING,
            Backpressure: _CLOSING,
        },
        _CLOSED: {},
    },
    Role.DISPATCHER: {
        _AWAITING: {},
        _ACTIVE: {
            WorkerRegistered: _ACTIVE,
            TaskDispatch: _ACTIVE,
            Kill: _ACTIVE,
            HeartbeatAck: _ACTIVE,
            Shutdown: _CLOSING,
        },
        _DRAINING: {
            WorkerRegistered: _DRAINING,
            Kill: _DRAINING,
            HeartbeatAck: _DRAINING,
            Shutdown: _CLOSING,
        },
        _CLOSING: {
            WorkerRegistered: _CLOSING,
            Kill: _CLOSING,
            HeartbeatAck: _CLOSING,
            Shutdown: _CLOSING,
        },
        _CLOSED: {},
    },
}
"""For each sender role and state: the message types it may send, and the state
each leads to (but for the one move that depends on content: :func:`_moves_to`)."""

_SENT_BY: Final[Mapping[Role, frozenset[type[Message]]]] = {
    Role.DISPATCHER: frozenset(DISPATCHER_MESSAGES),
    Role.WORKER: frozenset(WORKER_MESSAGES),
}


def _moves_to(message: Message, after: SessionState) -> SessionState:
    """The state *message* leads to, where the table says *after*: a draining
    ``Backpressure`` leads from active to draining."""
    if after is _ACTIVE and isinstance(message, Backpressure) and message.signal.draining:
        return _DRAINING
    return after


class Session:
    """The legality of every message on one connection, from the side of *role*.

    Fed every message that crosses the connection -- :meth:`send` for ours,
    :meth:`receive` for the peer's -- it follows the session rules and says whether
    each is legal now. It never performs I/O.

    A WebSocket worker registers first (``WorkerRegister``); a spawned worker is
    registered by the dispatcher, so its session starts ``ACTIVE`` (*registered*),
    though it may still send one ``WorkerRegister`` of its own.
    """

    def __init__(self, role: Role, *, registered: bool = False) -> None:
        self.role = role
        self._worker_registered = False
        self._registration_answered = False
        self._registration_accepted = registered
        self._state = _AWAITING
        self._may_send = _SENDS[role][_AWAITING]
        self._may_receive = _SENDS[role.peer][_AWAITING]
        if registered:
            self._enter(_ACTIVE)

    @property
    def state(self) -> SessionState:
        return self._state

    @property
    def worker_registered(self) -> bool:
        """The worker has sent ``WorkerRegister`` on this connection."""
        return self._worker_registered

    @property
    def registration_answered(self) -> bool:
        """``WorkerRegistered`` has answered the worker's ``WorkerRegister``."""
        return self._registration_answered

    @property
    def registration_accepted(self) -> bool:
        """The dispatcher has accepted the worker: it answered ``WorkerRegister`` with
        ``WorkerRegistered``, or sent a ``TaskDispatch`` after it before any answer (as
        rust-pipe 0.1 does, which never answers); or it registered a spawned worker
        itself (*registered*)."""
        return self._registration_accepted

    def send(self, message: Message) -> None:
        """Record *message*, which we are about to send.

        Raises :class:`LocalProtocolError`, and records nothing, if it is not legal
        now.
        """
        kind = type(message)
        after = self._may_send.get(kind)
        if after is None:
            raise self._send_refusal(kind)
        if kind is WorkerRegister or kind is WorkerRegistered:
            self._cross_once(kind, LocalProtocolError)
        elif kind is Backpressure:
            after = _moves_to(message, after)
        elif kind is TaskDispatch and not self._registration_accepted:
            self._registration_accepted = self._worker_registered
        if after is not self._state:
            self._enter(after)

    def check_send(self, kind: type[Message]) -> None:
        """Raise :class:`LocalProtocolError` if the table does not let a message of
        type *kind* be sent now. Records nothing: for a message whose sending changes
        nothing (a worker's result), where building it only to :meth:`send` it would
        cost more than the check."""
        if kind not in self._may_send:
            raise self._send_refusal(kind)

    def receive(self, message: Message) -> None:
        """Check *message*, which came from the peer, and record it.

        Raises :class:`RemoteProtocolError`, and records nothing, if it is not legal
        now.
        """
        kind = type(message)
        after = self._may_receive.get(kind)
        if after is None:
            raise self._receive_refusal(kind)
        if kind is WorkerRegister or kind is WorkerRegistered:
            self._cross_once(kind, RemoteProtocolError)
        elif kind is Backpressure:
            after = _moves_to(message, after)
        elif kind is TaskDispatch and not self._registration_accepted:
            self._registration_accepted = self._worker_registered
        if after is not self._state:
            self._enter(after)

    def close(self) -> None:
        """The connection is gone: nothing may cross it any more."""
        self._enter(_CLOSED)

    def _enter(self, state: SessionState) -> None:
        self._state = state
        self._may_send = _SENDS[self.role][state]
        self._may_receive = _SENDS[self.role.peer][state]

    def _cross_once(self, kind: type[Message], error: type[ProtocolError]) -> None:
        """The two rules per connection: one ``WorkerRegister``, one answer to it."""
        if kind is WorkerRegister:
            if self._worker_registered:
                raise error("worker registered twice on one connection")
            self._worker_registered = True
        else:
            if not self._worker_registered or self._registration_answered:
                raise error("WorkerRegistered answers one WorkerRegister")
            self._registration_answered = True
            self._registration_accepted = True

    def _send_refusal(self, kind: type[Message]) -> LocalProtocolError:
        if kind not in _SENT_BY[self.role]:
            return LocalProtocolError(f"{kind.TYPE} is not sent by a {self.role.value}")
        return LocalProtocolError(f"cannot send {kind.TYPE} while {self._state.value}")

    def _receive_refusal(self, kind: type[Message]) -> RemoteProtocolError:
        peer = self.role.peer
        if self._state is _CLOSED:
            return RemoteProtocolError("session is closed")
        if self._state is _AWAITING and self._may_receive:
            expected = " or ".join(sorted(k.TYPE for k in self._may_receive))
            return RemoteProtocolError(
                f"expected {expected} before anything else, got {kind.TYPE}"
            )
        if kind not in _SENT_BY[peer]:
            return RemoteProtocolError(
                f"{kind.TYPE} is sent by a {self.role.value}, not by a {peer.value}"
            )
        return RemoteProtocolError(f"{kind.TYPE} received while {self._state.value}")
