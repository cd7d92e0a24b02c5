"""WebSocket framing (RFC 6455, section 5) after the opening handshake, sans-IO.

Bytes in, whole messages and control frames out; messages out, bytes to write. No
extension is ever negotiated, so every reserved bit must be clear. wsproto does the
opening handshake (``_websocket.py``); it frames too, but spends 10-17 µs of Python per
small frame, where this codec parses a frame with one header read, one XOR of the
payload as a big integer and one UTF-8 decode (see "Performance decisions" in
docs/architecture.md).

A frame is parsed only once it has arrived whole; a data frame that would make its
message longer than *max_message_size* fails the connection at its header, before
its payload is buffered.
"""

from __future__ import annotations

import os
import struct
from typing import Final, NamedTuple

from wsproto.frame_protocol import LOCAL_ONLY_CLOSE_REASONS, CloseReason

__all__ = ["Close", "FrameCodec", "FrameError", "Ping", "Pong"]

_CONTINUATION, _TEXT, _BINARY = 0x0, 0x1, 0x2
_CLOSE, _PING, _PONG = 0x8, 0x9, 0xA
_FIN: Final = 0x80
_MASKED: Final = 0x80
_MAX_CONTROL_PAYLOAD: Final = 125
_KNOWN_CODES: Final = frozenset(CloseReason) - frozenset(LOCAL_ONLY_CLOSE_REASONS)
_MAX_CLOSE_REASON_BYTES: Final = _MAX_CONTROL_PAYLOAD - 2


class FrameError(Exception):
    """The peer broke RFC 6455: fail the connection with ``code``."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class Ping(NamedTuple):
    payload: bytes


class Pong(NamedTuple):
    payload: bytes


class Close(NamedTuple):
    """The peer's close frame (``code`` 1005 if it carried none)."""

    code: int
    reason: str


Event = str | bytes | Ping | Pong | Close


