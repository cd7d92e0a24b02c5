"""Test helpers: workers that live in the same process, over memory channels.

``open_memory_worker`` attaches a worker to a dispatcher without a socket or a
process, and hands the test the worker's end of the conversation: it sends and
receives protocol messages (or raw, possibly malformed, frames) itself. Timing rules
can then be tested under Trio's ``MockClock``, and faults (silence, garbage, a
vanished connection) injected exactly where a test wants them.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import trio

from .dispatch import Dispatcher
from .protocol import (
    DEFAULT_MAX_FRAME_SIZE,
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


class MemoryChannel:
    """The dispatcher's end of an in-memory connection (a ``WorkerChannel``)."""

    def __init__(
        self,
        outgoing: trio.MemorySendChannel[str],
        incoming: trio.MemoryReceiveChannel[str],
        *,
        peer: str = "memory",
        max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
    ) -> None:
        self.peer = peer
        self._outgoing = outgoing
        self._incoming = incoming
        self._max_frame_size = max_frame_size
        self.close_reason: str | None = None
        self.closed_for_protocol_error = False

    async def receive(self) -> Message:
        try:
            frame = await self._incoming.receive()
        except (trio.EndOfChannel, trio.ClosedResourceError):
            raise ChannelClosed("the worker closed the connection") from None
        return decode(frame, max_size=self._max_frame_size)

    async def send_all(self, frames: list[str]) -> None:
        try:
            for frame in frames:
                await self._outgoing.send(frame)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            raise ChannelClosed("the worker went away") from None

    async def aclose(self, reason: str = "", *, protocol_error: bool = False) -> None:
        self.close_reason = reason
        self.closed_for_protocol_error = protocol_error
        await self._outgoing.aclose()
        await self._incoming.aclose()


class MemoryWorker:
    """The worker's end of an in-memory connection, driven by the test."""

    def __init__(
        self,
        outgoing: trio.MemorySendChannel[str],
        incoming: trio.MemoryReceiveChannel[str],
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
        await self._outgoing.send(frame)

    async def receive(self) -> Message:
        """The next message from the dispatcher; raises ``trio.EndOfChannel`` once the
        dispatcher has closed the connection."""
        return decode(await self.receive_frame())

    async def receive_frame(self) -> str:
        """The next frame from the dispatcher, undecoded."""
        return await self._incoming.receive()

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
        await self._outgoing.aclose()
        await self._incoming.aclose()


async def connect_memory_worker(
    dispatcher: Dispatcher,
    worker_id: str,
    supported_tasks: Sequence[str],
    *,
    max_concurrency: int = 1,
    tags: tuple[str, ...] = (),
    register: bool = True,
    spawned: bool = False,
) -> MemoryWorker:
    """Attach an in-memory worker to *dispatcher* and return its end.

    With ``register=True`` (the default) it sends ``WorkerRegister`` and waits for
    ``WorkerRegistered``; with ``spawned=True`` the dispatcher registers it itself, as
    for a stdio worker, and nothing is exchanged. With neither, the test speaks first.
    The worker lives until it is closed (:meth:`MemoryWorker.aclose`) or the
    dispatcher closes.
    """
    to_worker, worker_inbox = trio.open_memory_channel[str](math.inf)
    worker_outbox, from_worker = trio.open_memory_channel[str](math.inf)
    channel = MemoryChannel(to_worker, from_worker, peer=f"memory:{worker_id}")
    worker = MemoryWorker(worker_outbox, worker_inbox, channel, worker_id)
    registration = WorkerRegistration(
        worker_id=worker_id,
        supported_tasks=tuple(supported_tasks),
        max_concurrency=max_concurrency,
        language="Python",
        tags=tags,
    )
    dispatcher.attach_worker(
        channel, registration=registration if spawned else None, transport="memory"
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
