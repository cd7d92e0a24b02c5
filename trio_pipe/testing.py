"""Test helpers: workers that live in the same process, over in-memory frame queues.

``open_memory_worker`` attaches a worker to a dispatcher without a socket or a
process, and hands the test the worker's end of the conversation: it sends and
receives protocol messages (or raw, possibly malformed, frames) itself. Timing rules
can then be tested under Trio's ``MockClock``, and faults (silence, garbage, a
vanished connection) injected exactly where a test wants them.

The connection costs no more than a transport with zero latency: each direction is
a queue of frames, and the dispatcher's end reads what is queued and writes a batch
without a task switch per frame, as it does over a socket (one write per batch, the
frames of one read acted on at once). The worker's end keeps a checkpoint per call
of :meth:`MemoryWorker.send` and :meth:`MemoryWorker.receive_frame`, as a test
expects; :meth:`MemoryWorker.send_frames` and :meth:`MemoryWorker.receive_frames`
move a batch with one.
"""

from __future__ import annotations

from collections import deque
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Mapping,
    Sequence,
)
from contextlib import asynccontextmanager
from typing import Any

import trio

from .auth import Claims
from .dispatch import Dispatcher
from .protocol import (
    Message,
    TaskDispatch,
    TaskResult,
    TaskResultMessage,
    TaskStatus,
    WorkerRegister,
    WorkerRegistered,
    WorkerRegistration,
    decode,
    encode,
)
from .transports import ChannelClosed

__all__ = ["MemoryChannel", "MemoryWorker", "connect_memory_worker", "open_memory_worker"]


class _FrameQueue:
    """One direction of an in-memory connection: unbounded, with the closing rules of
    a Trio memory channel. Closing the sending end lets the receiver drain what is
    queued, then raises ``trio.EndOfChannel``; closing the receiving end drops what is
    queued and makes sending raise ``trio.BrokenResourceError``. Using an end after
    closing it raises ``trio.ClosedResourceError``."""

    def __init__(self) -> None:
        self._frames: deque[str] = deque()
        self._receiver = trio.lowlevel.ParkingLot()
        self.send_closed = False
        self.receive_closed = False

    def put(self, frames: Iterable[str]) -> None:
        if self.send_closed:
            raise trio.ClosedResourceError("this end is closed")
        if self.receive_closed:
            raise trio.BrokenResourceError("the other end is closed")
        self._frames.extend(frames)
        if self._receiver:
            self._receiver.unpark_all()

    def close_send(self) -> None:
        self.send_closed = True
        self._receiver.unpark_all()

    def close_receive(self) -> None:
        self.receive_closed = True
        self._frames.clear()
        self._receiver.unpark_all()

    async def wait(self) -> bool:
        """Return once a frame is queued; raise as a memory channel's ``receive``
        would if there is none to come. True if it waited (a schedule point), False
        if a frame was there already (no schedule point: the caller decides)."""
        await trio.lowlevel.checkpoint_if_cancelled()
        waited = False
        while not self._frames:
            if self.receive_closed:
                raise trio.ClosedResourceError("this end is closed")
            if self.send_closed:
                raise trio.EndOfChannel
            await self._receiver.park()
            waited = True
        return waited

    def take(self) -> str:
        return self._frames.popleft()

    def take_all(self) -> list[str]:
        frames = list(self._frames)
        self._frames.clear()
        return frames


class MemoryChannel:
    """The dispatcher's end of an in-memory connection (a ``FrameChannel``)."""

    lenient = False

    def __init__(
        self,
        outgoing: _FrameQueue,
        incoming: _FrameQueue,
        *,
        peer: str = "memory",
    ) -> None:
        self.peer = peer
        self._outgoing = outgoing
        self._incoming = incoming
        self.close_reason: str | None = None
        self.closed_for_protocol_error = False

    async def receive(self) -> str:
        # A frame already queued is returned without a task switch: the reader acts
        # on everything the worker sent before it parks again.
        try:
            await self._incoming.wait()
        except (trio.EndOfChannel, trio.ClosedResourceError):
            raise ChannelClosed("the worker closed the connection") from None
        return self._incoming.take()

    async def send_all(self, frames: Sequence[str]) -> None:
        # The whole batch at once, with no task switch: like a write that fits the
        # socket buffer, it wakes the worker, which runs once the writer waits again.
        await trio.lowlevel.checkpoint_if_cancelled()
        try:
            self._outgoing.put(frames)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            raise ChannelClosed("the worker went away") from None

    async def aclose(self, reason: str = "", *, protocol_error: bool = False) -> None:
        self.close_reason = reason
        self.closed_for_protocol_error = protocol_error
        self._outgoing.close_send()
        self._incoming.close_receive()
        await trio.lowlevel.checkpoint()


