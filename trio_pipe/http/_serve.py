"""``serve_http``: the HTTP API and ``/metrics`` on one address, served by Hypercorn's
Trio worker in the caller's nursery, with the task that keeps the metrics."""

from __future__ import annotations

import logging
import socket

import trio
from hypercorn.config import Config
from hypercorn.trio import serve

from ..auth import ApiAuth
from ..dispatch import Dispatcher
from ._app import create_app
from ._metrics import DispatcherMetrics

__all__ = ["serve_http"]

log = logging.getLogger("trio_pipe.http")


def _bind(host: str, port: int) -> socket.socket:
    """A TCP socket bound to *host*:*port*; raises ``OSError`` naming the address."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise OSError(
            exc.errno, f"cannot serve the HTTP API on {host}:{port}: {exc.strerror or exc}"
        ) from None
    return sock


async def serve_http(
    dispatcher: Dispatcher,
    host: str,
    port: int,
    *,
    auth: ApiAuth | None = None,
    task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve *dispatcher*'s HTTP API on *host*:*port* until cancelled; report its
    URL (``http://host:port``, the real port if *port* is 0) through *task_status*.

    Error handling: an address that cannot be bound raises ``OSError`` (naming it)
    before anything is served. Resource handling: cancellation closes the listening
    socket and every connection; a request in progress is abandoned.
    """
    metrics = DispatcherMetrics(dispatcher)
    app = create_app(dispatcher, auth=auth, metrics=metrics)
    sock = _bind(host, port)
    bound = sock.getsockname()[1]
    config = Config()
    config.bind = [f"fd://{sock.detach()}"]  # Hypercorn owns the socket from now on
    config.accesslog = None
    config.errorlog = log
    url = f"http://{f'[{host}]' if ':' in host else host}:{bound}"
    async with trio.open_nursery() as nursery:
        await nursery.start(metrics.run)
        await nursery.start(serve, app, config)
        log.info("serving the HTTP API on %s", url)
        task_status.started(url)
