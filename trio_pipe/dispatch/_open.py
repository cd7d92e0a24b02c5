"""``open_dispatcher``: the nursery tree a dispatcher lives in, and its lifetime."""

from __future__ import annotations

import ipaddress
import logging
import ssl
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from functools import partial

import trio

from ..auth import ApiAuth, Authenticator
from ..protocol import DEFAULT_MAX_FRAME_SIZE, DEFAULT_MAX_JSON_DEPTH
from ..store import MemoryStore, Store, store_from_url
from ..transports import WebSocketChannel, serve_websocket_workers
from ._config import DispatcherConfig, default_max_connections
from ._dispatcher import Dispatcher
from ._pool import PoolStats

__all__ = ["open_dispatcher"]

log = logging.getLogger("trio_pipe.dispatcher")


async def _serve(
    dispatcher: Dispatcher,
    host: str,
    port: int | None,
    ssl_context: ssl.SSLContext | None,
    listener_scope: trio.CancelScope,
    *,
    task_status: trio.TaskStatus[None],
) -> None:
    """Everything that runs until cancelled: the deadline and retry heaps, and the
    listener (in *listener_scope*, which a graceful shutdown cancels first)."""
    scheduler = dispatcher._scheduler
    async with trio.open_nursery() as nursery:
        nursery.start_soon(scheduler.deadlines.run)
        nursery.start_soon(scheduler.retries.run)
        if port is not None:
            ports = await nursery.start(
                _listen, dispatcher, host, port, ssl_context, listener_scope
            )
            dispatcher._listening(ports, f"{'wss' if ssl_context else 'ws'}://{host}")
        if dispatcher.config.auth is not None:
            nursery.start_soon(_check_credentials, dispatcher)
        task_status.started()


async def _listen(
    dispatcher: Dispatcher,
    host: str,
    port: int,
    ssl_context: ssl.SSLContext | None,
    scope: trio.CancelScope,
    *,
    task_status: trio.TaskStatus[tuple[int, ...]],
) -> None:
    async def serve(channel: WebSocketChannel) -> None:
        await dispatcher.serve_worker(channel, claims=channel.claims)

    with scope:
        await serve_websocket_workers(
            serve,
            host,
            port,
            ssl_context=ssl_context,
            handler_nursery=dispatcher._sessions,
            max_frame_size=dispatcher.config.max_frame_size,
            close_timeout=dispatcher.config.close_timeout,
            authenticator=dispatcher.config.auth,
            handshake_timeout=dispatcher.config.handshake_timeout,
            max_connections=dispatcher.config.max_connections,
            max_unregistered=dispatcher.config.max_unregistered,
            task_status=task_status,
        )


def _check_exposure(host: str, config: DispatcherConfig) -> None:
    """Refuse to listen beyond loopback without authentication, unless told to."""
    if config.auth is not None or _loopback(host):
        return
    if not config.insecure:
        raise ValueError(
            f"refusing to listen on {host!r} without worker authentication: any "
            "process that can reach it could take tasks and their payloads. Pass "
            "auth=TokenAuth(...) (or CertificateAuth for mutual TLS), or insecure=True "
            "to accept that (docs/security.md)"
        )
    log.warning(
        "listening on %r with no worker authentication (insecure=True): any process "
        "that can reach it may register as a worker and receive task payloads",
        host,
    )


def _check_http_exposure(config: DispatcherConfig) -> None:
    """Refuse to serve the HTTP API beyond loopback without API tokens, unless told
    to; and fail now if the ``http`` extra is missing."""
    assert config.http is not None
    try:
        import trio_pipe.http  # noqa: F401
    except ImportError as exc:
        raise ImportError(
            f"http= needs Starlette, Hypercorn and prometheus-client ({exc}); install "
            "them with: pip install 'trio-pipe[http]'"
        ) from exc
    host = config.http[0]
    if config.http_auth is not None or _loopback(host):
        return
    if not config.http_insecure:
        raise ValueError(
            f"refusing to serve the HTTP API on {host!r} without API tokens: any "
            "process that can reach it could submit, cancel and read tasks. Pass "
            "http_auth=ApiAuth(...), or http_insecure=True to accept that (docs/http.md)"
        )
    log.warning(
        "serving the HTTP API on %r with no authentication (http_insecure=True): any "
        "process that can reach it may submit, cancel and read tasks",
        host,
    )


