"""WebSocket workers: one JSON message per text frame.

Both ends of trio_pipe's WebSocket connections -- the dispatcher's server side here,
the Python worker's client side in ``trio_pipe.worker`` -- are a
:class:`WebSocketStream` on a Trio stream: the sans-IO wsproto for the opening
handshake, then the frame codec of ``_wsframes``. No reader task and no queue per
connection, and every message pending for a connection goes out in one write (see
"Performance decisions" in docs/architecture.md).
"""

from __future__ import annotations

import collections
import ssl
from collections.abc import Awaitable, Callable, Sequence

import trio
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, Event, RejectConnection, Request
from wsproto.frame_protocol import CloseReason
from wsproto.utilities import RemoteProtocolError

from ..protocol import DEFAULT_MAX_FRAME_SIZE, Message, ProtocolError, decode
from ._channel import ChannelClosed, WorkerChannel
from ._wsframes import Close, FrameCodec, FrameError, Ping

__all__ = [
    "HandshakeFailed",
    "WebSocketChannel",
    "WebSocketClosed",
    "WebSocketStream",
    "accept_websocket",
    "connect_websocket",
    "serve_websocket_workers",
]

_POLICY_VIOLATION = 1008
_NORMAL = 1000
_LOST = 1006
_RECEIVE_SIZE = 65536
_MAX_HANDSHAKE_SIZE = 65536
_STREAM_ERRORS = (trio.BrokenResourceError, trio.ClosedResourceError, OSError)


class WebSocketClosed(Exception):
    """The WebSocket connection is closed: by a close frame (``code`` and ``reason``
    as sent), or lost (``code`` 1006)."""

    def __init__(self, code: int, reason: str | None = None) -> None:
        self.code = code
        self.reason = reason
        try:
            name = CloseReason(code).name
        except ValueError:
            name = "UNKNOWN"
        detail = f": {reason}" if reason else ""
        super().__init__(f"closed with code {code} ({name}){detail}")


class HandshakeFailed(Exception):
    """The opening handshake failed: rejected, malformed, or the connection ended."""


