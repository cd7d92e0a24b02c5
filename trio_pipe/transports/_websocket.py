"""WebSocket workers: one JSON message per text frame.

Both ends of trio_pipe's WebSocket connections -- the dispatcher's server side here,
the Python worker's client side in ``trio_pipe.worker`` -- are a
:class:`WebSocketStream` on a Trio stream, driving the sans-IO protocol of the
``websockets`` library (opening handshake, framing, close handshake). No reader task
and no queue per connection, and every message pending for a connection goes out in
one write (docs/architecture.md says why; docs/performance.md what it bought).
"""

from __future__ import annotations

import collections
import errno
import http
import logging
import os
import ssl
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, cast

import trio
from websockets.client import ClientProtocol
from websockets.frames import BINARY, CLOSE, CONT, TEXT, CloseCode, Frame
from websockets.http11 import Request, Response
from websockets.protocol import OPEN, Event, Protocol
from websockets.server import ServerProtocol
from websockets.typing import BytesLike
from websockets.uri import parse_uri

from .._errors import AuthenticationFailed, HandshakeFailed, HandshakeRefused
from ..auth import Authenticator, Claims
from ..protocol import DEFAULT_MAX_FRAME_SIZE, RemoteProtocolError
from ._channel import ChannelClosed

__all__ = [
    "HandshakeFailed",
    "HandshakeRefused",
    "WebSocketChannel",
    "WebSocketClosed",
    "WebSocketStream",
    "accept_websocket",
    "connect_websocket",
    "serve_websocket_workers",
]

_POLICY_VIOLATION = 1008
_NORMAL = 1000
_NO_STATUS = 1005
_LOST = 1006
_INVALID_DATA = 1007
_MAX_CLOSE_REASON = 123  # bytes: a control frame's 125 less the code
_RECEIVE_SIZE = 65536
_MAX_HANDSHAKE_SIZE = 65536
_MAX_REFUSAL_BODY = 4096  # bytes of an HTTP error's body read for its reason
_MAX_REFUSAL_REASON = 200  # characters of it kept
_STREAM_ERRORS = (trio.BrokenResourceError, trio.ClosedResourceError, OSError)
# accept(2) failing for want of resources (file descriptors, memory): back off.
_ACCEPT_CAPACITY_ERRNOS = frozenset(
    {errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS}
)
_ACCEPT_BACKOFF = (0.01, 1.0)  # the first pause, and the longest, in seconds

log = logging.getLogger("trio_pipe.websocket")


class WebSocketClosed(Exception):
    """The WebSocket connection is closed: by a close frame (``code`` and ``reason``
    as sent), or lost (``code`` 1006)."""

    def __init__(self, code: int, reason: str | None = None) -> None:
        self.code = code
        self.reason = reason
        try:
            name = CloseCode(code).name
        except ValueError:
            name = "UNKNOWN"
        detail = f": {reason}" if reason else ""
        super().__init__(f"closed with code {code} ({name}){detail}")


