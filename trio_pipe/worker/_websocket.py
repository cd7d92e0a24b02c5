"""The WebSocket transport for the worker: trio-websocket behind :class:`Connection`."""

from __future__ import annotations

import ssl
import urllib.parse
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import trio
import trio_websocket

from ..protocol import DEFAULT_MAX_FRAME_SIZE
from ._transport import Connection, TransportClosed

__all__ = ["WebSocketConnection", "check_websocket_url", "open_websocket_connection"]

_CLOSED_ERRORS = (
    trio_websocket.ConnectionClosed,
    trio.BrokenResourceError,
    trio.ClosedResourceError,
    OSError,
)


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
    """:class:`Connection` over a trio-websocket connection (one message per frame)."""

    def __init__(self, ws: trio_websocket.WebSocketConnection) -> None:
        self._ws = ws

    async def send_all(self, frames: Sequence[str]) -> None:
        try:
            for frame in frames:
                await self._ws.send_message(frame)
        except _CLOSED_ERRORS as exc:
            raise TransportClosed(_describe(exc)) from exc

    async def receive(self) -> str | bytes:
        try:
            return await self._ws.get_message()
        except _CLOSED_ERRORS as exc:
            raise TransportClosed(_describe(exc)) from exc

    async def aclose(self) -> None:
        try:
            await self._ws.aclose()
        except _CLOSED_ERRORS:
            pass  # already gone: closed is closed


def _describe(exc: BaseException) -> str:
    if isinstance(exc, trio_websocket.ConnectionClosed) and exc.reason is not None:
        reason = exc.reason
        detail = f": {reason.reason}" if reason.reason else ""
        return f"WebSocket closed with code {reason.code} ({reason.name}){detail}"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


_OPEN_ERRORS = (
    trio_websocket.HandshakeError,
    trio_websocket.ConnectionClosed,
    trio.BrokenResourceError,
    trio.ClosedResourceError,
    trio.TooSlowError,
    OSError,
)


def _split_url(url: str) -> tuple[str, int, str, bool]:
    parts = urllib.parse.urlsplit(check_websocket_url(url))
    assert parts.hostname is not None
    secure = parts.scheme == "wss"
    port = parts.port or (443 if secure else 80)
    resource = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return parts.hostname, port, resource, secure


@asynccontextmanager
async def open_websocket_connection(
    url: str, *, connect_timeout: float, ssl_context: ssl.SSLContext | None = None
) -> AsyncIterator[Connection]:
    """Connect to *url*; yield the connection; close it on the way out.

    *connect_timeout* bounds the TCP (and TLS) connection, the opening handshake and
    the closing handshake, each. ``wss://`` URLs use *ssl_context* or the default
    context. Raises :class:`TransportClosed` if the connection cannot be opened
    (refused, rejected, TLS failure, timeout).

    We own the TCP stream rather than using ``trio_websocket.open_websocket_url``:
    its client leaves the socket open when the server starts the closing handshake
    (trio-websocket 0.12), which would leak one socket per reconnection.
    """
    host, port, resource, secure = _split_url(url)
    host_header = host if port in (80, 443) else f"{host}:{port}"
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
            async with trio.open_nursery() as nursery:
                with trio.fail_after(connect_timeout):
                    ws = await trio_websocket.wrap_client_stream(
                        nursery,
                        stream,
                        host_header,
                        resource,
                        max_message_size=DEFAULT_MAX_FRAME_SIZE,
                    )
                try:
                    yield WebSocketConnection(ws)
                finally:
                    with trio.move_on_after(connect_timeout):
                        await ws.aclose()
                    nursery.cancel_scope.cancel()  # the reader may wait for TCP close
        except BaseExceptionGroup as group:
            transport, rest = group.split(_OPEN_ERRORS)
            if transport is None:
                raise
            if rest is not None:
                raise rest from None  # e.g. Cancelled: it wins over a broken link
            first = _first_leaf(transport)
            raise TransportClosed(
                f"connecting to {url} failed: {_describe(first)}"
            ) from first


def _first_leaf(group: BaseExceptionGroup[BaseException]) -> BaseException:
    first = group.exceptions[0]
    return _first_leaf(first) if isinstance(first, BaseExceptionGroup) else first
