"""The WebSocket transport over real sockets: the dispatcher's server side and the
worker's client side, against wsproto and trio-websocket peers. Fragments, pings,
frames that arrive with the handshake, close codes and reasons, size limits,
violations of the framing rules, TLS, slow and idle connections."""

from __future__ import annotations

import logging
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import pytest
import trio
import trio.testing
import trio_websocket
import trustme
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Ping,
    Pong,
    Request,
    TextMessage,
)

import trio_pipe
from trio_pipe import Task, WorkerEvent, WorkerEventKind
from trio_pipe.protocol import (
    WorkerRegister,
    WorkerRegistered,
    WorkerRegistration,
    decode,
    encode,
)
from trio_pipe.transports import ChannelClosed, FrameChannel
from trio_pipe.transports._websocket import (
    HandshakeFailed,
    WebSocketClosed,
    connect_websocket,
    serve_websocket_workers,
)
from trio_pipe.worker import Handlers
from trio_pipe.worker._websocket import open_websocket_connection
from trio_pipe.worker._worker import run_worker_on

WAIT = 10
REGISTER = encode(WorkerRegister(WorkerRegistration("raw", ("echo",), 1, "Python")))


class RawClient:
    """A WebSocket client made of wsproto and a TCP stream, to send what a
    well-behaved client library would not (or in pieces it would not choose)."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.ws = WSConnection(ConnectionType.CLIENT)
        self.events: list[object] = []

    async def send(self, *events: Any) -> None:
        await self.stream.send_all(b"".join(self.ws.send(event) for event in events))

    async def next_event(self) -> object:
        while not self.events:
            data = await self.stream.receive_some()
            self.ws.receive_data(data or None)
            self.events += self.ws.events()
        return self.events.pop(0)

    async def next_message(self) -> str:
        while True:
            event = await self.next_event()
            if isinstance(event, TextMessage):
                return event.data


@asynccontextmanager
async def raw_client(port: int, *, first_frames: bytes = b"") -> AsyncIterator[RawClient]:
    """Connected and upgraded; *first_frames* go in the same write as the request."""
    async with await trio.open_tcp_stream("127.0.0.1", port) as stream:
        client = RawClient(stream)
        request = client.ws.send(Request(host=f"127.0.0.1:{port}", target="/"))
        await stream.send_all(request + first_frames)
        assert isinstance(await client.next_event(), AcceptConnection)
        yield client


def masked_frame(first_byte: int, payload: bytes) -> bytes:
    """A client's frame as it would write it, masked with a zero key."""
    length = len(payload)
    if length < 126:
        header = bytes([first_byte, 0x80 | length])
    else:
        header = bytes([first_byte, 0x80 | 126]) + length.to_bytes(2, "big")
    return header + b"\0\0\0\0" + payload


async def close_of(client: RawClient) -> CloseConnection:
    while True:
        event = await client.next_event()
        if isinstance(event, CloseConnection):
            return event


# -- the dispatcher's side ------------------------------------------------------------


async def test_a_fragmented_message_and_a_ping_between_its_fragments() -> None:
    async with trio_pipe.open_dispatcher() as d:
        with trio.fail_after(WAIT):
            async with raw_client(d.port) as client:
                third = len(REGISTER) // 3
                await client.send(
                    TextMessage(data=REGISTER[:third], message_finished=False),
                    Ping(payload=b"still there?"),
                    TextMessage(data=REGISTER[third : 2 * third], message_finished=False),
                    TextMessage(data=REGISTER[2 * third :], message_finished=True),
                )
                assert await client.next_event() == Pong(payload=b"still there?")
                assert decode(await client.next_message()) == WorkerRegistered("raw")


async def test_frames_sent_with_the_upgrade_request_are_read() -> None:
    async with trio_pipe.open_dispatcher() as d:
        with trio.fail_after(WAIT):
            register = masked_frame(0x81, REGISTER.encode())
            async with raw_client(d.port, first_frames=register) as client:
                assert decode(await client.next_message()) == WorkerRegistered("raw")


