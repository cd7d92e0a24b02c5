"""Processes as workers: newline-delimited JSON on the process's stdin and stdout.

"Any CLI can be a worker": a line on stdout that is a protocol message is acted on; any
other line (blank, not JSON, JSON without a ``"type"``) is the worker's own output and
goes to the log. A line that looks like a message but is malformed is logged and
skipped too -- a script that answers a ``Shutdown`` line with a half-filled result must
not take the session down -- while a well-formed message that breaks the session rules
still ends the session, as on any transport.
"""

from __future__ import annotations

import logging

import trio

from ..protocol import DEFAULT_MAX_FRAME_SIZE, Message, ProtocolError, decode
from ._channel import ChannelClosed

__all__ = ["LineReader", "StdioChannel"]

log = logging.getLogger("trio_pipe.stdio")

_NOT_A_MESSAGE = ("not JSON", "expected a JSON object", "missing message type")


class LineReader:
    """Lines from a byte stream; a line longer than *max_line* is dropped (logged)."""

    def __init__(self, stream: trio.abc.ReceiveStream, *, max_line: int, name: str) -> None:
        self._stream = stream
        self._max_line = max_line
        self._name = name
        self._buffer = bytearray()
        self._skipping = False  # inside an overlong line, until its newline

    async def readline(self) -> bytes:
        """The next line without its newline; raises EOFError at end of stream (a last
        unterminated line is returned first)."""
        while True:
            end = self._buffer.find(b"\n")
            if end >= 0:
                line = bytes(self._buffer[:end])
                del self._buffer[: end + 1]
                if self._skipping:
                    self._skipping = False
                    continue
                return line
            if len(self._buffer) > self._max_line:
                if not self._skipping:
                    log.warning(
                        "%s: dropped a line over %d bytes", self._name, self._max_line
                    )
                self._skipping = True
                self._buffer.clear()
            chunk = await self._stream.receive_some(65536)
            if not chunk:
                if self._buffer and not self._skipping:
                    line = bytes(self._buffer)
                    self._buffer.clear()
                    return line
                raise EOFError
            self._buffer += chunk


class StdioChannel:
    """A :class:`WorkerChannel` over a child process's stdin and stdout."""

    def __init__(
        self,
        process: trio.Process,
        *,
        worker_id: str,
        max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
    ) -> None:
        assert process.stdin is not None and process.stdout is not None
        self._stdin = process.stdin
        self._lines = LineReader(process.stdout, max_line=max_frame_size, name=worker_id)
        self._worker_id = worker_id
        self._max_frame_size = max_frame_size
        self.peer = f"pid {process.pid}"

    async def receive(self) -> Message:
        while True:
            try:
                line = await self._lines.readline()
            except EOFError:
                raise ChannelClosed("the process closed its stdout") from None
            except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                raise ChannelClosed(f"stdout failed: {exc!r}") from None
            if not line.strip():
                continue
            try:
                return decode(line, max_size=self._max_frame_size)
            except ProtocolError as exc:
                if exc.reason.startswith(_NOT_A_MESSAGE):
                    log.info("%s: %s", self._worker_id, line.decode(errors="replace"))
                else:
                    log.warning("%s: ignored a malformed message: %s", self._worker_id, exc)

    async def send_all(self, frames: list[str]) -> None:
        data = ("\n".join(frames) + "\n").encode()
        try:
            await self._stdin.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            raise ChannelClosed(f"stdin closed: {exc!r}") from None

    async def aclose(self, reason: str = "", *, protocol_error: bool = False) -> None:
        """Close the process's stdin: end of input, which a well-behaved worker takes as
        the signal to exit."""
        if reason:
            log.info("%s: closing stdin (%s)", self._worker_id, reason)
        await self._stdin.aclose()