class WebSocketStream:
    """An open WebSocket connection over a Trio stream, driving a sans-IO
    ``websockets`` protocol object (:class:`ServerProtocol` or :class:`ClientProtocol`,
    past its opening handshake).

    :meth:`receive` returns whole messages (fragments joined), answers pings and
    completes the close handshake the peer starts; a message longer than the
    protocol's ``max_size``, or a breach of RFC 6455, fails the connection with the
    matching close code (1009, 1002, 1007). :meth:`send_all` frames a batch of
    messages and writes it at once. One task may receive while another sends; writes
    never overlap: a write that finds one in progress leaves its bytes to it.
    """

    def __init__(
        self, stream: trio.abc.Stream, protocol: Protocol, events: Sequence[Event] = ()
    ) -> None:
        """*events*: frames the protocol parsed with the handshake, to handle first."""
        self._stream = stream
        self._protocol = protocol
        self._messages: collections.deque[str | bytes] = collections.deque()
        self._fragments: list[BytesLike] = []  # of the message in progress
        self._fragmented_text = False
        self._closed: WebSocketClosed | None = None
        # Set once the peer's close frame has come, or the stream has ended:
        self._close_seen = trio.Event()
        self._receiving = False
        self._unsent: list[bytes] = []
        self._writing = False
        #: What the authenticator allowed this connection (``accept_websocket``).
        self.claims: Claims | None = None
        self.peer = _describe_peer(stream)
        if events:
            self._handle([event for event in events if isinstance(event, Frame)])
        self._after_receive()

    async def receive(self) -> str | bytes:
        """The next message; raises :class:`WebSocketClosed` once the connection is
        closed. Returns at once, without a checkpoint, if a message is already here."""
        while not self._messages:
            if self._closed is not None:
                raise self._closed
            await self._receive_some()
        return self._messages.popleft()

    async def send_all(self, messages: Sequence[str | bytes]) -> None:
        """Send *messages*, one frame each (text for ``str``, binary for ``bytes``),
        in one write. Raises :class:`WebSocketClosed` if the connection is closed or
        breaks."""
        if self._closed is not None:
            raise self._closed
        protocol = self._protocol
        if protocol.state is not OPEN:
            raise WebSocketClosed(_NORMAL, "the connection is closing")
        send_text = protocol.send_text
        for message in messages:
            if isinstance(message, str):
                send_text(message.encode())
            else:
                protocol.send_binary(message)
        self._unsent += protocol.data_to_send()
        await self._flush()

    async def aclose(self, code: int = _NORMAL, reason: str = "") -> None:
        """Close: send a close frame (unless closed already), wait for the peer's
        (bound this with a timeout), then close the stream. Never raises for a
        connection that is already gone."""
        try:
            if self._closed is None and self._protocol.state is OPEN:
                self._send_close(code, reason)
                await self._flush()
            while not self._close_seen.is_set():
                if self._receiving:  # the receiving task will see the close frame
                    await self._close_seen.wait()
                else:
                    await self._receive_some()
        except WebSocketClosed:
            pass
        finally:
            self._close(WebSocketClosed(code, reason))
            self._close_seen.set()
            await self._stream.aclose()

    # -- reading ---------------------------------------------------------------

    async def _receive_some(self) -> None:
        self._receiving = True
        try:
            data = await self._stream.receive_some(_RECEIVE_SIZE)
        except _STREAM_ERRORS as exc:
            self._lose(f"connection lost: {exc!r}")
            return
        finally:
            self._receiving = False
        if not data:
            self._lose("connection lost: end of stream")
            return
        protocol = self._protocol
        protocol.receive_data(data)
        events = protocol.events_received()
        if events:
            self._handle(events)
        self._after_receive()
        if self._unsent:
            await self._flush()

    def _handle(self, events: Sequence[Event]) -> None:
        """Messages from data frames; the peer's close. (The protocol queues the
        answer to a ping, and the echo of a close frame, itself.) Past the opening
        handshake, every event is a frame."""
        for frame in cast("Sequence[Frame]", events):
            opcode = frame.opcode
            if opcode is TEXT:
                if frame.fin:
                    try:
                        self._messages.append(str(frame.data, "utf-8"))
                    except UnicodeDecodeError as exc:
                        self._fail_utf8(exc)
                        return
                else:
                    self._fragments = [frame.data]
                    self._fragmented_text = True
            elif opcode is CONT:
                self._fragments.append(frame.data)
                if frame.fin:
                    data = b"".join(self._fragments)
                    self._fragments = []
                    if not self._fragmented_text:
                        self._messages.append(data)
                        continue
                    try:
                        self._messages.append(data.decode())
                    except UnicodeDecodeError as exc:
                        self._fail_utf8(exc)
                        return
            elif opcode is BINARY:
                if frame.fin:
                    self._messages.append(bytes(frame.data))
                else:
                    self._fragments = [frame.data]
                    self._fragmented_text = False
            elif opcode is CLOSE:
                close = self._protocol.close_rcvd
                assert close is not None
                self._close(WebSocketClosed(close.code, close.reason))
                self._close_seen.set()
                return

    def _after_receive(self) -> None:
        """Queue what the protocol has to send; note a failure it detected (its close
        frame, with the code and reason, is queued: we wait for no answer)."""
        protocol = self._protocol
        writes = protocol.data_to_send()
        if writes:
            self._unsent += writes
        if protocol.parser_exc is not None and self._closed is None:
            sent = protocol.close_sent
            if sent is None:
                self._close(WebSocketClosed(_LOST, str(protocol.parser_exc)))
            else:
                # The peer broke WebSocket framing (an oversize frame: 1009...): logged
                # as every protocol error is.
                log.warning(
                    "%s broke the WebSocket protocol: %s (closed with %d)",
                    self.peer,
                    protocol.parser_exc,
                    sent.code,
                )
                self._close(WebSocketClosed(sent.code, sent.reason))
            self._close_seen.set()

    def _fail_utf8(self, exc: UnicodeDecodeError) -> None:
        reason = f"invalid UTF-8: {exc.reason} at position {exc.start}"
        log.warning(
            "%s broke the WebSocket protocol: %s (closed with 1007)", self.peer, reason
        )
        self._protocol.fail(_INVALID_DATA, reason)
        self._unsent += self._protocol.data_to_send()
        self._close(WebSocketClosed(_INVALID_DATA, reason))
        self._close_seen.set()

    def _lose(self, reason: str) -> None:
        self._close(WebSocketClosed(_LOST, reason))
        self._close_seen.set()

    def _send_close(self, code: int, reason: str) -> None:
        if code == _NO_STATUS:
            self._protocol.send_close()
        else:
            reason = reason.encode()[:_MAX_CLOSE_REASON].decode(errors="ignore")
            self._protocol.send_close(code, reason)
        self._unsent += self._protocol.data_to_send()

    def _close(self, closed: WebSocketClosed) -> WebSocketClosed:
        """Record why the connection closed (the first reason wins) and return it.
        Messages that arrived before stay to be received."""
        if self._closed is None:
            self._closed = closed
        return self._closed

    # -- writing ---------------------------------------------------------------

    async def _flush(self) -> None:
        """Write every unsent byte. A task that finds a write in progress returns at
        once: the writing task sends its bytes too, in order."""
        if self._writing:
            return
        self._writing = True
        unsent = self._unsent
        try:
            while unsent:
                data = b"".join(unsent)  # (the protocol's end-of-stream mark is b"")
                unsent.clear()
                if data:
                    await self._stream.send_all(data)
        except _STREAM_ERRORS as exc:
            self._close_seen.set()
            raise self._close(WebSocketClosed(_LOST, f"connection lost: {exc!r}")) from None
        finally:
            self._writing = False


