"""``run_worker``: connect, register, serve, reconnect with backoff, drain on a
signal."""

from __future__ import annotations

import functools
import logging
import math
import os
import signal
import socket
import ssl
import types
import urllib.parse
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager

import trio

from .._backoff import backoff_delay
from .._errors import ChannelClosed, WorkerConnectionError
from .._validation import derive_worker_id
from ..protocol import validate_worker_id
from ._core import SessionEnd, WorkerConfig, register, serve_connection
from ._handlers import HandlerFunc, check_handlers
from ._runtime import Runtime, open_runtime
from ._stop import StopRequest, watch_signals
from ._transport import Connector
from ._websocket import check_token, check_websocket_url, open_websocket_connection

__all__ = [
    "DEFAULT_DRAIN_TIMEOUT",
    "DEFAULT_HEARTBEAT_INTERVAL",
    "DEFAULT_MAX_CONCURRENCY",
    "TOKEN_VARIABLE",
    "WorkerConnectionError",
    "default_worker_id",
    "run_worker",
    "run_worker_on",
]

DEFAULT_MAX_CONCURRENCY = 10
DEFAULT_HEARTBEAT_INTERVAL = 5.0  # seconds
DEFAULT_DRAIN_TIMEOUT = 30.0  # seconds
TOKEN_VARIABLE = "TRIO_PIPE_TOKEN"

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
    max_concurrency_by_type: Mapping[str, int] | None = None,
    reconnect: bool = True,
    backoff_initial: float = 0.1,
    backoff_max: float = 10.0,
    connect_timeout: float = 10.0,
    drain_timeout: float = DEFAULT_DRAIN_TIMEOUT,
    handle_signals: bool = False,
    token: str | None = None,
    ssl_context: ssl.SSLContext | None = None,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> signal.Signals | None:
    """Serve *handlers* to the dispatcher at *url* (``ws://`` or ``wss://``).

    Connects, registers as *worker_id* (default: :func:`default_worker_id`,
    generated once and kept across reconnections) supporting the task types of
    *handlers*, and calls ``task_status.started()`` once the first registration is
    accepted: by ``WorkerRegistered``, by a task that comes first, or by silence for
    *connect_timeout* seconds (a rust-pipe 0.1 dispatcher never answers; a dispatcher
    that refuses closes the connection). Then runs each dispatched task -- an
    ``async def`` handler in its own Trio task, a plain function in a worker thread,
    an :func:`in_process` one in a process (see :class:`HandlerKind`) -- at most
    *max_concurrency* at once, and at most ``max_concurrency_by_type[t]`` of task
    type ``t`` (declared at registration; a task beyond a limit fails
    ``WORKER_SATURATED``, retryable), each cancelled at its ``timeoutMs`` deadline
    (counted from receipt, moved by :func:`extend_deadline`) or on ``Kill``; sends a
    heartbeat every *heartbeat_interval* seconds and ``Backpressure`` when it fills
    up or frees up.

    Returns after the dispatcher's ``Shutdown`` (``None``): graceful, once in-flight
    tasks have finished and their results are flushed; not graceful, once they have
    been cancelled (each reported ``Cancelled``, best effort).

    Draining: with *handle_signals* (main thread only), SIGTERM and SIGINT drain the
    worker: it tells the dispatcher (``Backpressure`` with ``draining``), takes no
    new task, lets its tasks finish for up to *drain_timeout* seconds, reports what
    still runs then ``Cancelled`` (``WORKER_SHUTTING_DOWN``, retryable: the
    dispatcher retries it at once elsewhere), closes the connection (code 1000) and
    returns the signal, never reconnecting. A second signal stops the tasks at once.
    Not connected when the signal comes, it returns at once. (Without
    *handle_signals*, the signals keep their usual effect.)

    Credentials: *token* (default: the environment variable ``TRIO_PIPE_TOKEN``,
    when set and not empty) is sent in every opening handshake as the header
    ``Authorization: Bearer <token>``, never in the URL, and never logged. A
    ``wss://`` URL is verified against *ssl_context* (an :class:`ssl.SSLContext`
    with your CA, and your client certificate for mutual TLS; default:
    :func:`ssl.create_default_context`); a certificate that fails is reported as
    such ("TLS handshake with HOST:PORT failed: certificate verify failed: ...")
    and retried as any failed connection. If the dispatcher refuses the handshake
    with HTTP 401 or 403, the worker raises :class:`~trio_pipe.HandshakeRefused`;
    if it closes the connection with code 1008 before it accepts the registration,
    :class:`~trio_pipe.RegistrationRefused`: neither is retried, as the same
    credential would be refused again (any other HTTP status, 503 included, is).

    Connection handling: *connect_timeout* (seconds) bounds opening the connection,
    the wait for the dispatcher to accept the registration, each write, and the
    closing flush. If the
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

    Cancellation: cancelling the caller cancels every handler (no results are sent;
    threads are abandoned, processes killed) and closes the connection.
    """
    secure = urllib.parse.urlsplit(check_websocket_url(url)).scheme == "wss"
    if ssl_context is not None:
        if not isinstance(ssl_context, ssl.SSLContext):
            raise TypeError(
                f"ssl_context must be an ssl.SSLContext, got {type(ssl_context).__name__}"
            )
        if not secure:
            raise ValueError(f"ssl_context is for wss:// URLs; {url!r} is not one")
    if token is None:
        token = os.environ.get(TOKEN_VARIABLE) or None
    connect = functools.partial(
        open_websocket_connection,
        url,
        connect_timeout=connect_timeout,
        ssl_context=ssl_context,
        token=check_token(token) if token is not None else None,
    )
    return await run_worker_on(
        connect,
        handlers,
        worker_id=worker_id,
        max_concurrency=max_concurrency,
        heartbeat_interval=heartbeat_interval,
        tags=tags,
        max_concurrency_by_type=max_concurrency_by_type,
        reconnect=reconnect,
        backoff_initial=backoff_initial,
        backoff_max=backoff_max,
        connect_timeout=connect_timeout,
        drain_timeout=drain_timeout,
        handle_signals=handle_signals,
        task_status=task_status,
    )


