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


async def _open_stream(
    url: str,
    host: str,
    port: int,
    secure: bool,
    connect_timeout: float,
    ssl_context: ssl.SSLContext | None,
) -> trio.SocketStream | trio.SSLStream[trio.SocketStream]:
    """A TCP connection to *host*:*port*, with its TLS handshake done if *secure*;
    raises ``ChannelClosed`` saying why there is none."""
    try:
        with trio.fail_after(connect_timeout):
            tcp = await trio.open_tcp_stream(host, port)
    except trio.TooSlowError as exc:
        raise ChannelClosed(
            f"connecting to {url} failed: no TCP connection within {connect_timeout:g} s"
        ) from exc
    except OSError as exc:
        raise ChannelClosed(f"connecting to {url} failed: {describe(exc)}") from exc
    if not secure:
        return tcp
    stream = trio.SSLStream(
        tcp,
        ssl_context or ssl.create_default_context(),
        server_hostname=host,
        https_compatible=True,
    )
    try:
        with trio.fail_after(connect_timeout):
            await stream.do_handshake()
    except (trio.TooSlowError, trio.BrokenResourceError) as exc:
        await trio.aclose_forcefully(stream)
        why = _tls_failure(exc, connect_timeout)
        raise ChannelClosed(f"connecting to {url} failed: TLS handshake: {why}") from exc
    return stream


def _tls_failure(exc: Exception, connect_timeout: float) -> str:
    """Why a TLS handshake failed, for people (trio wraps the ``ssl`` error)."""
    if isinstance(exc, trio.TooSlowError):
        return f"no answer within {connect_timeout:g} s"
    cause = exc.__cause__
    if isinstance(cause, ssl.SSLCertVerificationError):
        return f"the server's certificate is not trusted ({cause.verify_message})"
    if isinstance(cause, ssl.SSLError):
        return cause.reason or str(cause)
    return describe(cause or exc)


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

    *connect_timeout* bounds the TCP connection with the TLS handshake, the opening
    handshake and the closing handshake, each. ``wss://`` URLs use *ssl_context* or
    the default context. Raises ``ChannelClosed``, saying which step failed and why, if
    the connection cannot be opened (refused, rejected, a certificate not trusted, no
    answer in time).
    """
    host, port, secure = _split_url(url)
    stream = await _open_stream(url, host, port, secure, connect_timeout, ssl_context)
    async with stream:
        try:
            with trio.fail_after(connect_timeout):
                ws = await connect_websocket(
                    stream, url, max_message_size=DEFAULT_MAX_FRAME_SIZE
                )
        except trio.TooSlowError as exc:
            raise ChannelClosed(
                f"connecting to {url} failed: the server accepted the connection but "
                f"did not answer the WebSocket handshake within {connect_timeout:g} s"
            ) from exc
        except (HandshakeFailed, OSError) as exc:
            raise ChannelClosed(f"connecting to {url} failed: {describe(exc)}") from exc
        try:
            yield WebSocketChannel(ws)
        finally:
            with trio.move_on_after(connect_timeout):
                await ws.aclose()