class MemoryWorker:
    """The worker's end of an in-memory connection, driven by the test."""

    def __init__(
        self,
        outgoing: _FrameQueue,
        incoming: _FrameQueue,
        channel: MemoryChannel,
        worker_id: str,
    ) -> None:
        self.worker_id = worker_id
        self.channel = channel
        self._outgoing = outgoing
        self._incoming = incoming

    async def send(self, message: Message | str) -> None:
        """Send a message, or a raw frame (which may be malformed on purpose)."""
        frame = message if isinstance(message, str) else encode(message)
        await self.send_frames([frame])

    async def send_frames(self, frames: Sequence[str]) -> None:
        """Send raw frames, all at once (one checkpoint for the batch)."""
        await trio.lowlevel.checkpoint_if_cancelled()
        self._outgoing.put(frames)
        await trio.lowlevel.cancel_shielded_checkpoint()

    async def receive(self) -> Message:
        """The next message from the dispatcher; raises ``trio.EndOfChannel`` once the
        dispatcher has closed the connection."""
        return decode(await self.receive_frame())

    async def receive_frame(self) -> str:
        """The next frame from the dispatcher, undecoded."""
        waited = await self._incoming.wait()
        frame = self._incoming.take()
        if not waited:  # a checkpoint either way, as a memory channel's receive
            await trio.lowlevel.cancel_shielded_checkpoint()
        return frame

    async def receive_frames(self) -> list[str]:
        """Every frame the dispatcher has sent and this end not yet received, undecoded;
        waits for at least one. Raises as :meth:`receive_frame` does."""
        waited = await self._incoming.wait()
        frames = self._incoming.take_all()
        if not waited:
            await trio.lowlevel.cancel_shielded_checkpoint()
        return frames

    async def receive_task(self) -> TaskDispatch:
        """The next ``TaskDispatch``, skipping heartbeat acks and the like."""
        while True:
            message = await self.receive()
            if isinstance(message, TaskDispatch):
                return message

    async def complete(self, dispatch: TaskDispatch, payload: Any = None) -> None:
        await self.send(
            TaskResultMessage(
                TaskResult(
                    task_id=dispatch.task.id,
                    status=TaskStatus.COMPLETED,
                    payload=payload,
                    worker_id=self.worker_id,
                )
            )
        )

    async def serve(self, handler: Callable[[Any], Awaitable[Any]]) -> None:
        """Answer every dispatched task with ``Completed`` and ``await handler(payload)``,
        one at a time, until the dispatcher closes the connection."""
        try:
            while True:
                dispatch = await self.receive_task()
                await self.complete(dispatch, await handler(dispatch.task.payload))
        except (trio.EndOfChannel, trio.BrokenResourceError, trio.ClosedResourceError):
            return

    async def aclose(self) -> None:
        """Close the connection, as a worker that exits would."""
        self._outgoing.close_send()
        self._incoming.close_receive()
        await trio.lowlevel.checkpoint()


async def connect_memory_worker(
    dispatcher: Dispatcher,
    worker_id: str,
    supported_tasks: Sequence[str],
    *,
    max_concurrency: int = 1,
    tags: tuple[str, ...] = (),
    max_concurrency_by_type: Mapping[str, int] | None = None,
    register: bool = True,
    spawned: bool = False,
    claims: Claims | None = None,
) -> MemoryWorker:
    """Attach an in-memory worker to *dispatcher* and return its end.

    *claims* are what its credentials allow, as if an authenticator had accepted
    them in a handshake (``Dispatcher.serve_worker``).

    With ``register=True`` (the default) it sends ``WorkerRegister`` and waits for
    ``WorkerRegistered``; with ``spawned=True`` the dispatcher registers it itself, as
    for a stdio worker, and nothing is exchanged. With neither, the test speaks first.
    The worker lives until it is closed (:meth:`MemoryWorker.aclose`) or the
    dispatcher closes.
    """
    to_worker, from_worker = _FrameQueue(), _FrameQueue()
    channel = MemoryChannel(to_worker, from_worker, peer=f"memory:{worker_id}")
    worker = MemoryWorker(from_worker, to_worker, channel, worker_id)
    registration = WorkerRegistration(
        worker_id=worker_id,
        supported_tasks=tuple(supported_tasks),
        max_concurrency=max_concurrency,
        language="Python",
        tags=tags,
        max_concurrency_by_type=max_concurrency_by_type or {},
    )
    dispatcher.attach_worker(
        channel,
        registration=registration if spawned else None,
        transport="memory",
        claims=claims,
    )
    if register and not spawned:
        await worker.send(WorkerRegister(registration))
        reply = await worker.receive()
        if not isinstance(reply, WorkerRegistered):
            raise RuntimeError(f"expected WorkerRegistered, got {reply!r}")
    return worker


@asynccontextmanager
async def open_memory_worker(
    dispatcher: Dispatcher, worker_id: str, supported_tasks: Sequence[str], **options: Any
) -> AsyncIterator[MemoryWorker]:
    """:func:`connect_memory_worker` as a block: leaving it closes the worker's end,
    as a worker that exits would (the dispatcher sees it disconnect)."""
    worker = await connect_memory_worker(dispatcher, worker_id, supported_tasks, **options)
    try:
        yield worker
    finally:
        await worker.aclose()
