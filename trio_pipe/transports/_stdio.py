"""Lines on a pair of byte streams: a process's stdin and stdout, on either side.

:class:`LineChannel` is the :class:`~trio_pipe.transports.FrameChannel` of every
process-like transport: the dispatcher's end of a stdio, Docker or SSH worker
(:class:`StdioChannel` over a child's pipes, the SSH bridge's ``SshChannel`` over a
remote command's channel) and a Python worker's end on its own stdin and stdout. One
message a line; lines are split by the protocol's sans-IO
:class:`~trio_pipe.protocol.LineBuffer`. It is *lenient*: what does not decode is the
other side's own output, logged by the session layer, not an error ("any CLI can be a
worker").
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import trio

from ..protocol import DEFAULT_MAX_FRAME_SIZE, EOF, NEED_DATA, LineBuffer, Overlong
from ._channel import ChannelClosed, InputClosed

__all__ = ["LineChannel", "StdioChannel", "log_stderr"]

log = logging.getLogger("trio_pipe.stdio")

_READ_SIZE = 65536
_STREAM_ERRORS = (trio.BrokenResourceError, trio.ClosedResourceError, OSError)


class LineChannel:
    """A :class:`~trio_pipe.transports.FrameChannel` over *send_stream* (the other
    side's input) and *receive_stream* (its output), one frame per line.

    :meth:`receive` returns every non-blank line (a line over *max_frame_size* bytes
    is dropped and logged, never buffered whole); end of input raises
    :class:`InputClosed` after a last line that lacks its newline. :meth:`aclose`
    closes *send_stream* only -- end of input, which a well-behaved peer takes as the
    signal to exit -- so that what the peer still writes on its way out is read, not
    refused: *receive_stream* belongs to whoever opened the streams.
    """

    lenient = True

    def __init__(
        self,
        send_stream: trio.abc.SendStream,
        receive_stream: trio.abc.ReceiveStream,
        *,
        peer: str,
        name: str,
        max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
    ) -> None:
        self._send = send_stream
        self._receive = receive_stream
        self._lines = LineBuffer(max_line=max_frame_size)
        self._name = name
        self.peer = peer

    async def receive(self) -> bytes:
        lines = self._lines
        while True:
            line = lines.next_line()
            if isinstance(line, bytes):
                if line.strip():
                    return line
            elif line is NEED_DATA:
                try:
                    chunk = await self._receive.receive_some(_READ_SIZE)
                except _STREAM_ERRORS as exc:
                    raise InputClosed(f"{self._name}: reading failed: {exc!r}") from None
                if chunk:
                    lines.feed(chunk)
                else:
                    lines.feed_eof()
            elif line is EOF:
                raise InputClosed(f"{self._name}: end of input")
            elif isinstance(line, Overlong):
                size = "more" if line.size is None else str(line.size)
                log.warning(
                    "%s: dropped a line of %s bytes (over the limit)", self._name, size
                )

    async def send_all(self, frames: Sequence[str]) -> None:
        if not frames:
            return
        data = ("\n".join(frames) + "\n").encode()
        try:
            await self._send.send_all(data)
        except _STREAM_ERRORS as exc:
            raise ChannelClosed(f"{self._name}: writing failed: {exc!r}") from None

    async def aclose(self, reason: str = "", *, protocol_error: bool = False) -> None:
        if reason:
            log.info("%s: closing (%s)", self._name, reason)
        await self._send.aclose()


class StdioChannel(LineChannel):
    """A :class:`LineChannel` over a child process's stdin and stdout."""

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
            peer=f"pid {process.pid}",
            name=worker_id,
            max_frame_size=max_frame_size,
        )

    @property
    def returncode(self) -> int | None:
        """The process's exit status (negative: the signal that killed it), once it
        has exited."""
        return self._process.returncode


async def log_stderr(stream: trio.abc.ReceiveStream, worker_id: str) -> None:
    """A worker's stderr, line by line, into the log under ``trio_pipe.worker.<id>``,
    until end of stream (a broken stream ends it too: a log must not end a worker).
    A line over 64 KiB is logged as dropped."""
    worker_log = logging.getLogger(f"trio_pipe.worker.{worker_id}")
    lines = LineBuffer(max_line=_READ_SIZE)
    async with stream:
        while True:
            line = lines.next_line()
            if isinstance(line, bytes):
                worker_log.info("%s", line.decode(errors="replace"))
            elif isinstance(line, Overlong):
                worker_log.info("(a line of more than %d bytes, dropped)", _READ_SIZE)
            elif line is EOF:
                return
            else:
                try:
                    chunk = await stream.receive_some(_READ_SIZE)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    chunk = b""
                if chunk:
                    lines.feed(chunk)
                else:
                    lines.feed_eof()