class FrameCodec:
    """One endpoint's framing: *client* endpoints mask what they send and must
    receive unmasked frames; servers the other way round."""

    def __init__(self, *, client: bool, max_message_size: int) -> None:
        self._client = client
        self._max_message_size = max_message_size
        self._buffer = bytearray()
        self._fragments: list[bytes] = []
        self._fragmented: int | None = None  # the opcode of a message in fragments
        self._fragments_size = 0

    # -- receiving ---------------------------------------------------------------

    def receive(self, data: bytes | bytearray) -> list[Event]:
        """Every message and control frame completed by *data*, in order. Raises
        :class:`FrameError` at the first violation (what came before it is lost)."""
        buffer = self._buffer
        buffer += data
        events: list[Event] = []
        start = 0
        while (frame := self._next_frame(start)) is not None:
            opcode, fin, payload, start = frame
            event = self._on_frame(opcode, fin, payload)
            if event is not None:
                events.append(event)
        del buffer[:start]
        return events

    def _next_frame(self, start: int) -> tuple[int, bool, bytes, int] | None:
        """The frame at *start* in the buffer, once whole: opcode, FIN, unmasked
        payload, and where the next frame starts."""
        buffer = self._buffer
        if len(buffer) - start < 2:
            return None
        first, second = buffer[start], buffer[start + 1]
        opcode, length = first & 0x0F, second & 0x7F
        self._check_header(first, second)
        position = start + 2
        if length >= 126:
            size = 2 if length == 126 else 8
            if len(buffer) - position < size:
                return None
            length = int.from_bytes(buffer[position : position + size], "big")
            self._check_length(length, size)
            position += size
        if opcode < _CLOSE:
            self._check_message_size(length)
        end = position + length + (0 if self._client else 4)
        if len(buffer) < end:
            return None
        if self._client:
            payload = bytes(buffer[position:end])
        else:
            payload = _xor(
                buffer[position + 4 : end], bytes(buffer[position : position + 4])
            )
        return opcode, bool(first & _FIN), payload, end

    def _check_header(self, first: int, second: int) -> None:
        opcode, length = first & 0x0F, second & 0x7F
        if first & 0x70:
            raise FrameError(CloseReason.PROTOCOL_ERROR, "reserved bits set")
        if bool(second & _MASKED) == self._client:
            raise FrameError(
                CloseReason.PROTOCOL_ERROR,
                "masked frame from a server"
                if self._client
                else "unmasked frame from a client",
            )
        if opcode >= _CLOSE:
            if opcode > _PONG:
                raise FrameError(CloseReason.PROTOCOL_ERROR, f"unknown opcode {opcode:#x}")
            if not first & _FIN or length > _MAX_CONTROL_PAYLOAD:
                raise FrameError(
                    CloseReason.PROTOCOL_ERROR, "fragmented or long control frame"
                )
        elif opcode > _BINARY:
            raise FrameError(CloseReason.PROTOCOL_ERROR, f"unknown opcode {opcode:#x}")
        elif (opcode == _CONTINUATION) != (self._fragmented is not None):
            raise FrameError(
                CloseReason.PROTOCOL_ERROR,
                "continuation without a message"
                if opcode == _CONTINUATION
                else "new message inside a fragmented one",
            )

    def _check_length(self, length: int, size: int) -> None:
        """Lengths use the fewest bytes, and the most significant bit is clear."""
        if length < (126 if size == 2 else 65536) or length >= 2**63:
            raise FrameError(CloseReason.PROTOCOL_ERROR, "bad payload length encoding")

    def _check_message_size(self, length: int) -> None:
        if self._fragments_size + length > self._max_message_size:
            raise FrameError(CloseReason.MESSAGE_TOO_BIG, "message too big")

    def _on_frame(self, opcode: int, fin: bool, payload: bytes) -> Event | None:
        if opcode == _TEXT and fin:  # the common case: a whole message in one frame
            return _text(payload)
        if opcode >= _CLOSE:
            return _control(opcode, payload)
        if opcode != _CONTINUATION:
            self._fragmented = opcode
        self._fragments.append(payload)
        self._fragments_size += len(payload)
        if not fin:
            return None
        message = b"".join(self._fragments)
        kind = self._fragmented
        self._fragments, self._fragments_size, self._fragmented = [], 0, None
        return _text(message) if kind == _TEXT else message

    # -- sending -----------------------------------------------------------------

    def message(self, data: str | bytes) -> bytes:
        """One whole message, in one frame."""
        if isinstance(data, str):
            return self._frame(_TEXT, data.encode())
        return self._frame(_BINARY, data)

    def ping(self, payload: bytes = b"") -> bytes:
        return self._frame(_PING, payload)

    def pong(self, payload: bytes) -> bytes:
        return self._frame(_PONG, payload)

    def close(self, code: int | None = None, reason: str = "") -> bytes:
        """A close frame: without a status if *code* is None (or 1005, "no status");
        *reason* is cut to fit a control frame."""
        if code is None or code == CloseReason.NO_STATUS_RCVD:
            return self._frame(_CLOSE, b"")
        data = reason.encode()[:_MAX_CLOSE_REASON_BYTES].decode(errors="ignore").encode()
        return self._frame(_CLOSE, struct.pack("!H", code) + data)

    def _frame(self, opcode: int, payload: bytes) -> bytes:
        length = len(payload)
        mask_bit = _MASKED if self._client else 0
        if length < 126:
            header = bytes((_FIN | opcode, mask_bit | length))
        elif length < 65536:
            header = struct.pack("!BBH", _FIN | opcode, mask_bit | 126, length)
        else:
            header = struct.pack("!BBQ", _FIN | opcode, mask_bit | 127, length)
        if not self._client:
            return header + payload
        key = os.urandom(4)
        return header + key + _xor(payload, key)


def _xor(data: bytes | bytearray, key: bytes) -> bytes:
    """*data* masked (or unmasked) with the 4-byte *key*: one XOR of two big integers
    instead of a Python loop over the bytes."""
    length = len(data)
    if not length:
        return b""
    stream = (key * (length // 4 + 1))[:length]
    masked = int.from_bytes(data, "little") ^ int.from_bytes(stream, "little")
    return masked.to_bytes(length, "little")


def _text(payload: bytes) -> str:
    try:
        return payload.decode()
    except UnicodeDecodeError:
        raise FrameError(
            CloseReason.INVALID_FRAME_PAYLOAD_DATA, "text is not UTF-8"
        ) from None


def _control(opcode: int, payload: bytes) -> Ping | Pong | Close:
    if opcode == _PING:
        return Ping(payload)
    if opcode == _PONG:
        return Pong(payload)
    if not payload:
        return Close(CloseReason.NO_STATUS_RCVD, "")
    if len(payload) == 1:
        raise FrameError(CloseReason.PROTOCOL_ERROR, "close frame of 1 byte")
    code = int.from_bytes(payload[:2], "big")
    if code not in _KNOWN_CODES and not 3000 <= code <= 4999:
        raise FrameError(CloseReason.PROTOCOL_ERROR, f"invalid close code {code}")
    try:
        return Close(code, payload[2:].decode())
    except UnicodeDecodeError:
        raise FrameError(
            CloseReason.INVALID_FRAME_PAYLOAD_DATA, "close reason is not UTF-8"
        ) from None