def _describe_peer(stream: trio.abc.Stream) -> str:
    inner: object = stream
    while isinstance(inner, trio.SSLStream):
        inner = inner.transport_stream
    if isinstance(inner, trio.SocketStream):
        try:
            host, port = inner.socket.getpeername()[:2]
        except OSError:
            return "ws://(disconnected)"
        return f"ws://{host}:{port}"
    return f"ws://({type(inner).__name__})"


async def accept_websocket(
    stream: trio.abc.Stream,
    *,
    max_message_size: int = DEFAULT_MAX_FRAME_SIZE,
    authenticator: Authenticator | None = None,
) -> WebSocketStream:
    """The server side of the opening handshake on *stream*: read the upgrade request,
    accept it. Raises :class:`HandshakeFailed` (after answering with an HTTP error to
    a request that is not a WebSocket upgrade). Bound it with a timeout.

    With an *authenticator*, the request's headers and the TLS client certificate
    are checked before anything is accepted: refused, the client is answered with
    the refusal's status (401 or 403) and reason, and :class:`HandshakeFailed` names
    them; accepted, the stream's :attr:`~WebSocketStream.claims` are the result."""
    protocol = ServerProtocol(max_size=max_message_size)
    claims = None
    try:
        events = await _handshake_events(stream, protocol)
        early = protocol.data_to_send()  # answers to frames sent with the request
        request = events[0]
        assert isinstance(request, Request)
        response = protocol.accept(request)
        if response.status_code == 101 and authenticator is not None:
            try:
                claims = authenticator.authenticate(
                    request.headers, _peer_certificate(stream)
                )
            except AuthenticationFailed as exc:
                response = protocol.reject(exc.status, f"{exc.reason}\n")
                early = []
        protocol.send_response(response)
        await stream.send_all(b"".join(protocol.data_to_send() + early))
    except _STREAM_ERRORS as exc:
        raise HandshakeFailed(f"connection lost: {exc!r}") from None
    if response.status_code != 101:
        if protocol.handshake_exc is None:  # refused by the authenticator
            reason = response.body.decode(errors="replace").strip()
            raise HandshakeFailed(f"refused with HTTP {response.status_code}: {reason}")
        raise HandshakeFailed(f"bad upgrade request: {protocol.handshake_exc}")
    ws = WebSocketStream(stream, protocol, events[1:])
    ws.claims = claims
    await ws._flush()
    return ws


