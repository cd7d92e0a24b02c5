"""``run_worker``: connect, register, serve, reconnect with backoff."""

from __future__ import annotations

import functools
import logging
import socket
from collections.abc import Iterable, Mapping

import trio

from .._backoff import backoff_delay
from .._errors import ChannelClosed, WorkerConnectionError
from .._validation import derive_worker_id
from ..protocol import validate_worker_id
from ._core import SessionEnd, WorkerConfig, register, serve_connection
from ._handlers import HandlerFunc
from ._transport import Connector
from ._websocket import check_websocket_url, open_websocket_connection

__all__ = [
    "DEFAULT_HEARTBEAT_INTERVAL",
    "DEFAULT_MAX_CONCURRENCY",
    "WorkerConnectionError",
    "default_worker_id",
    "run_worker",
    "run_worker_on",
]

DEFAULT_MAX_CONCURRENCY = 10
DEFAULT_HEARTBEAT_INTERVAL = 5.0  # seconds

logger = logging.getLogger("trio_pipe.worker")


def default_worker_id() -> str:
    """A fresh valid worker id, ``py-<hostname>-<8 hex digits>``."""
    return derive_worker_id("py", socket.gethostname() or "host")


async def run_worker(
    url: str,
    handlers: Mapping[str, HandlerFunc],
    *,
    worker_id: str | None = None,
    max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
    heartbeat_interval: float = DEFAULT_HEARTBEAT_INTERVAL,
    tags: Iterable[str] = (),
    reconnect: bool = True,
    backoff_initial: float = 0.1,
    backoff_max: float = 10.0,
    connect_timeout: float = 10.0,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve *handlers* to the dispatcher at *url* (``ws://`` or ``wss://``).

    Connects, registers as *worker_id* (default: :func:`default_worker_id`,
    generated once and kept across reconnections) supporting the task types of
    *handlers*, and calls ``task_status.started()`` once the first registration is
    acknowledged. Then runs each dispatched task in its own Trio task, at most
    *max_concurrency* at once, each cancelled at its ``timeoutMs`` deadline
    (counted from receipt) or on ``Kill``; sends a heartbeat every
    *heartbeat_interval* seconds and ``Backpressure`` when it fills up or frees up.

    Returns after the dispatcher's ``Shutdown``: graceful, once in-flight tasks have
    finished and their results are flushed; not graceful, once they have been
    cancelled (each reported ``Cancelled``, best effort).

    Connection handling: *connect_timeout* (seconds) bounds opening the connection,
    waiting for ``WorkerRegistered``, each write, and the closing flush. If the
    connection cannot be made, or is lost or closed by the dispatcher without
    ``Shutdown``, in-flight handlers are cancelled (their results cannot be
    delivered; the dispatcher re-queues the tasks) and, with *reconnect*, the worker
    reconnects after a delay drawn uniformly from ``[0, cap]`` where the cap starts
    at *backoff_initial* and doubles per failed attempt up to *backoff_max*; a
    successful registration resets it. Without *reconnect* it raises
    :class:`WorkerConnectionError` instead.

    Error handling: a handler's exception fails its task (``HANDLER_ERROR``) and
    nothing else; malformed frames from the dispatcher are logged and ignored.
    Invalid arguments raise :class:`ValueError` or :class:`TypeError` before any I/O.

    Cancellation: cancelling the caller cancels every handler (no results are sent)
    and closes the connection.
    """
    check_websocket_url(url)
    connect = functools.partial(
        open_websocket_connection, url, connect_timeout=connect_timeout
    )
    await run_worker_on(
        connect,
        handlers,
        worker_id=worker_id,
        max_concurrency=max_concurrency,
        heartbeat_interval=heartbeat_interval,
        tags=tags,
        reconnect=reconnect,
        backoff_initial=backoff_initial,
        backoff_max=backoff_max,
        connect_timeout=connect_timeout,
        task_status=task_status,
    )


def _check_handlers(handlers: Mapping[str, HandlerFunc]) -> dict[str, HandlerFunc]:
    """A copy of *handlers* as a dict; raise TypeError/ValueError if it is unusable."""
    if not isinstance(handlers, Mapping):
        raise TypeError(f"handlers must be a Handlers or a Mapping, got {handlers!r}")
    table = dict(handlers)
    if not table:
        raise ValueError("a worker needs at least one handler")
    for task_type, fn in table.items():
        if not isinstance(task_type, str) or not task_type or not callable(fn):
            raise TypeError(f"bad handler entry {task_type!r}: {fn!r}")
    return table


def _make_config(
    worker_id: str | None,
    max_concurrency: int,
    heartbeat_interval: float,
    tags: Iterable[str],
    backoff_initial: float,
    backoff_max: float,
    connect_timeout: float,
) -> WorkerConfig:
    if isinstance(max_concurrency, bool) or not isinstance(max_concurrency, int):
        raise TypeError(f"max_concurrency must be an int, got {max_concurrency!r}")
    if max_concurrency < 1:
        raise ValueError(f"max_concurrency must be >= 1, got {max_concurrency}")
    for name, value in (
        ("heartbeat_interval", heartbeat_interval),
        ("backoff_initial", backoff_initial),
        ("connect_timeout", connect_timeout),
    ):
        if not value > 0:
            raise ValueError(f"{name} must be > 0 seconds, got {value!r}")
    if not backoff_max >= backoff_initial:
        raise ValueError(
            f"backoff_max ({backoff_max!r}) must be >= "
            f"backoff_initial ({backoff_initial!r})"
        )
    if isinstance(tags, str):
        raise TypeError("tags must be an iterable of strings, not a string")
    tag_tuple = tuple(tags)
    if not all(isinstance(tag, str) for tag in tag_tuple):
        raise TypeError(f"tags must be strings, got {tag_tuple!r}")
    return WorkerConfig(
        worker_id=validate_worker_id(
            worker_id if worker_id is not None else default_worker_id()
        ),
        max_concurrency=max_concurrency,
        heartbeat_interval=heartbeat_interval,
        tags=tag_tuple,
        connect_timeout=connect_timeout,
    )


async def run_worker_on(
    connect: Connector,
    handlers: Mapping[str, HandlerFunc],
    *,
    worker_id: str | None = None,
    max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
    heartbeat_interval: float = DEFAULT_HEARTBEAT_INTERVAL,
    tags: Iterable[str] = (),
    reconnect: bool = True,
    backoff_initial: float = 0.1,
    backoff_max: float = 10.0,
    connect_timeout: float = 10.0,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """:func:`run_worker` over any transport: *connect* opens one connection per call.

    Same arguments and behaviour as :func:`run_worker`, except that opening the
    connection is *connect*'s business (and its own timeout).
    """
    table = _check_handlers(handlers)
    config = _make_config(
        worker_id,
        max_concurrency,
        heartbeat_interval,
        tags,
        backoff_initial,
        backoff_max,
        connect_timeout,
    )
    supported = tuple(table)
    started_at = trio.current_time()
    failures = 0
    registered_once = False
    while True:
        end: SessionEnd | None = None
        try:
            async with connect() as conn:
                # Nothing here raises ChannelClosed: a connector that runs a nursery
                # would wrap it in an ExceptionGroup on the way out.
                try:
                    registered = await register(conn, config, supported)
                except ChannelClosed as exc:
                    end = SessionEnd(shutdown=False, reason=str(exc))
                else:
                    logger.info(
                        "registered as %s for %s", config.worker_id, list(supported)
                    )
                    failures = 0
                    if not registered_once:
                        registered_once = True
                        task_status.started()
                    end = await serve_connection(
                        conn, table, config, started_at=started_at, registered=registered
                    )
                    if end.shutdown:
                        with trio.move_on_after(connect_timeout):
                            await conn.aclose()
        except ChannelClosed as exc:  # opening failed, or closing did
            if end is None:
                end = SessionEnd(shutdown=False, reason=str(exc))
            cause: ChannelClosed | None = exc
        else:
            cause = None
        assert end is not None
        if end.shutdown:
            logger.info("worker %s shut down: %s", config.worker_id, end.reason)
            return
        if not reconnect:
            raise WorkerConnectionError(
                f"worker {config.worker_id}: {end.reason}"
            ) from cause
        delay = backoff_delay(failures, backoff_initial, backoff_max, jitter="full")
        failures += 1
        logger.warning("%s; reconnecting in %.2f s", end.reason, delay)
        await trio.sleep(delay)
