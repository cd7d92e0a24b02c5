"""Serving one worker connection: registration, reader, watchdog, writer and close.

```
serve_worker                   one per connection (sessions nursery, or a supervisor)
└── record.cancel_scope        cancelled to end the session (remove, replace, writer end)
    ├── (serve_worker itself)  the reader: decodes each frame, hands it to the scheduler
    ├── watchdog               ends the reader after heartbeat_timeout of silence
    └── writer                 sends the outbox, every pending frame per write
```

The scheduler decides everything; this module moves and decodes frames, and notices
endings. A frame that does not decode ends the session (close code 1008), but on a
*lenient* channel (lines on a process's stdout), where it is logged and skipped: a
line that is no message at all is the worker's own output, and a script that answers
``Shutdown`` with a half-filled result must not lose its other results.
However a session ends, :meth:`Scheduler.worker_gone` runs, so the worker's tasks are
retried or resolved at once. A session cancelled from outside (the dispatcher left
abruptly: an exception, a cancellation, Ctrl-C) first tells its worker
``Shutdown{graceful:false}`` and closes the connection, shielded, within
``close_timeout``.
"""

from __future__ import annotations

import logging

import trio

from .._errors import DispatcherClosed, PoolFull
from ..auth import Claims
from ..protocol import (
    Heartbeat,
    Message,
    NotAMessage,
    RemoteProtocolError,
    SessionState,
    Shutdown,
    WorkerRegister,
    WorkerRegistration,
    WorkerSession,
    decode,
    encode,
)
from ..transports import ChannelClosed, FrameChannel, Outbox, write_batches
from ._config import DispatcherConfig
from ._pool import RegistrationDenied, WorkerRecord
from ._scheduler import Scheduler

__all__ = ["serve_worker"]

log = logging.getLogger("trio_pipe.dispatcher")


async def serve_worker(
    scheduler: Scheduler,
    channel: FrameChannel,
    *,
    registration: WorkerRegistration | None = None,
    transport: str = "websocket",
    claims: Claims | None = None,
) -> None:
    """Run one worker's session over *channel* until it ends (see
    :meth:`Dispatcher.serve_worker`)."""
    config = scheduler.config
    session = WorkerSession(registration)
    if registration is None and not await _await_registration(scheduler, session, channel):
        return
    now = trio.current_time()
    record = WorkerRecord(
        session, Outbox(), trio.CancelScope(), transport, channel.peer, now, now
    )
    record.watched = registration is None
    record.claims = claims
    try:
        if claims is not None and (refusal := claims.refusal(_registered(session))):
            raise RegistrationDenied(refusal)
        replaced = scheduler.worker_joined(record)
    except (DispatcherClosed, PoolFull) as exc:
        await _close(config, channel, str(exc), protocol_error=False)
        return
    except RegistrationDenied as exc:
        scheduler.rejected += 1
        log.warning("registration from %s refused: %s", channel.peer, exc)
        await _close(config, channel, str(exc), protocol_error=True)
        return
    if replaced is not None:
        replaced.evict("replaced by a new connection with the same id")
    reason = "dispatcher closed"
    ended = False  # on its own, or by our cancel scope: not cancelled from outside
    try:
        with record.cancel_scope:
            async with trio.open_nursery() as nursery:
                reading = trio.CancelScope()
                nursery.start_soon(_write_loop, config, record, channel)
                nursery.start_soon(_watchdog, config, record, reading)
                try:
                    reason = await _read_loop(scheduler, record, channel, reading)
                except trio.Cancelled:
                    _hurry_write(config, record)
                    raise
                nursery.cancel_scope.cancel()
        ended = True
        if record.evicted:
            await _close(config, channel, record.close_reason or "", protocol_error=False)
    finally:
        if not ended:
            await _abort(config, record, channel)
        scheduler.worker_gone(record, record.close_reason or reason)


def _registered(session: WorkerSession) -> WorkerRegistration:
    assert session.registration is not None
    return session.registration


async def _await_registration(
    scheduler: Scheduler, session: WorkerSession, channel: FrameChannel
) -> bool:
    config = scheduler.config
    with trio.move_on_after(config.registration_timeout):
        try:
            message = None
            while message is None:
                message = _decode(config, channel, await channel.receive(), channel.peer)
            if isinstance(message, WorkerRegister):
                _check_registration(config, message.registration)
            session.receive(message)
            return True
        except RemoteProtocolError as exc:
            scheduler.rejected += 1
            log.warning("connection from %s broke the protocol: %s", channel.peer, exc)
            await _close(config, channel, exc.reason, protocol_error=True)
            return False
        except ChannelClosed:
            return False
    await _close(config, channel, "no WorkerRegister in time", protocol_error=True)
    return False


async def _read_loop(
    scheduler: Scheduler,
    record: WorkerRecord,
    channel: FrameChannel,
    reading: trio.CancelScope,
) -> str:
    """Hand the worker's messages to the scheduler until the session ends (or the
    watchdog cancels *reading*); return why it ended. Only the worker's fault
    (``RemoteProtocolError``) closes its connection with 1008; a ``LocalProtocolError``
    is a bug of ours and propagates."""
    with reading:
        while True:
            try:
                frame = await channel.receive()
                message = _decode(scheduler.config, channel, frame, record.worker_id)
                if message is None:
                    continue
                record.last_seen = trio.current_time()
                record.watched = record.watched or isinstance(message, Heartbeat)
                if isinstance(message, WorkerRegister):  # a spawned worker's own
                    _check_registration(scheduler.config, message.registration)
                scheduler.on_message(record, message)
            except RemoteProtocolError as exc:
                scheduler.rejected += 1
                log.warning("worker %s broke the protocol: %s", record.worker_id, exc)
                await _close(scheduler.config, channel, exc.reason, protocol_error=True)
                return f"protocol error: {exc.reason}"
            except ChannelClosed as exc:
                return f"connection closed: {exc}"
    timeout = scheduler.config.heartbeat_timeout
    log.warning("worker %s silent for %s s: declared dead", record.worker_id, timeout)
    return f"no heartbeat or message for {timeout} s"