def _peer_certificate(stream: trio.abc.Stream) -> dict[str, Any] | None:
    """The verified TLS client certificate on *stream*, if it has one."""
    if not isinstance(stream, trio.SSLStream):
        return None
    certificate = stream.getpeercert()
    return cast("dict[str, Any] | None", certificate or None)


async def connect_websocket(
    stream: trio.abc.Stream,
    url: str,
    *,
    max_message_size: int = DEFAULT_MAX_FRAME_SIZE,
    headers: Mapping[str, str] | None = None,
) -> WebSocketStream:
    """The client side of the opening handshake for *url* on *stream*, already
    connected to its host, with *headers* added to the request (``Authorization``...;
    never logged, not even at DEBUG). Raises :class:`HandshakeRefused` if the server
    answers with an HTTP error, and :class:`HandshakeFailed` if its answer is not a
    WebSocket handshake or the connection ends (chained to the stream's error: a TLS
    alert, for one). Bound it with a timeout."""
    protocol = ClientProtocol(parse_uri(url), max_size=max_message_size)
    request = protocol.connect()
    debug = protocol.debug
    if headers:
        for name, value in headers.items():
            request.headers[name] = value
        protocol.debug = False  # its debug log would show every header's value
    protocol.send_request(request)
    protocol.debug = debug
    try:
        await stream.send_all(b"".join(protocol.data_to_send()))
        events = await _handshake_events(stream, protocol)
    except _STREAM_ERRORS as exc:
        raise HandshakeFailed(f"connection lost: {exc!r}") from exc
    response = events[0]
    assert isinstance(response, Response)
    if protocol.handshake_exc is not None:
        if response.status_code != 101:
            raise HandshakeRefused(response.status_code, _refusal_reason(response))
        raise HandshakeFailed(f"bad handshake response: {protocol.handshake_exc}")
    ws = WebSocketStream(stream, protocol, events[1:])
    await ws._flush()
    return ws


def _refusal_reason(response: Response) -> str:
    """What an HTTP error answer to the handshake says, for one line of a log: its
    body (plain text, as the dispatcher writes it), else its status's phrase."""
    text = bytes(response.body[:_MAX_REFUSAL_BODY]).decode("utf-8", errors="replace")
    reason = " ".join(text.split()) or response.reason_phrase
    if not reason:
        try:
            reason = http.HTTPStatus(response.status_code).phrase
        except ValueError:
            reason = "no reason given"
    if len(reason) > _MAX_REFUSAL_REASON:
        reason = reason[: _MAX_REFUSAL_REASON - 3] + "..."
    return reason


async def _handshake_events(
    stream: trio.abc.Stream, protocol: ServerProtocol | ClientProtocol
) -> list[Event]:
    """Read from *stream* into *protocol* until it has parsed the request (or the
    response): return its events, that one first, then any frames that came with it.
    Raises :class:`HandshakeFailed` for a malformed or overlong head (after sending
    what the protocol answers to it) or the end of the stream (but for a response
    whose body runs to the end of the stream)."""
    received = 0
    while True:
        data = await stream.receive_some(_RECEIVE_SIZE)
        if not data:
            protocol.receive_eof()
            if events := protocol.events_received():
                return events
            raise HandshakeFailed("the connection ended during the handshake")
        protocol.receive_data(data)
        events = protocol.events_received()
        if events:
            return events
        if protocol.handshake_exc is not None:
            answer = b"".join(protocol.data_to_send())
            if answer:
                await stream.send_all(answer)
            raise HandshakeFailed(f"bad handshake: {protocol.handshake_exc}")
        received += len(data)
        if received > _MAX_HANDSHAKE_SIZE:
            raise HandshakeFailed("handshake too long")