def _loopback(host: str) -> bool:
    """Whether *host* names this machine's loopback interface only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name: it may resolve anywhere


async def _check_credentials(dispatcher: Dispatcher) -> None:
    """Close the sessions whose credentials have expired or been revoked since
    their handshake (a revocation file is read again when it changes)."""
    config = dispatcher.config
    auth = config.auth
    assert auth is not None
    while True:
        await trio.sleep(config.credentials_check_interval)
        now = time.time()
        for record in list(dispatcher._scheduler.pool):
            claims = record.claims
            if claims is None or record.evicted:
                continue
            if claims.ended(now):
                reason = "its credentials have expired"
            elif auth.revoked(claims):
                reason = f"its token ({claims.token_id}) has been revoked"
            else:
                continue
            log.warning("closing worker %s: %s", record.worker_id, reason)
            record.evict(reason)


async def _shutdown(dispatcher: Dispatcher, listener_scope: trio.CancelScope) -> None:
    """Graceful: take nothing new, tell workers, let in-flight tasks finish within
    ``shutdown_grace``, then close every connection (within ``close_timeout``)."""
    scheduler = dispatcher._scheduler
    listener_scope.cancel()
    scheduler.begin_shutdown()
    with trio.move_on_after(dispatcher.config.shutdown_grace):
        await scheduler.drained.wait()
    scheduler.close_connections()
    with trio.move_on_after(dispatcher.config.close_timeout):
        await scheduler.all_gone.wait()


async def _open_nursery_task(*, task_status: trio.TaskStatus[trio.Nursery]) -> None:
    async with trio.open_nursery() as nursery:
        task_status.started(nursery)
        await trio.sleep_forever()


@asynccontextmanager
async def open_dispatcher(
    host: str = "127.0.0.1",
    port: int | None = 0,
    *,
    ssl_context: ssl.SSLContext | None = None,
    heartbeat_timeout: float = 15.0,
    registration_timeout: float = 10.0,
    send_timeout: float = 10.0,
    close_timeout: float = 2.0,
    shutdown_grace: float = 10.0,
    max_queued: int = 100_000,
    aging_interval: float = 10.0,
    retry_backoff: float = 0.1,
    retry_backoff_max: float = 10.0,
    max_pool_size: int | None = None,
    min_pool_size: int = 0,
    on_below_minimum: Callable[[PoolStats], object] | None = None,
    max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
    store: Store | str | None = None,
    max_lifetime_by_type: Mapping[str, float] | None = None,
    auth: Authenticator | None = None,
    insecure: bool = False,
    credentials_check_interval: float = 1.0,
    http: tuple[str, int] | None = None,
    http_auth: ApiAuth | None = None,
    http_insecure: bool = False,
    # Limits at the edge (docs/limits.md):
    handshake_timeout: float = 10.0,
    max_connections: int | None = None,
    max_unregistered: int = 128,
    max_json_depth: int = DEFAULT_MAX_JSON_DEPTH,
    max_task_types: int = 1024,
    max_tags: int = 64,
    max_name_length: int = 256,
    max_worker_concurrency: int = 10_000,
    max_outbox_size: int = 64 * 1024 * 1024,
    max_consecutive_timeouts: int | None = 3,
) -> AsyncIterator[Dispatcher]:
    """Open a dispatcher, listening for WebSocket workers on *host*:*port*.

    ``port=0`` picks a free port (``dispatcher.port`` tells which); ``port=None``
    listens nowhere (for spawned workers only). *store* is where tasks are kept: a
    :class:`~trio_pipe.store.Store`, or a URL (``"sqlite:///tasks.db"``); by default a
    new :class:`~trio_pipe.store.MemoryStore`. Opening a store that holds unfinished
    tasks resumes them (docs/durability.md). The other settings are those of
    :class:`DispatcherConfig` (times in seconds), validated before anything starts;
    ``max_connections=None`` derives the limit from the process's file-descriptor
    limit (``RLIMIT_NOFILE``).

    Everything the dispatcher does runs in one nursery tree under this block::

        open_dispatcher ─┬─ store         the store's writer (outlives the rest)
                         ├─ sessions      one task per WebSocket worker: its session
                         ├─ supervisors   one task per spawned worker, its session
                         │                inside (and the SSH pool, on first use)
                         └─ serve ─┬─ deadlines  one task: every task deadline
                                   ├─ retries    one task: every retry backoff
                                   └─ listener   accepts WebSocket workers

    Leaving the block normally is a graceful shutdown: submissions stop (raising
    :class:`DispatcherClosed`), queued tasks resolve ``Cancelled`` with
    ``DISPATCHER_CLOSED``, workers get ``Shutdown{graceful:true}``, in-flight tasks
    have ``shutdown_grace`` seconds to finish, then every connection is closed.
    Leaving by an exception or cancellation (Ctrl-C included) skips the grace period:
    every worker gets ``Shutdown{graceful:false}`` (stop your tasks now, do not
    reconnect) before its connection is closed, all within ``close_timeout``. Either
    way, every handle is resolved by the time the block has exited.
    """
    config = DispatcherConfig(
        heartbeat_timeout=heartbeat_timeout,
        registration_timeout=registration_timeout,
        send_timeout=send_timeout,
        close_timeout=close_timeout,
        shutdown_grace=shutdown_grace,
        max_queued=max_queued,
        aging_interval=aging_interval,
        retry_backoff=retry_backoff,
        retry_backoff_max=retry_backoff_max,
        max_pool_size=max_pool_size,
        min_pool_size=min_pool_size,
        on_below_minimum=on_below_minimum,
        max_frame_size=max_frame_size,
        max_lifetime_by_type=max_lifetime_by_type or {},
        auth=auth,
        insecure=insecure,
        credentials_check_interval=credentials_check_interval,
        http=http,
        http_auth=http_auth,
        http_insecure=http_insecure,
        handshake_timeout=handshake_timeout,
        max_connections=(
            default_max_connections() if max_connections is None else max_connections
        ),
        max_unregistered=max_unregistered,
        max_json_depth=max_json_depth,
        max_task_types=max_task_types,
        max_tags=max_tags,
        max_name_length=max_name_length,
        max_worker_concurrency=max_worker_concurrency,
        max_outbox_size=max_outbox_size,
        max_consecutive_timeouts=max_consecutive_timeouts,
    )
    if port is not None:
        _check_exposure(host, config)
    if http is not None:
        _check_http_exposure(config)
    if store is None:
        store = MemoryStore()
    elif isinstance(store, str):
        store = store_from_url(store)
    dispatcher: Dispatcher | None = None
    body_error: BaseException | None = None
    try:
        async with trio.open_nursery() as outer:
            try:
                await outer.start(store.run)
            except BaseException as exc:  # e.g. StoreError: raised as itself
                body_error = exc
                raise
            try:
                async with trio.open_nursery() as root:
                    dispatcher = Dispatcher(
                        config,
                        sessions=await root.start(_open_nursery_task),
                        supervisors=await root.start(_open_nursery_task),
                        store=store,
                    )
                    await root.start(dispatcher._resume)
                    listener_scope = trio.CancelScope()
                    await root.start(
                        _serve, dispatcher, host, port, ssl_context, listener_scope
                    )
                    if http is not None:
                        from ..http import serve_http

                        try:
                            dispatcher._http_url = await root.start(
                                partial(serve_http, dispatcher, *http, auth=http_auth)
                            )
                        except OSError as exc:  # cannot bind: raised as itself
                            body_error = exc
                            raise
                    try:
                        yield dispatcher
                        await _shutdown(dispatcher, listener_scope)
                    except BaseException as exc:
                        body_error = exc
                        raise
                    finally:
                        dispatcher._scheduler.closing = True
                        root.cancel_scope.cancel()
            finally:
                # Last: the store writes what the rest of the tree reported.
                outer.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        # Re-raise an error of the caller's own block as itself, not wrapped in the
        # group of the nursery it happened to run in.
        _, rest = group.split(lambda exc: exc is body_error)
        if body_error is not None and rest is None:
            raise body_error from None
        raise
    finally:
        if dispatcher is not None:
            dispatcher._scheduler.close_everything()