def _decode(
    config: DispatcherConfig, channel: FrameChannel, frame: str | bytes, who: str
) -> Message | None:
    """The message in *frame*. On a lenient channel, a frame that does not decode is
    logged (under *who*) and ``None``; on any other, ``RemoteProtocolError``. (Not a
    coroutine around ``receive``: no extra frame per message on the hot path.)"""
    try:
        return decode(
            frame, max_size=config.max_frame_size, max_depth=config.max_json_depth
        )
    except NotAMessage:
        if not channel.lenient:
            raise
        text = frame if isinstance(frame, str) else frame.decode(errors="replace")
        log.info("%s: %s", who, text)
    except RemoteProtocolError as exc:
        if not channel.lenient:
            raise
        log.warning("%s: ignored a malformed message: %s", who, exc)
    return None


def _check_registration(config: DispatcherConfig, registration: WorkerRegistration) -> None:
    """Raise :class:`RemoteProtocolError` saying which limit *registration* exceeds:
    how many task types or tags, how long one is, how much concurrency it declares
    (docs/limits.md). What a worker declares is stored and consulted for as long as
    it is connected: the limits bound that."""
    limits = registration.max_concurrency_by_type
    for what, names, most in (
        ("task types", registration.supported_tasks, config.max_task_types),
        ("tags", registration.tags, config.max_tags),
        ("per-type limits", tuple(limits), config.max_task_types),
    ):
        if len(names) > most:
            raise RemoteProtocolError(
                f"registration declares {len(names)} {what} (the limit is {most})"
            )
        longest = max(names, key=len, default="")
        if len(longest) > config.max_name_length:
            raise RemoteProtocolError(
                f"registration declares a name of {len(longest)} characters among its "
                f"{what}, {longest[:32]!r}... (the limit is {config.max_name_length})"
            )
    most = config.max_worker_concurrency
    if registration.max_concurrency > most:
        raise RemoteProtocolError(
            f"registration declares maxConcurrency {registration.max_concurrency} "
            f"(the limit is {most})"
        )


async def _watchdog(
    config: DispatcherConfig, record: WorkerRecord, reading: trio.CancelScope
) -> None:
    """Cancel *reading* once a watched worker has been silent for
    ``heartbeat_timeout``. The reader only notes the time of each message: moving a
    cancel scope's deadline per message would cost more than the message."""
    timeout = config.heartbeat_timeout
    while True:
        now = trio.current_time()
        if not record.watched:
            await trio.sleep_until(now + timeout)  # a spawned worker, until it beats
        elif now < record.last_seen + timeout:
            await trio.sleep_until(record.last_seen + timeout)
        else:
            reading.cancel()
            return


async def _write_loop(
    config: DispatcherConfig, record: WorkerRecord, channel: FrameChannel
) -> None:
    """Send everything queued for the worker, as many frames per write as are
    pending; when the outbox is closed (graceful shutdown), close the connection.
    Writes are shielded (see :func:`write_batches`): a cancelled session waits for
    the one under way, at most ``close_timeout`` more (:func:`_hurry_write`)."""
    try:
        writes = write_batches(
            channel, record.outbox.take, config.send_timeout, state=record
        )
        if await writes:
            record.close_reason = "closed by the dispatcher"
            await _close(config, channel, "dispatcher shutting down", protocol_error=False)
        elif not record.evicted:  # (else the write was cut short: its reason stands)
            record.close_reason = f"a send did not complete within {config.send_timeout} s"
    except ChannelClosed as exc:
        if not record.evicted:
            record.close_reason = f"connection lost while sending: {exc}"
    record.cancel_scope.cancel()


def _hurry_write(config: DispatcherConfig, record: WorkerRecord) -> None:
    """The session is being cancelled: give a write under way (shielded, so that it
    is not cut in half) at most ``close_timeout`` more."""
    scope = record.write_scope
    if scope is not None:
        scope.deadline = min(scope.deadline, trio.current_time() + config.close_timeout)


async def _abort(
    config: DispatcherConfig, record: WorkerRecord, channel: FrameChannel
) -> None:
    """The session was cancelled from outside: the dispatcher is being left abruptly.
    Tell the worker to stop now (``Shutdown{graceful:false}``: no reconnecting) and
    close the connection, shielded, within ``close_timeout``. After a write that was
    cut short, the connection can carry nothing more: it is only closed."""
    session = record.session
    if session.state is SessionState.CLOSED:
        return
    with trio.move_on_after(config.close_timeout, shield=True):
        if not record.writing:
            shutdown = Shutdown(graceful=False)
            session.send(shutdown)
            try:
                await channel.send_all([encode(shutdown)])
            except ChannelClosed:
                return
        await _close(config, channel, "dispatcher closed", protocol_error=False)


async def _close(
    config: DispatcherConfig, channel: FrameChannel, reason: str, *, protocol_error: bool
) -> None:
    with trio.move_on_after(config.close_timeout):
        try:
            await channel.aclose(reason, protocol_error=protocol_error)
        except ChannelClosed:
            pass