class WebSocketChannel:
    """A :class:`~trio_pipe.transports.FrameChannel` over a :class:`WebSocketStream`,
    accepted (the dispatcher's end) or connected (a worker's): one frame per text
    message. A binary message breaks the protocol's framing: ``RemoteProtocolError``."""

    lenient = False

    def __init__(
        self, ws: WebSocketStream, *, on_first_message: Callable[[], object] | None = None
    ) -> None:
        """*on_first_message* is called once, when the first message arrives."""
        self._ws = ws
        self.peer = ws.peer
        self.claims = ws.claims
        self._on_first_message = on_first_message

    async def receive(self) -> str:
        try:
            frame = await self._ws.receive()
        except WebSocketClosed as exc:
            raise ChannelClosed(
                f"WebSocket {exc}", close_code=exc.code, close_reason=exc.reason
            ) from None
        if self._on_first_message is not None:
            self._on_first_message()
            self._on_first_message = None
        if isinstance(frame, bytes):
            raise RemoteProtocolError("binary frame: messages are JSON text frames")
        return frame

    async def send_all(self, frames: Sequence[str]) -> None:
        try:
            await self._ws.send_all(frames)
        except WebSocketClosed as exc:
            raise ChannelClosed(f"WebSocket {exc}") from None

    async def aclose(self, reason: str = "", *, protocol_error: bool = False) -> None:
        code = _POLICY_VIOLATION if protocol_error else _NORMAL
        await self._ws.aclose(code, reason)  # which cuts it to fit a control frame


class _Episode:
    """A limit that fires again and again (a flood of connections): logged once when
    it starts, with the first peer, and once when it ends, with how often it fired."""

    def __init__(self, what: str) -> None:
        self._what = what
        self._count = 0

    def fire(self, peer: str, detail: str) -> None:
        self._count += 1
        if self._count == 1:
            log.warning("%s (%s): %s; logged once until it stops", self._what, peer, detail)

    def end(self) -> None:
        if self._count > 1:
            log.warning("%s: stopped after %d times", self._what, self._count)
        self._count = 0


class _Admission:
    """Who may connect: at most *max_connections* at once, of which at most
    *max_unregistered* have not sent their first message. A new connection beyond
    either limit sheds the oldest connection without a message, if there is one (idle
    connections cannot keep a worker out, they can only take turns); else it is closed
    as soon as accepted."""

    def __init__(self, max_connections: int | None, max_unregistered: int | None) -> None:
        self.max_connections = max_connections
        self.max_unregistered = max_unregistered
        self.connections = 0
        # The scope of each connection without a first message, oldest first:
        self.unregistered: dict[object, trio.CancelScope] = {}
        self.refused = _Episode("too many connections: new ones closed at once")
        self.shed = _Episode(
            "too many connections: the oldest without a message closed for new ones"
        )

    def admit(self, peer: str) -> bool:
        """Whether the new connection from *peer* may stay (after shedding another)."""
        full = self.max_connections is not None and self.connections >= self.max_connections
        if full and not self.unregistered:
            self.refused.fire(peer, f"the limit is {self.max_connections}")
            return False
        self.refused.end()
        most = self.max_unregistered
        if full or (most is not None and len(self.unregistered) >= most):
            oldest = next(iter(self.unregistered))
            self.unregistered.pop(oldest).cancel()
            limit = f"{self.max_connections} in all" if full else f"{most} without one"
            self.shed.fire(peer, f"the limit is {limit}")
        else:
            self.shed.end()
        return True


async def _accept_loop(
    listener: trio.abc.Listener[trio.abc.Stream],
    handler_nursery: trio.Nursery,
    serve_stream: Callable[[trio.abc.Stream], Awaitable[None]],
    where: str,
) -> None:
    """Accept on *listener* until cancelled. When accept fails for want of file
    descriptors or memory, back off (doubling, up to a second), and log once per
    episode rather than once per try."""
    episode = _Episode(f"accepting on {where} fails")
    delay = _ACCEPT_BACKOFF[0]
    async with listener:
        while True:
            try:
                stream = await listener.accept()
            except OSError as exc:
                if exc.errno not in _ACCEPT_CAPACITY_ERRNOS:
                    raise
                name = errno.errorcode.get(exc.errno, str(exc.errno))
                episode.fire(name, f"{os.strerror(exc.errno)}; backing off")
                await trio.sleep(delay)
                delay = min(delay * 2, _ACCEPT_BACKOFF[1])
                continue
            episode.end()
            delay = _ACCEPT_BACKOFF[0]
            handler_nursery.start_soon(serve_stream, stream)


