"""Line framing, sans-IO: newline-delimited JSON out of a byte stream.

In the manner of h11's receive buffer: :class:`LineBuffer` is fed bytes as they
arrive (:meth:`~LineBuffer.feed`, :meth:`~LineBuffer.feed_eof`) and hands out whole
lines (:meth:`~LineBuffer.next_line`); it never reads anything itself. Every
process-like transport of both sides -- a dispatcher's stdio, Docker and SSH workers,
a Python worker on stdin/stdout, the conformance kit -- splits lines with it.
"""

from __future__ import annotations

from typing import Final

import attrs

__all__ = ["EOF", "NEED_DATA", "LineBuffer", "Overlong"]


class _Sentinel:
    __slots__ = ("_name",)

    def __init__(self, name: str) -> None:
        self._name = name

    def __repr__(self) -> str:
        return self._name


NEED_DATA: Final = _Sentinel("NEED_DATA")
"""No whole line is buffered: feed more bytes (or the end of the stream)."""
EOF: Final = _Sentinel("EOF")
"""The stream has ended and every line in it has been handed out."""


@attrs.frozen
class Overlong:
    """A line longer than the limit was dropped (up to its newline, without ever being
    buffered whole); *size* is its length, or ``None`` if the stream ended inside it."""

    size: int | None


class LineBuffer:
    """Lines of at most *max_line* bytes (newline excluded) from a byte stream.

    A last line without its newline is handed out at the end of the stream. A longer
    line is dropped, and reported once as :class:`Overlong`; its bytes are not kept.
    """

    def __init__(self, *, max_line: int) -> None:
        if max_line < 1:
            raise ValueError(f"max_line must be >= 1, got {max_line}")
        self._max = max_line
        self._buffer = bytearray()
        self._start = 0  # where the next line begins in _buffer
        self._scanned = 0  # _buffer[_start:_scanned] holds no newline
        self._skipping = False  # inside an overlong line: drop up to its newline
        self._eof = False

    def feed(self, data: bytes | bytearray) -> None:
        if self._eof:
            raise RuntimeError("bytes fed after the end of the stream")
        if self._start:  # drop what was handed out, once, before growing
            del self._buffer[: self._start]
            self._scanned -= self._start
            self._start = 0
        self._buffer += data

    def feed_eof(self) -> None:
        self._eof = True

    def next_line(self) -> bytes | Overlong | _Sentinel:
        """The next line (without its newline), an :class:`Overlong` report,
        :data:`NEED_DATA` or :data:`EOF`."""
        buffer = self._buffer
        while True:
            end = buffer.find(b"\n", self._scanned)
            if end < 0:
                return self._partial()
            begin = self._start
            self._start = self._scanned = end + 1
            if self._skipping:
                self._skipping = False  # the rest of an overlong line, reported already
            elif end - begin > self._max:
                return Overlong(end - begin)
            else:
                return bytes(buffer[begin:end])

    def _partial(self) -> bytes | Overlong | _Sentinel:
        """No newline in what is buffered."""
        buffer = self._buffer
        pending = len(buffer) - self._start
        if pending > self._max and not self._skipping:
            self._skipping = True
            self._start = self._scanned = len(buffer)
            return Overlong(None if self._eof else pending)
        if self._skipping:
            self._start = self._scanned = len(buffer)
        elif self._eof and pending:
            line = bytes(buffer[self._start :])
            self._start = self._scanned = len(buffer)
            return line
        if self._eof:
            return EOF
        self._scanned = len(buffer)
        return NEED_DATA