async def test_a_ping_sent_with_the_upgrade_request_is_answered_first() -> None:
    async with trio_pipe.open_dispatcher() as d:
        with trio.fail_after(WAIT):
            first = masked_frame(0x89, b"early") + masked_frame(0x81, REGISTER.encode())
            async with raw_client(d.port, first_frames=first) as client:
                assert await client.next_event() == Pong(payload=b"early")
                assert decode(await client.next_message()) == WorkerRegistered("raw")


async def test_fragments_over_max_frame_size_together_close_with_1009() -> None:
    async with trio_pipe.open_dispatcher(max_frame_size=1000) as d:
        with trio.fail_after(WAIT):
            async with raw_client(d.port) as client:
                await client.send(
                    TextMessage(data="x" * 600, message_finished=False),
                    TextMessage(data="x" * 600, message_finished=True),
                )
                assert (await close_of(client)).code == 1009


async def test_a_close_frame_without_a_code_is_answered_without_one() -> None:
    async with trio_pipe.open_dispatcher() as d:
        with trio.fail_after(WAIT):
            async with raw_client(d.port) as client:
                await client.send(TextMessage(data=REGISTER))
                assert decode(await client.next_message()) == WorkerRegistered("raw")
                await client.stream.send_all(masked_frame(0x88, b""))
                assert (await close_of(client)).code == 1005
                assert await client.stream.receive_some() == b""


async def test_a_message_over_max_frame_size_closes_with_1009(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with trio_pipe.open_dispatcher(max_frame_size=1000) as d:
        with trio.fail_after(WAIT):
            async with raw_client(d.port) as client:
                await client.send(TextMessage(data=REGISTER))
                assert decode(await client.next_message()) == WorkerRegistered("raw")
                with caplog.at_level(logging.WARNING, logger="trio_pipe.websocket"):
                    await client.send(TextMessage(data="x" * 1001))
                    close = await close_of(client)
    assert close.code == 1009
    assert any("closed with 1009" in r.getMessage() for r in caplog.records)
    assert d.workers()[0].close_reason is not None
    assert "1009" in d.workers()[0].close_reason


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        (bytes([0x81, 0x01]) + b"x", 1002),  # a client must mask
        (masked_frame(0xC1, b"x"), 1002),  # a reserved bit
        (masked_frame(0x83, b"x"), 1002),  # an unknown opcode
        (masked_frame(0x09, b""), 1002),  # a fragmented control frame
        (masked_frame(0x89, b"x" * 126), 1002),  # a control frame over 125 bytes
        (masked_frame(0x80, b"x"), 1002),  # a continuation with nothing to continue
        (masked_frame(0x01, b"a") + masked_frame(0x81, b"b"), 1002),  # not a continuation
        (masked_frame(0x88, b"\x03"), 1002),  # a close payload of 1 byte
        (masked_frame(0x88, (1006).to_bytes(2, "big")), 1002),  # a reserved close code
        (masked_frame(0x81, b"\xc3\x28"), 1007),  # not UTF-8
        (masked_frame(0x01, b"\xc3") + masked_frame(0x80, b"\x28"), 1007),  # nor joined
        (masked_frame(0x88, (1000).to_bytes(2, "big") + b"\xff"), 1007),  # a close reason
    ],
)
async def test_a_framing_violation_closes_with_its_code_and_is_logged(
    frame: bytes, code: int, caplog: pytest.LogCaptureFixture
) -> None:
    async with trio_pipe.open_dispatcher() as d:
        with trio.fail_after(WAIT):
            async with raw_client(d.port) as client:
                with caplog.at_level(logging.WARNING, logger="trio_pipe.websocket"):
                    await client.stream.send_all(frame)
                    assert (await close_of(client)).code == code
    assert any(f"closed with {code}" in r.getMessage() for r in caplog.records)


async def test_a_binary_frame_closes_with_1008_and_the_reason() -> None:
    async with trio_pipe.open_dispatcher() as d:
        with trio.fail_after(WAIT):
            async with raw_client(d.port) as client:
                await client.send(TextMessage(data=REGISTER))
                assert decode(await client.next_message()) == WorkerRegistered("raw")
                await client.send(BytesMessage(data=b"{}"))
                close = await close_of(client)
    assert close.code == 1008
    assert close.reason is not None and "binary frame" in close.reason


