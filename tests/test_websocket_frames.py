"""The WebSocket frame codec (RFC 6455 framing, sans-IO), checked against wsproto:
what one writes the other reads, in both directions, and every breach of the framing
rules fails the connection with the close code RFC 6455 gives it."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from wsproto.connection import Connection, ConnectionType
from wsproto.events import BytesMessage, CloseConnection, Message, Ping, Pong, TextMessage

from trio_pipe.transports._wsframes import Close, FrameCodec, FrameError
from trio_pipe.transports._wsframes import Ping as CodecPing
from trio_pipe.transports._wsframes import Pong as CodecPong

LIMIT = 1 << 20


def pair(*, client: bool) -> tuple[FrameCodec, Connection]:
    """Our codec at one end, wsproto at the other."""
    ours = FrameCodec(client=client, max_message_size=LIMIT)
    theirs = Connection(ConnectionType.SERVER if client else ConnectionType.CLIENT)
    return ours, theirs


def wsproto_events(connection: Connection, data: bytes) -> list[object]:
    connection.receive_data(data)
    return list(connection.events())


def in_pieces(codec: FrameCodec, data: bytes, size: int) -> list[object]:
    events: list[object] = []
    for start in range(0, len(data), size):
        events += codec.receive(data[start : start + size])
    return events


sizes = st.sampled_from([0, 1, 125, 126, 127, 65535, 65536, 70000])


@settings(max_examples=60, deadline=None)
@given(client=st.booleans(), size=sizes, text=st.booleans(), piece=st.integers(1, 9000))
def test_what_we_write_wsproto_reads_and_the_other_way(
    client: bool, size: int, text: bool, piece: int
) -> None:
    ours, theirs = pair(client=client)
    message: str | bytes = "é" * (size // 2) if text else bytes(range(256)) * (size // 256)
    (received,) = wsproto_events(theirs, ours.message(message))
    assert isinstance(received, TextMessage if text else BytesMessage)
    assert isinstance(received, Message) and received.data == message
    sent = theirs.send((TextMessage if text else BytesMessage)(data=message))  # type: ignore[operator]
    assert in_pieces(ours, sent, piece) == [message]


@pytest.mark.parametrize("client", [True, False])
def test_fragments_are_joined_around_an_interleaved_ping(client: bool) -> None:
    ours, theirs = pair(client=client)
    data = theirs.send(TextMessage(data="hé", message_finished=False))
    data += theirs.send(Ping(payload=b"are you there"))
    data += theirs.send(TextMessage(data="llo", message_finished=True))
    data += theirs.send(BytesMessage(data=b"\x00", message_finished=False))
    data += theirs.send(BytesMessage(data=b"\x01", message_finished=True))
    assert in_pieces(ours, data, 3) == [CodecPing(b"are you there"), "héllo", b"\x00\x01"]


@pytest.mark.parametrize("client", [True, False])
def test_control_frames_both_ways(client: bool) -> None:
    ours, theirs = pair(client=client)
    assert wsproto_events(theirs, ours.pong(b"p")) == [Pong(payload=b"p")]
    assert wsproto_events(theirs, ours.ping(b"q")) == [Ping(payload=b"q")]
    close = ours.close(1008, "bad frame: " + "x" * 200)
    (event,) = wsproto_events(theirs, close)
    assert isinstance(event, CloseConnection)
    assert event.code == 1008
    assert event.reason is not None and len(event.reason.encode()) == 123
    assert ours.receive(theirs.send(CloseConnection(code=4001, reason="bye"))) == [
        Close(4001, "bye")
    ]
    _, again = pair(client=client)
    assert ours.receive(again.send(Pong(payload=b"x"))) == [CodecPong(b"x")]


def test_a_close_frame_without_a_status_means_1005() -> None:
    ours, _ = pair(client=True)
    assert ours.receive(b"\x88\x00") == [Close(1005, "")]
    frame = ours.close(1005)
    assert frame[:2] == b"\x88\x80" and len(frame) == 6  # a mask key, no status


def masked(first: int, payload: bytes, *, length: bytes | None = None) -> bytes:
    """A client's frame, masked with a zero key (so the payload reads as is)."""
    header = length if length is not None else bytes([0x80 | len(payload)])
    return bytes([first]) + header + b"\0\0\0\0" + payload


@pytest.mark.parametrize(
    ("frame", "code", "reason"),
    [
        (masked(0xC1, b"x"), 1002, "reserved bits"),
        (bytes([0x81, 0x01]) + b"x", 1002, "unmasked"),
        (masked(0x83, b"x"), 1002, "unknown opcode"),
        (masked(0x8B, b""), 1002, "unknown opcode"),
        (masked(0x09, b""), 1002, "control frame"),
        (masked(0x89, b"x" * 126, length=b"\xfe\x00\x7e"), 1002, "control frame"),
        (masked(0x80, b"x"), 1002, "continuation without"),
        (masked(0x01, b"a") + masked(0x81, b"b"), 1002, "inside a fragmented"),
        (masked(0x81, b"\xff"), 1007, "not UTF-8"),
        (masked(0x01, b"\xc3") + masked(0x80, b"\x28"), 1007, "not UTF-8"),
        (masked(0x88, b"\x03"), 1002, "1 byte"),
        (masked(0x88, struct.pack("!H", 999)), 1002, "invalid close code"),
        (masked(0x88, struct.pack("!H", 1006)), 1002, "invalid close code"),
        (masked(0x88, struct.pack("!H", 2000)), 1002, "invalid close code"),
        (masked(0x88, struct.pack("!H", 1000) + b"\xff"), 1007, "not UTF-8"),
        (masked(0x81, b"x" * 5, length=b"\xfe\x00\x05"), 1002, "length encoding"),
        (masked(0x82, b"", length=b"\xff" + b"\x80" + b"\0" * 7), 1002, "length encoding"),
    ],
)
def test_framing_violations_fail_with_their_close_code(
    frame: bytes, code: int, reason: str
) -> None:
    server = FrameCodec(client=False, max_message_size=LIMIT)
    with pytest.raises(FrameError) as failed:
        server.receive(frame)
    assert failed.value.code == code
    assert reason in failed.value.reason


def test_a_masked_frame_from_the_server_is_refused() -> None:
    client = FrameCodec(client=True, max_message_size=LIMIT)
    with pytest.raises(FrameError, match="masked frame from a server"):
        client.receive(masked(0x81, b"x"))


def test_a_message_over_the_limit_fails_at_its_header_with_1009() -> None:
    server = FrameCodec(client=False, max_message_size=100)
    header_only = bytes([0x82, 0xFF]) + (10**9).to_bytes(8, "big")
    with pytest.raises(FrameError) as failed:
        server.receive(header_only)
    assert failed.value.code == 1009
    fragments = masked(0x02, b"x" * 60) + masked(0x80, b"x" * 60)
    with pytest.raises(FrameError, match="too big"):
        FrameCodec(client=False, max_message_size=100).receive(fragments)
    assert FrameCodec(client=False, max_message_size=100).receive(
        masked(0x02, b"x" * 50) + masked(0x80, b"x" * 50)
    ) == [b"x" * 100]