async def serve_websocket_workers(
    handler: Callable[[WebSocketChannel], Awaitable[None]],
    host: str,
    port: int,
    *,
    ssl_context: ssl.SSLContext | None = None,
    handler_nursery: trio.Nursery | None = None,
    max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
    handshake_timeout: float = 10.0,
    close_timeout: float = 2.0,
    authenticator: Authenticator | None = None,
    max_connections: int | None = None,
    max_unregistered: int | None = None,
    task_status: trio.TaskStatus[tuple[int, ...]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Accept WebSocket workers on *host*:*port* until cancelled.

    Each accepted connection is wrapped in a :class:`WebSocketChannel` and passed to
    *handler*, which runs in *handler_nursery* (by default a nursery of this function)
    and owns the connection until it returns. ``task_status.started()`` reports the
    bound port of each listener, one per address of *host* (with ``port=0`` they may
    differ).

    Resource handling: cancelling this function stops accepting; connections whose
    handlers run in an outside *handler_nursery* live on until that nursery ends. The
    stream of every connection is closed when its handler ends, however it ends, after
    a close handshake bounded by *close_timeout*. Error handling: a failed or slow
    (*handshake_timeout*) opening handshake closes that connection only; so does
    one that *authenticator* refuses (see :func:`accept_websocket`), before any
    protocol message is read.

    Limits (docs/limits.md): beyond *max_connections* open at once, a new connection
    is closed as soon as it is accepted; beyond *max_unregistered* that have not yet
    sent their first message (in the handshake, or not registered), a new one sheds
    the oldest of those. Either is logged once per episode, as are handshakes that
    fail or time out, and accept failing for want of file descriptors (it backs off
    meanwhile).
    """
    admission = _Admission(max_connections, max_unregistered)
    # A flood of failing or idle handshakes is logged once per episode, which a
    # handshake that succeeds ends.
    failing = _Episode("WebSocket handshakes fail")
    idle = _Episode(f"no WebSocket handshake within {handshake_timeout} s")

    async def serve_stream(stream: trio.abc.Stream) -> None:
        if not admission.admit(_describe_peer(stream)):
            await trio.aclose_forcefully(stream)
            return
        admission.connections += 1
        key = object()
        admission.unregistered[key] = scope = trio.CancelScope()
        try:
            with scope:
                await _serve_connection(
                    stream, lambda: admission.unregistered.pop(key, None)
                )
        finally:
            admission.connections -= 1
            admission.unregistered.pop(key, None)

    async def _serve_connection(
        stream: trio.abc.Stream, on_first_message: Callable[[], object]
    ) -> None:
        # Closed shielded and forcefully: an error of the handler's must leave this
        # function as itself, not replaced by a Cancelled from closing the stream
        # while the dispatcher is being cancelled (which would drop the error).
        try:
            ws = None
            with trio.move_on_after(handshake_timeout):
                try:
                    ws = await accept_websocket(
                        stream, max_message_size=max_frame_size, authenticator=authenticator
                    )
                except HandshakeFailed as exc:
                    failing.fire(_describe_peer(stream), str(exc))
                    return
            if ws is None:
                idle.fire(_describe_peer(stream), "closed")
                return
            failing.end()
            idle.end()
            try:
                await handler(WebSocketChannel(ws, on_first_message=on_first_message))
            finally:
                with trio.move_on_after(close_timeout, shield=True):
                    await ws.aclose()
        finally:
            with trio.CancelScope(shield=True):
                await trio.aclose_forcefully(stream)

    listeners: list[trio.abc.Listener[trio.abc.Stream]] = []
    if ssl_context is None:
        tcp = await trio.open_tcp_listeners(port, host=host)
        sockets = [listener.socket for listener in tcp]
        listeners.extend(tcp)
    else:
        tls = await trio.open_ssl_over_tcp_listeners(port, ssl_context, host=host)
        sockets = []
        for listener in tls:
            assert isinstance(listener.transport_listener, trio.SocketListener)
            sockets.append(listener.transport_listener.socket)
        listeners.extend(tls)
    # One listener per address of *host*; with port 0 each has a port of its own.
    task_status.started(tuple(sock.getsockname()[1] for sock in sockets))
    # Not trio.serve_listeners: it closes each stream after its handler, unshielded,
    # and so replaces the handler's error with a Cancelled if the dispatcher is being
    # cancelled by then; nor does it back off when accept runs out of descriptors.
    async with trio.open_nursery() as nursery:
        for each, sock in zip(listeners, sockets, strict=True):
            address, bound = sock.getsockname()[:2]
            nursery.start_soon(
                _accept_loop,
                each,
                handler_nursery or nursery,
                serve_stream,
                f"{address}:{bound}",
            )
