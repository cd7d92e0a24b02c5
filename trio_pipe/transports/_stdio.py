"""Processes as workers: newline-delimited JSON on the process's stdin and stdout.

"Any CLI can be a worker": a line on stdout that is a protocol message is acted on; any
other line (blank, not JSON, JSON without a ``"type"``) is the worker's own output and
goes to the log. A line that looks like a message but is malformed is logged and
skipped too -- a script that answers a ``Shutdown`` line with a half-filled result must
not take the session down -- while a well-formed message that breaks the session rules
still ends the session, as on any transport.

:class:`LineChannel` holds these semantics over any pair of byte streams;
:class:`StdioChannel` is it over a local process's pipes, and the SSH bridge's
``SshChannel`` over a remote process's channel.
"""

from __future__ import annotations

import logging

import trio

from ..protocol import DEFAULT_MAX_FRAME_SIZE, Message, ProtocolError, decode
from ._channel import ChannelClosed

__all__ = ["LineChannel", "LineReader", "StdioChannel", "log_stderr"]

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


class LineChannel:
    """A :class:`WorkerChannel` over a pair of byte streams carrying newline-delimited
    JSON: *send_stream* is the worker's input, *receive_stream* its output.

    The line semantics of every process-like transport (stdio, Docker, SSH) live here
    once; a transport only supplies the two streams (raising
    ``trio.BrokenResourceError`` / ``trio.ClosedResourceError`` when they fail) and a
    *peer* description.
    """

    def __init__(
        self,
        send_stream: trio.abc.SendStream,
        receive_stream: trio.abc.ReceiveStream,
        *,
        worker_id: str,
        peer: str,
        max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
    ) -> None:
        self._stdin = send_stream
        self._lines = LineReader(receive_stream, max_line=max_frame_size, name=worker_id)
        self._worker_id = worker_id
        self._max_frame_size = max_frame_size
        self.peer = peer

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


class StdioChannel(LineChannel):
    """A :class:`WorkerChannel` over a child process's stdin and stdout."""

    def __init__(
        self,
        process: trio.Process,
        *,
        worker_id: str,
        max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
    ) -> None:
        assert process.stdin is not None and process.stdout is not None
        self._process = process
        super().__init__(
            process.stdin,
            process.stdout,
            worker_id=worker_id,
            peer=f"pid {process.pid}",
            max_frame_size=max_frame_size,
        )

    @property
    def returncode(self) -> int | None:
        """The process's exit status (negative: the signal that killed it), once it
        has exited."""
        return self._process.returncode


async def log_stderr(stream: trio.abc.ReceiveStream, worker_id: str) -> None:
    """A worker's stderr, line by line, into the log under ``trio_pipe.worker.<id>``,
    until end of stream (a broken stream ends it too: a log must not end a worker)."""
    worker_log = logging.getLogger(f"trio_pipe.worker.{worker_id}")
    buffer = b""
    async with stream:
        while True:
            try:
                chunk = await stream.receive_some()
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                break
            if not chunk:
                break
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            if len(buffer) > 65536:  # no newline in sight: log what there is
                lines.append(buffer)
                buffer = b""
            for line in lines:
                worker_log.info("%s", line.decode(errors="replace"))
    if buffer:
        worker_log.info("%s", buffer.decode(errors="replace"))