def _check_limits(
    limits: Mapping[str, int] | None, task_types: Iterable[str], max_concurrency: int
) -> Mapping[str, int]:
    """A read-only copy of *limits*; raise TypeError/ValueError if it is unusable."""
    if limits is None:
        return types.MappingProxyType({})
    if not isinstance(limits, Mapping):
        raise TypeError(
            f"max_concurrency_by_type must be a mapping of task type to int, got {limits!r}"
        )
    known = set(task_types)
    for task_type, limit in limits.items():
        if task_type not in known:
            raise ValueError(
                f"max_concurrency_by_type: no handler for task type {task_type!r}"
            )
        if isinstance(limit, bool) or not isinstance(limit, int):
            raise TypeError(
                f"max_concurrency_by_type[{task_type!r}] must be an int, got {limit!r}"
            )
        if not 1 <= limit <= max_concurrency:
            raise ValueError(
                f"max_concurrency_by_type[{task_type!r}] must be from 1 to "
                f"max_concurrency ({max_concurrency}), got {limit}"
            )
    return types.MappingProxyType(dict(limits))


def _make_config(
    worker_id: str | None,
    max_concurrency: int,
    heartbeat_interval: float,
    tags: Iterable[str],
    backoff_initial: float,
    backoff_max: float,
    connect_timeout: float,
    *,
    task_types: Iterable[str] = (),
    max_concurrency_by_type: Mapping[str, int] | None = None,
    drain_timeout: float = DEFAULT_DRAIN_TIMEOUT,
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
    if not (math.isfinite(drain_timeout) and drain_timeout >= 0):
        raise ValueError(f"drain_timeout must be >= 0 seconds, got {drain_timeout!r}")
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
        drain_timeout=drain_timeout,
        max_concurrency_by_type=_check_limits(
            max_concurrency_by_type, task_types, max_concurrency
        ),
    )