async def test_the_workers_close_is_answered_and_its_code_and_reason_reported() -> None:
    async with trio_pipe.open_dispatcher() as d, d.events() as events:
        with trio.fail_after(WAIT):
            async with raw_client(d.port) as client:
                await client.send(TextMessage(data=REGISTER))
                assert decode(await client.next_message()) == WorkerRegistered("raw")
                await client.send(CloseConnection(code=4001, reason="going home"))
                answer = await close_of(client)
                assert (answer.code, await client.stream.receive_some()) == (4001, b"")
            async for event in events:
                if isinstance(event, WorkerEvent) and event.kind is WorkerEventKind.DEAD:
                    reason = event.reason
                    break
    assert reason is not None
    assert "closed with code 4001 (UNKNOWN): going home" in reason


async def test_the_dispatcher_closes_with_1000_when_it_shuts_down() -> None:
    closes: list[CloseConnection] = []

    async def worker(port: int, *, task_status: trio.TaskStatus[None]) -> None:
        async with raw_client(port) as client:
            await client.send(TextMessage(data=REGISTER))
            assert decode(await client.next_message()) == WorkerRegistered("raw")
            task_status.started()
            closes.append(await close_of(client))
            await client.send(closes[0].response())

    with trio.fail_after(WAIT):
        async with trio.open_nursery() as nursery:
            async with trio_pipe.open_dispatcher(shutdown_grace=0) as d:
                await nursery.start(worker, d.port)
    assert (closes[0].code, closes[0].reason) == (1000, "dispatcher shutting down")


async def test_a_silent_connection_is_dropped_after_the_handshake_timeout(
    autojump_clock: trio.testing.MockClock,
) -> None:
    handled: list[FrameChannel] = []

    async def handler(channel: FrameChannel) -> None:
        handled.append(channel)

    async with trio.open_nursery() as nursery:
        serve = partial(serve_websocket_workers, handler, "127.0.0.1", 0)
        (port,) = await nursery.start(partial(serve, handshake_timeout=5))
        async with await trio.open_tcp_stream("127.0.0.1", port) as stream:
            started = trio.current_time()
            assert await stream.receive_some() == b""  # closed on us
            assert trio.current_time() - started == pytest.approx(5)
        async with await trio.open_tcp_stream("127.0.0.1", port) as stream:
            await stream.send_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")  # no upgrade
            assert (await stream.receive_some()).startswith(b"HTTP/1.1 426")
        async with await trio.open_tcp_stream("127.0.0.1", port) as stream:
            await stream.send_all(b"\x16\x03\x01 not HTTP at all\r\n\r\n")
            assert await stream.receive_some() == b""  # closed without an answer
        nursery.cancel_scope.cancel()
    assert handled == []


async def test_idle_and_garbage_connections_do_not_keep_workers_out() -> None:
    async with trio_pipe.open_dispatcher() as d, trio.open_nursery() as nursery:
        streams = [await trio.open_tcp_stream("127.0.0.1", d.port) for _ in range(100)]
        for stream in streams[::2]:
            await stream.send_all(b"\x16\x03\x01 not HTTP at all\r\n\r\n")
        handlers = Handlers()

        @handlers.handler("echo")
        async def echo(payload: Any) -> Any:
            return payload

        connect = partial(open_websocket_connection, d.url, connect_timeout=WAIT)
        nursery.start_soon(partial(run_worker_on, connect, handlers, worker_id="ok"))
        with trio.fail_after(WAIT):
            assert await d.run(Task.new("echo", "through the crowd")) == "through the crowd"
        for stream in streams:
            await stream.aclose()
        nursery.cancel_scope.cancel()


# -- the worker's side ------------------------------------------------------------------


