"""WebSocket workers: one JSON message per text frame, served with trio-websocket."""

from __future__ import annotations

import ssl
from collections.abc import Awaitable, Callable

import trio
import trio_websocket

from ..protocol import DEFAULT_MAX_FRAME_SIZE, Message, ProtocolError, decode
from ._channel import ChannelClosed, WorkerChannel

__all__ = ["WebSocketChannel", "serve_websocket_workers"]

_POLICY_VIOLATION = 1008
_NORMAL = 1000


class WebSocketChannel:
    """A :class:`WorkerChannel` over an accepted trio-websocket connection."""

    def __init__(
        self, ws: trio_websocket.WebSocketConnection, *, max_frame_size: int
    ) -> None:
        self._ws = ws
        self._max_frame_size = max_frame_size
        remote = ws.remote
        self.peer = (
            f"ws://{remote.address}:{remote.port}"
            if isinstance(remote, trio_websocket.Endpoint)
            else str(remote)
        )

    async def receive(self) -> Message:
        try:
            frame = await self._ws.get_message()
        except trio_websocket.ConnectionClosed as exc:
            raise ChannelClosed(_describe(exc.reason)) from None
        if isinstance(frame, bytes):
            raise ProtocolError("binary frame: messages are JSON text frames")
        return decode(frame, max_size=self._max_frame_size)

    async def send_all(self, frames: list[str]) -> None:
        try:
            for frame in frames:
                await self._ws.send_message(frame)
        except trio_websocket.ConnectionClosed as exc:
            raise ChannelClosed(_describe(exc.reason)) from None

    async def aclose(self, reason: str = "", *, protocol_error: bool = False) -> None:
        code = _POLICY_VIOLATION if protocol_error else _NORMAL
        # A close reason must fit in a control frame (125 bytes less the code).
        await self._ws.aclose(code, reason.encode()[:120].decode(errors="ignore"))


def _describe(reason: trio_websocket.CloseReason | None) -> str:
    if reason is None:
        return "connection lost"
    detail = f": {reason.reason}" if reason.reason else ""
    return f"closed with code {reason.code} ({reason.name}){detail}"


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
    message_queue_size: int = 64,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Accept WebSocket workers on *host*:*port* until cancelled.

    Each accepted connection is wrapped in a :class:`WebSocketChannel` and passed to
    *handler*, which runs in *handler_nursery* (by default a nursery of this function)
    and owns the connection until it returns. ``task_status.started()`` reports the
    bound port (useful with ``port=0``).

    Resource handling: cancelling this function stops accepting; connections whose
    handlers run in an outside *handler_nursery* live on until that nursery ends. The
    TCP stream of every connection is closed when its handler ends, however it ends
    (trio-websocket alone can leave it to the garbage collector when the peer vanished).
    Error handling: a failed or slow handshake closes that connection only.
    """

    async def serve_stream(stream: trio.abc.Stream) -> None:
        async with stream, trio.open_nursery() as nursery:
            ws = None
            with trio.move_on_after(handshake_timeout):
                request = await trio_websocket.wrap_server_stream(
                    nursery,
                    stream,
                    message_queue_size=message_queue_size,
                    max_message_size=max_frame_size,
                )
                ws = await request.accept()
            if ws is None:
                nursery.cancel_scope.cancel()
                return
            try:
                await handler(WebSocketChannel(ws, max_frame_size=max_frame_size))
            finally:
                with trio.move_on_after(close_timeout, shield=True):
                    await ws.aclose()
                nursery.cancel_scope.cancel()

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