async def run_worker_on(
    connect: Connector,
    handlers: Mapping[str, HandlerFunc],
    *,
    worker_id: str | None = None,
    max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
    heartbeat_interval: float = DEFAULT_HEARTBEAT_INTERVAL,
    tags: Iterable[str] = (),
    max_concurrency_by_type: Mapping[str, int] | None = None,
    reconnect: bool = True,
    backoff_initial: float = 0.1,
    backoff_max: float = 10.0,
    connect_timeout: float = 10.0,
    drain_timeout: float = DEFAULT_DRAIN_TIMEOUT,
    handle_signals: bool = False,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> signal.Signals | None:
    """:func:`run_worker` over any transport: *connect* opens one connection per call.

    Same arguments and behaviour as :func:`run_worker`, except that opening the
    connection is *connect*'s business (and its own timeout).
    """
    table = check_handlers(handlers)
    config = _make_config(
        worker_id,
        max_concurrency,
        heartbeat_interval,
        tags,
        backoff_initial,
        backoff_max,
        connect_timeout,
        task_types=table,
        max_concurrency_by_type=max_concurrency_by_type,
        drain_timeout=drain_timeout,
    )
    async with _worker_life(table, config, handle_signals) as (runtime, stop):
        await _serve_until_stopped(
            connect,
            table,
            config,
            runtime,
            stop,
            reconnect=reconnect,
            backoff=(backoff_initial, backoff_max),
            task_status=task_status,
        )
        return stop.signal


@asynccontextmanager
async def _worker_life(
    handlers: Mapping[str, HandlerFunc],
    config: WorkerConfig,
    handle_signals: bool,
    *,
    redirect_stdout: bool = False,
) -> AsyncIterator[tuple[Runtime, StopRequest]]:
    """What a worker holds for its whole life: its handlers' runtime, and the request
    to stop it, which SIGTERM and SIGINT make with *handle_signals* (watched in a
    nursery around the block; what the block raises comes out as itself, not in a
    group of that nursery's)."""
    stop = StopRequest()
    async with open_runtime(
        handlers, config.max_concurrency, redirect_stdout=redirect_stdout
    ) as runtime:
        if not handle_signals:
            yield runtime, stop
            return
        error: BaseException | None = None
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(watch_signals, stop)
                try:
                    yield runtime, stop
                finally:
                    nursery.cancel_scope.cancel()
        except BaseExceptionGroup as group:
            if len(group.exceptions) != 1:
                raise
            error = group.exceptions[0]
        if error is not None:
            raise error  # outside the handler: its own cause and context unchanged


async def _serve_until_stopped(
    connect: Connector,
    table: Mapping[str, HandlerFunc],
    config: WorkerConfig,
    runtime: Runtime,
    stop: StopRequest,
    *,
    reconnect: bool,
    backoff: tuple[float, float],
    task_status: trio.TaskStatus[None],
) -> None:
    """Connect, register, serve; again after a lost connection (with *reconnect*,
    after a delay growing from ``backoff[0]`` to ``backoff[1]`` seconds), until a
    ``Shutdown`` or a drain."""
    supported = tuple(table)
    started_at = trio.current_time()
    failures = 0
    registered_once = False
    while True:
        end: SessionEnd | None = None
        cause: ChannelClosed | None = None
        with stop.while_idle():
            try:
                async with connect() as conn:
                    # Nothing here raises ChannelClosed: a connector that runs a
                    # nursery would wrap it in an ExceptionGroup on the way out.
                    try:
                        registered = await register(conn, config, supported)
                    except ChannelClosed as exc:
                        end = SessionEnd(shutdown=False, reason=str(exc))
                    else:
                        stop.serving()
                        logger.info(
                            "registered as %s for %s", config.worker_id, list(supported)
                        )
                        failures = 0
                        if not registered_once:
                            registered_once = True
                            task_status.started()
                        end = await serve_connection(
                            conn,
                            table,
                            config,
                            runtime=runtime,
                            started_at=started_at,
                            stop=stop,
                            registered=registered,
                        )
                        if end.shutdown:
                            with trio.move_on_after(config.connect_timeout):
                                await conn.aclose()
            except ChannelClosed as exc:  # opening failed, or closing did
                if end is None:
                    end = SessionEnd(shutdown=False, reason=str(exc))
                cause = exc
        if stop.drain.is_set():
            why = stop.signal.name if stop.signal is not None else "asked to stop"
            logger.info("worker %s stopped (%s)", config.worker_id, why)
            return
        assert end is not None
        if end.shutdown:
            logger.info("worker %s shut down: %s", config.worker_id, end.reason)
            return
        if not reconnect:
            raise WorkerConnectionError(
                f"worker {config.worker_id}: {end.reason}"
            ) from cause
        delay = backoff_delay(failures, *backoff, jitter="full")
        failures += 1
        logger.warning("%s; reconnecting in %.2f s", end.reason, delay)
        with stop.while_idle():
            await trio.sleep(delay)
