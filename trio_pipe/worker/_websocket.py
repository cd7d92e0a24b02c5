"""The WebSocket transport for the worker: the dispatcher's own connection object,
:class:`WebSocketStream` (the sans-IO client protocol of ``websockets`` driven on a
Trio stream), behind :class:`Connection`."""

from __future__ import annotations

import ssl
import urllib.parse
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import trio

from ..protocol import DEFAULT_MAX_FRAME_SIZE
from ..transports._websocket import (
    HandshakeFailed,
    WebSocketClosed,
    WebSocketStream,
    connect_websocket,
)
from ._transport import Connection, TransportClosed

__all__ = ["WebSocketConnection", "check_websocket_url", "open_websocket_connection"]


def check_websocket_url(url: str) -> str:
    """Return *url* if it is a ``ws://`` or ``wss://`` URL with a host; raise
    :class:`ValueError` otherwise."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        raise ValueError(f"expected a ws:// or wss:// URL with a host, got {url!r}")
    try:
        _ = parts.port
    except ValueError as exc:
        raise ValueError(f"bad port in URL {url!r}: {exc}") from None
    return url


class WebSocketConnection:
    """:class:`Connection` over a :class:`WebSocketStream` (one message per frame)."""

    def __init__(self, ws: WebSocketStream) -> None:
        self._ws = ws

    async def send_all(self, frames: Sequence[str]) -> None:
        try:
            await self._ws.send_all(frames)
        except WebSocketClosed as exc:
            raise TransportClosed(f"WebSocket {exc}") from exc

    async def receive(self) -> str | bytes:
        try:
            return await self._ws.receive()
        except WebSocketClosed as exc:
            raise TransportClosed(f"WebSocket {exc}") from exc

    async def aclose(self) -> None:
        await self._ws.aclose()  # never raises for a connection already gone


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _split_url(url: str) -> tuple[str, int, bool]:
    parts = urllib.parse.urlsplit(check_websocket_url(url))
    assert parts.hostname is not None
    secure = parts.scheme == "wss"
    return parts.hostname, parts.port or (443 if secure else 80), secure


@asynccontextmanager
async def open_websocket_connection(
    url: str, *, connect_timeout: float, ssl_context: ssl.SSLContext | None = None
) -> AsyncIterator[Connection]:
    """Connect to *url*; yield the connection; close it on the way out.

    *connect_timeout* bounds the TCP (and TLS) connection, the opening handshake and
    the closing handshake, each. ``wss://`` URLs use *ssl_context* or the default
    context. Raises :class:`TransportClosed` if the connection cannot be opened
    (refused, rejected, TLS failure, timeout).
    """
    host, port, secure = _split_url(url)
    stream: trio.SocketStream | trio.SSLStream[trio.SocketStream]
    try:
        with trio.fail_after(connect_timeout):
            if secure:
                stream = await trio.open_ssl_over_tcp_stream(
                    host,
                    port,
                    ssl_context=ssl_context or ssl.create_default_context(),
                    https_compatible=True,
                )
            else:
                stream = await trio.open_tcp_stream(host, port)
    except (OSError, trio.TooSlowError) as exc:
        raise TransportClosed(f"connecting to {url} failed: {_describe(exc)}") from exc
    async with stream:
        try:
            with trio.fail_after(connect_timeout):
                ws = await connect_websocket(
                    stream, url, max_message_size=DEFAULT_MAX_FRAME_SIZE
                )
        except (HandshakeFailed, trio.TooSlowError, OSError) as exc:
            raise TransportClosed(f"connecting to {url} failed: {_describe(exc)}") from exc
        try:
            yield WebSocketConnection(ws)
        finally:
            with trio.move_on_after(connect_timeout):
                await ws.aclose()