class WebSocketStream:
    """An open WebSocket connection over a Trio stream.

    :meth:`receive` returns whole messages (fragments joined), answers pings and
    completes the close handshake the peer starts; a message longer than
    *max_message_size* bytes, or a breach of RFC 6455, fails the connection with the
    matching close code (1009, 1002, 1007). :meth:`send_all` frames a batch of
    messages and writes it at once. One task may receive while another sends; writes
    never overlap: a write that finds one in progress leaves its bytes to it.
    """

    def __init__(
        self,
        stream: trio.abc.Stream,
        *,
        client: bool,
        max_message_size: int,
        received: bytes = b"",
    ) -> None:
        self._stream = stream
        self._frames = FrameCodec(client=client, max_message_size=max_message_size)
        self._messages: collections.deque[str | bytes] = collections.deque()
        self._closed: WebSocketClosed | None = None
        self._close_sent = False
        # Set once the peer's close frame has come, or the stream has ended:
        self._close_seen = trio.Event()
        self._receiving = False
        self._unsent = bytearray()
        self._writing = False
        self._received = received  # what the handshake read past its end
        self.peer = _describe_peer(stream)

    async def receive(self) -> str | bytes:
        """The next message; raises :class:`WebSocketClosed` once the connection is
        closed. Returns at once, without a checkpoint, if a message is already here."""
        while not self._messages:
            if self._closed is not None:
                raise self._closed
            await self._receive_some()
        return self._messages.popleft()

    async def send_all(self, messages: Sequence[str | bytes]) -> None:
        """Send *messages*, one frame each, in one write. Raises
        :class:`WebSocketClosed` if the connection is closed or breaks."""
        if self._closed is not None:
            raise self._closed
        if self._close_sent:
            raise WebSocketClosed(_NORMAL, "the connection is closing")
        self._unsent += b"".join(map(self._frames.message, messages))
        await self._flush()

    async def aclose(self, code: int = _NORMAL, reason: str = "") -> None:
        """Close: send a close frame (unless closed already), wait for the peer's
        (bound this with a timeout), then close the stream. Never raises for a
        connection that is already gone."""
        try:
            if not self._close_sent and self._closed is None:
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
        data: bytes | bytearray = self._received
        self._received = b""
        if not data:
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
        try:
            events = self._frames.receive(data)
        except FrameError as exc:
            events = []
            self._fail(exc.code, exc.reason)
        for event in events:
            if isinstance(event, str | bytes):
                self._messages.append(event)
            elif isinstance(event, Ping):
                self._unsent += self._frames.pong(event.payload)
            elif isinstance(event, Close):
                self._on_close(event)
                break
        if self._unsent:
            await self._flush()

    def _on_close(self, close: Close) -> None:
        if not self._close_sent:
            self._send_close(close.code)  # complete the close handshake
        self._close(WebSocketClosed(close.code, close.reason))
        self._close_seen.set()

    def _fail(self, code: int, reason: str) -> None:
        """Fail the connection for a fault of the peer's: our close frame goes out
        with the next write; we wait for no answer."""
        if not self._close_sent:
            self._send_close(code, reason)
        self._close(WebSocketClosed(code, reason))
        self._close_seen.set()

    def _lose(self, reason: str) -> None:
        self._close(WebSocketClosed(_LOST, reason))
        self._close_seen.set()

    def _send_close(self, code: int, reason: str = "") -> None:
        self._unsent += self._frames.close(code, reason)
        self._close_sent = True

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
        try:
            while self._unsent:
                data = bytes(self._unsent)
                self._unsent.clear()
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
    stream: trio.abc.Stream, *, max_message_size: int = DEFAULT_MAX_FRAME_SIZE
) -> WebSocketStream:
    """The server side of the opening handshake on *stream*: read the upgrade request,
    accept it. Raises :class:`HandshakeFailed` (after answering 400 to a malformed
    request). Bound it with a timeout."""
    ws = WSConnection(ConnectionType.SERVER)
    try:
        _, received = await _handshake_event(stream, ws, Request)
        await stream.send_all(ws.send(AcceptConnection()))
    except RemoteProtocolError as exc:
        if isinstance(exc.event_hint, RejectConnection):
            try:
                await stream.send_all(ws.send(exc.event_hint))
            except _STREAM_ERRORS:
                pass
        raise HandshakeFailed(f"bad upgrade request: {exc}") from None
    except _STREAM_ERRORS as exc:
        raise HandshakeFailed(f"connection lost: {exc!r}") from None
    return WebSocketStream(
        stream, client=False, max_message_size=max_message_size, received=received
    )


async def connect_websocket(
    stream: trio.abc.Stream,
    host: str,
    resource: str,
    *,
    max_message_size: int = DEFAULT_MAX_FRAME_SIZE,
) -> WebSocketStream:
    """The client side of the opening handshake on *stream* (*host* for the Host
    header, *resource* the path and query). Raises :class:`HandshakeFailed` if the
    server rejects it or the connection ends. Bound it with a timeout."""
    ws = WSConnection(ConnectionType.CLIENT)
    try:
        await stream.send_all(ws.send(Request(host=host, target=resource)))
        event, received = await _handshake_event(
            stream, ws, AcceptConnection, RejectConnection
        )
    except RemoteProtocolError as exc:
        raise HandshakeFailed(f"bad handshake response: {exc}") from None
    except _STREAM_ERRORS as exc:
        raise HandshakeFailed(f"connection lost: {exc!r}") from None
    if isinstance(event, RejectConnection):
        raise HandshakeFailed(f"rejected with HTTP status {event.status_code}")
    return WebSocketStream(
        stream, client=True, max_message_size=max_message_size, received=received
    )


