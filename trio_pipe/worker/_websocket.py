"""The WebSocket transport for the worker: the dispatcher's own
:class:`~trio_pipe.transports.WebSocketChannel`, over a connected
:class:`WebSocketStream` (the sans-IO client protocol of ``websockets`` driven on a
Trio stream)."""

from __future__ import annotations

import re
import ssl
import urllib.parse
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio

from .._errors import ChannelClosed, HandshakeFailed, HandshakeRefused, describe
from ..protocol import DEFAULT_MAX_FRAME_SIZE
from ..transports import FrameChannel, WebSocketChannel, connect_websocket

__all__ = [
    "FATAL_HTTP_STATUSES",
    "check_token",
    "check_websocket_url",
    "open_websocket_connection",
]

FATAL_HTTP_STATUSES = frozenset({401, 403})
"""Answers to the opening handshake that retrying with the same credential cannot
change: the worker stops (:class:`HandshakeRefused`) instead of reconnecting."""


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


def check_token(token: str) -> str:
    """Return *token* if it can go in an HTTP header; raise :class:`ValueError`
    otherwise (without showing it: it is a secret)."""
    if not isinstance(token, str):
        raise TypeError(f"token must be a string, got {type(token).__name__}")
    if not token:
        raise ValueError("the token is empty")
    if any(not 0x21 <= ord(char) <= 0x7E for char in token):
        raise ValueError(
            "the token may hold only printable ASCII characters without spaces"
        )
    return token


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
    except trio.TooSlowError as exc:
        await trio.aclose_forcefully(stream)
        raise ChannelClosed(
            f"TLS handshake with {host}:{port} failed: no answer within "
            f"{connect_timeout:g} s"
        ) from exc
    except trio.BrokenResourceError as exc:
        await trio.aclose_forcefully(stream)
        why = _tls_failure(exc) or describe(exc.__cause__ or exc)
        raise ChannelClosed(f"TLS handshake with {host}:{port} failed: {why}") from exc
    return stream


_SSL_LIBRARY_DETAIL = re.compile(r"^\[[^]]*\]\s*|\s*\(_ssl\.c:\d+\)$")


def _tls_failure(exc: BaseException) -> str | None:
    """Why TLS failed, for people, if an ``ssl`` error is behind *exc* (trio wraps
    it, and so does the WebSocket handshake that meets a TLS alert); else ``None``."""
    cause: BaseException | None = exc
    while cause is not None and not isinstance(cause, ssl.SSLError):
        cause = cause.__cause__
    if isinstance(cause, ssl.SSLCertVerificationError):
        return f"certificate verify failed: {cause.verify_message}"
    if isinstance(cause, ssl.SSLError):
        why = _SSL_LIBRARY_DETAIL.sub("", str(cause.strerror or cause))
        if cause.reason is not None and cause.reason.endswith("CERTIFICATE_REQUIRED"):
            why += " (the server requires a client certificate)"
        return why
    return None


def _split_url(url: str) -> tuple[str, int, bool]:
    parts = urllib.parse.urlsplit(check_websocket_url(url))
    assert parts.hostname is not None
    secure = parts.scheme == "wss"
    return parts.hostname, parts.port or (443 if secure else 80), secure


@asynccontextmanager
async def open_websocket_connection(
    url: str,
    *,
    connect_timeout: float,
    ssl_context: ssl.SSLContext | None = None,
    token: str | None = None,
) -> AsyncIterator[FrameChannel]:
    """Connect to *url*; yield the connection; close it on the way out.

    *connect_timeout* bounds the TCP connection with the TLS handshake, the opening
    handshake and the closing handshake, each. ``wss://`` URLs use *ssl_context* or
    the default context. A *token* goes in the opening handshake's ``Authorization:
    Bearer`` header. Raises :class:`HandshakeRefused` if the dispatcher answers the
    handshake with HTTP 401 or 403, and ``ChannelClosed``, saying which step failed
    and why, for every other reason the connection cannot be opened (refused, another
    HTTP status, a certificate not trusted, no answer in time).
    """
    host, port, secure = _split_url(url)
    headers = {"Authorization": f"Bearer {token}"} if token is not None else None
    stream = await _open_stream(url, host, port, secure, connect_timeout, ssl_context)
    async with stream:
        try:
            with trio.fail_after(connect_timeout):
                ws = await connect_websocket(
                    stream, url, max_message_size=DEFAULT_MAX_FRAME_SIZE, headers=headers
                )
        except trio.TooSlowError as exc:
            raise ChannelClosed(
                f"connecting to {url} failed: the server accepted the connection but "
                f"did not answer the WebSocket handshake within {connect_timeout:g} s"
            ) from exc
        except HandshakeRefused as exc:
            if exc.status in FATAL_HTTP_STATUSES:
                raise
            raise ChannelClosed(f"connecting to {url} failed: {exc}") from exc
        except (HandshakeFailed, OSError) as exc:
            # In TLS 1.3 a server refuses a client certificate after the client's
            # side of the TLS handshake is done: the alert comes here.
            why = f"connecting to {url} failed: {describe(exc)}"
            if secure:
                if (tls := _tls_failure(exc)) is not None:
                    why = f"TLS handshake with {host}:{port} failed: {tls}"
                elif isinstance(exc, HandshakeFailed):
                    # A server that refuses a client certificate may also just
                    # hang up, without an alert (as Trio's TLS streams do).
                    why += " (after the TLS handshake: a server that requires a "
                    why += "client certificate hangs up on a worker without one)"
            raise ChannelClosed(why) from exc
        try:
            yield WebSocketChannel(ws)
        finally:
            with trio.move_on_after(connect_timeout):
                await ws.aclose()
