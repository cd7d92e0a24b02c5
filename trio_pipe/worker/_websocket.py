"""The WebSocket transport for the worker: the dispatcher's own
:class:`~trio_pipe.transports.WebSocketChannel`, over a connected
:class:`WebSocketStream` (the sans-IO client protocol of ``websockets`` driven on a
Trio stream)."""

from __future__ import annotations

import ssl
import urllib.parse
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio

from .._errors import ChannelClosed, HandshakeFailed, describe
from ..protocol import DEFAULT_MAX_FRAME_SIZE
from ..transports import FrameChannel, WebSocketChannel, connect_websocket

__all__ = ["check_websocket_url", "open_websocket_connection"]


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


def _split_url(url: str) -> tuple[str, int, bool]:
    parts = urllib.parse.urlsplit(check_websocket_url(url))
    assert parts.hostname is not None
    secure = parts.scheme == "wss"
    return parts.hostname, parts.port or (443 if secure else 80), secure


@asynccontextmanager
async def open_websocket_connection(
    url: str, *, connect_timeout: float, ssl_context: ssl.SSLContext | None = None
) -> AsyncIterator[FrameChannel]:
    """Connect to *url*; yield the connection; close it on the way out.

    *connect_timeout* bounds the TCP (and TLS) connection, the opening handshake and
    the closing handshake, each. ``wss://`` URLs use *ssl_context* or the default
    context. Raises ``ChannelClosed`` if the connection cannot be opened
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
        raise ChannelClosed(f"connecting to {url} failed: {describe(exc)}") from exc
    async with stream:
        try:
            with trio.fail_after(connect_timeout):
                ws = await connect_websocket(
                    stream, url, max_message_size=DEFAULT_MAX_FRAME_SIZE
                )
        except (HandshakeFailed, trio.TooSlowError, OSError) as exc:
            raise ChannelClosed(f"connecting to {url} failed: {describe(exc)}") from exc
        try:
            yield WebSocketChannel(ws)
        finally:
            with trio.move_on_after(connect_timeout):
                await ws.aclose()