async def _handshake_event(
    stream: trio.abc.Stream, ws: WSConnection, *kinds: type[Event]
) -> tuple[Event, bytes]:
    """Read the HTTP head of the handshake from *stream* into *ws* until it yields
    an event of one of *kinds*; return it, and the bytes read past the head (frames
    already sent, for the frame codec: wsproto never sees them)."""
    received = b""
    while True:
        head_end = received.find(b"\r\n\r\n")
        if head_end < 0:
            if len(received) > _MAX_HANDSHAKE_SIZE:
                raise HandshakeFailed("handshake too long")
            data = await stream.receive_some(_RECEIVE_SIZE)
            if not data:
                raise HandshakeFailed("the connection ended during the handshake")
            received += data
            continue
        head, received = received[: head_end + 4], received[head_end + 4 :]
        ws.receive_data(head)
        for event in ws.events():
            if isinstance(event, kinds):
                return event, received


class WebSocketChannel:
    """A :class:`WorkerChannel` over an accepted :class:`WebSocketStream`."""

    def __init__(self, ws: WebSocketStream, *, max_frame_size: int) -> None:
        self._ws = ws
        self._max_frame_size = max_frame_size
        self.peer = ws.peer

    async def receive(self) -> Message:
        try:
            frame = await self._ws.receive()
        except WebSocketClosed as exc:
            raise ChannelClosed(str(exc)) from None
        if isinstance(frame, bytes):
            raise ProtocolError("binary frame: messages are JSON text frames")
        return decode(frame, max_size=self._max_frame_size)

    async def send_all(self, frames: list[str]) -> None:
        try:
            await self._ws.send_all(frames)
        except WebSocketClosed as exc:
            raise ChannelClosed(str(exc)) from None

    async def aclose(self, reason: str = "", *, protocol_error: bool = False) -> None:
        code = _POLICY_VIOLATION if protocol_error else _NORMAL
        # A close reason must fit in a control frame (125 bytes less the code).
        await self._ws.aclose(code, reason.encode()[:120].decode(errors="ignore"))


async def serve_websocket_workers(
    handler: Callable[[WorkerChannel], Awaitable[None]],
    host: str,
    port: int,
    *,
    ssl_context: ssl.SSLContext | None = None,
    handler_nursery: trio.Nursery | None = None,
    max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
    handshake_timeout: float = 10.0,
    close_timeout: float = 2.0,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Accept WebSocket workers on *host*:*port* until cancelled.

    Each accepted connection is wrapped in a :class:`WebSocketChannel` and passed to
    *handler*, which runs in *handler_nursery* (by default a nursery of this function)
    and owns the connection until it returns. ``task_status.started()`` reports the
    bound port (useful with ``port=0``).

    Resource handling: cancelling this function stops accepting; connections whose
    handlers run in an outside *handler_nursery* live on until that nursery ends. The
    stream of every connection is closed when its handler ends, however it ends, after
    a close handshake bounded by *close_timeout*. Error handling: a failed or slow
    (*handshake_timeout*) opening handshake closes that connection only.
    """

    async def serve_stream(stream: trio.abc.Stream) -> None:
        async with stream:
            ws = None
            with trio.move_on_after(handshake_timeout):
                try:
                    ws = await accept_websocket(stream, max_message_size=max_frame_size)
                except HandshakeFailed:
                    return
            if ws is None:
                return
            try:
                await handler(WebSocketChannel(ws, max_frame_size=max_frame_size))
            finally:
                with trio.move_on_after(close_timeout, shield=True):
                    await ws.aclose()

    if ssl_context is None:
        tcp = await trio.open_tcp_listeners(port, host=host)
        task_status.started(tcp[0].socket.getsockname()[1])
        await trio.serve_listeners(serve_stream, tcp, handler_nursery=handler_nursery)
    else:
        tls = await trio.open_ssl_over_tcp_listeners(port, ssl_context, host=host)
        transport = tls[0].transport_listener
        assert isinstance(transport, trio.SocketListener)
        task_status.started(transport.socket.getsockname()[1])
        await trio.serve_listeners(serve_stream, tls, handler_nursery=handler_nursery)