async def test_the_client_reads_frames_that_came_with_the_handshake_response() -> None:
    async def server(stream: trio.SocketStream) -> None:
        ws = WSConnection(ConnectionType.SERVER)
        while True:
            ws.receive_data(await stream.receive_some())
            if any(isinstance(event, Request) for event in ws.events()):
                break
        reply = ws.send(AcceptConnection()) + ws.send(TextMessage(data="hello"))
        reply += ws.send(Ping(payload=b"p")) + ws.send(TextMessage(data="again"))
        await stream.send_all(reply)
        ws.receive_data(await stream.receive_some())
        assert list(ws.events()) == [Pong(payload=b"p")]
        await stream.send_all(ws.send(CloseConnection(code=1001, reason="bye")))
        await trio.sleep_forever()

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(trio.serve_tcp, server, 0)
        port = listeners[0].socket.getsockname()[1]
        with trio.fail_after(WAIT):
            async with await trio.open_tcp_stream("127.0.0.1", port) as stream:
                ws = await connect_websocket(stream, "ws://127.0.0.1/")
                assert [await ws.receive(), await ws.receive()] == ["hello", "again"]
                with pytest.raises(WebSocketClosed) as closed:
                    await ws.receive()
                assert (closed.value.code, closed.value.reason) == (1001, "bye")
        nursery.cancel_scope.cancel()


# -- TLS ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls() -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A server context with a certificate for 127.0.0.1, and a client context that
    trusts it."""
    authority = trustme.CA()
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("127.0.0.1").configure_cert(server)
    client = ssl.create_default_context()
    authority.configure_trust(client)
    return server, client


async def test_wss_between_the_dispatcher_and_the_python_worker(
    tls: tuple[ssl.SSLContext, ssl.SSLContext],
) -> None:
    server_context, client_context = tls
    handlers = Handlers()

    @handlers.handler("echo")
    async def echo(payload: Any) -> Any:
        return payload

    async with (
        trio_pipe.open_dispatcher(ssl_context=server_context) as d,
        trio.open_nursery() as nursery,
    ):
        assert d.url.startswith("wss://")
        connect = partial(
            open_websocket_connection,
            d.url,
            connect_timeout=WAIT,
            ssl_context=client_context,
        )
        nursery.start_soon(partial(run_worker_on, connect, handlers, worker_id="tls"))
        with trio.fail_after(WAIT):
            assert await d.run(Task.new("echo", {"big": "y" * 100_000})) == {
                "big": "y" * 100_000
            }
        nursery.cancel_scope.cancel()


async def test_wss_with_a_trio_websocket_client(
    tls: tuple[ssl.SSLContext, ssl.SSLContext],
) -> None:
    server_context, client_context = tls
    async with trio_pipe.open_dispatcher(ssl_context=server_context) as d:
        with trio.fail_after(WAIT):
            async with trio_websocket.open_websocket_url(
                d.url, ssl_context=client_context
            ) as ws:
                await ws.send_message(REGISTER)
                assert decode(await ws.get_message()) == WorkerRegistered("raw")


async def test_a_client_that_does_not_trust_the_certificate_cannot_connect(
    tls: tuple[ssl.SSLContext, ssl.SSLContext],
) -> None:
    server_context, _ = tls
    async with trio_pipe.open_dispatcher(ssl_context=server_context) as d:
        with (
            trio.fail_after(WAIT),
            pytest.raises(ChannelClosed),
        ):
            async with open_websocket_connection(
                d.url, connect_timeout=WAIT, ssl_context=ssl.create_default_context()
            ):
                pass


@pytest.mark.parametrize(
    ("url", "request_line", "host"),
    [
        ("ws://[::1]:9876/path?q=1", "GET /path?q=1 HTTP/1.1", "Host: [::1]:9876"),
        ("ws://example.org/", "GET / HTTP/1.1", "Host: example.org"),
    ],
)
async def test_the_client_handshake_names_the_host_and_resource_of_the_url(
    url: str, request_line: str, host: str
) -> None:
    client, server = trio.testing.memory_stream_pair()
    request = b""

    async def read_request_then_hang_up() -> None:
        nonlocal request
        while b"\r\n\r\n" not in request:
            request += await server.receive_some()
        await server.aclose()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(read_request_then_hang_up)
        with pytest.raises(HandshakeFailed):
            await connect_websocket(client, url)
    lines = request.decode().split("\r\n")
    assert lines[0] == request_line
    assert host in lines
